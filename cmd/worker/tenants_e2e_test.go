package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// TestTwoTenantsOneFleet serves two tenants on two simulator hosts — one SOAP with a
// password login, one REST with an Online system user — from one tenants file, two worker
// processes and one Redis. Both have a run called "nightly". Tenant A is down when the runs
// start: B's run finishes regardless, A's batches are held (not one dead letter) and finish
// once A is back. Each simulator sees exactly its own tenant's keys, each once.
func TestTwoTenantsOneFleet(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	tt := e2etest.StartTwoTenants(t)
	simA, simB := tt.A.Sim, tt.B.Sim
	tt.A.Extra = "breaker_probe: 1s\nbreaker_probe_max: 2s"
	tt.WriteFile(t, tt.A, tt.B)
	env := tt.WorkerEnv(db.URL())
	intakeB := tt.B.Intake
	addr := freeAddr(t)
	env["WORKER_HTTP_ADDR"] = addr

	keysA, keysB := e2etest.Keys("A", 600), e2etest.Keys("B", 600)
	simA.SetOutage(true)
	e2etest.SubmitTenant(t, rdb, "acme-onsite", "nightly", erpsync.ActorCustomer, keysA, 50)
	e2etest.SubmitTenant(t, rdb, "Cust67890", "nightly", erpsync.ActorCustomer, keysB, 50)
	workers := []*e2etest.Process{e2etest.StartWorker(t, env)}
	env["WORKER_HTTP_ADDR"] = "off"
	workers = append(workers, e2etest.StartWorker(t, env))
	// B's intake token reads B's runs and nothing of A's.
	for path, want := range map[string]int{"/v1/tenants/Cust67890/runs": 200, "/v1/tenants/acme-onsite/runs": 403, "/v1/runs": 403} {
		testwait.For(t, "GET "+path, 30*time.Second, func() (bool, error) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
			req.Header.Set("Authorization", "Bearer "+intakeB)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == want, fmt.Errorf("status %d, want %d", resp.StatusCode, want)
		})
	}

	stB := waitTenantRun(t, rdb, "Cust67890", "nightly", 2*time.Minute)
	stA, err := e2etest.TenantRunStatus(rdb, "acme-onsite", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if stB.ResyncedKeys != 600 || stB.DeadKeys != 0 {
		t.Errorf("B while A is down: %+v", stB)
	}
	if stA.DeadKeys != 0 || stA.ResyncedKeys != 0 {
		t.Errorf("A during its outage: %+v; want everything held", stA)
	}
	simA.SetOutage(false)
	stA = waitTenantRun(t, rdb, "acme-onsite", "nightly", 2*time.Minute)
	if stA.ResyncedKeys != 600 || stA.DeadKeys != 0 {
		t.Errorf("A after its outage: %+v", stA)
	}
	for _, k := range keysA {
		if n := simA.ResyncCount(k); n != 1 {
			t.Fatalf("A's key %s resynced %d times at A, want 1", k, n)
		}
		if n := simB.Seen(k); n != 0 {
			t.Fatalf("A's key %s reached B's host %d times", k, n)
		}
	}
	for _, k := range keysB {
		if n := simB.ResyncCount(k); n != 1 {
			t.Fatalf("B's key %s resynced %d times at B, want 1", k, n)
		}
		if n := simA.Seen(k); n != 0 {
			t.Fatalf("B's key %s reached A's host %d times", k, n)
		}
	}
	if _, err := e2etest.RunStatus(rdb, "nightly"); err == nil {
		t.Error("the implicit tenant has a run nightly")
	}
	for _, w := range workers {
		if leaks := e2etest.Leaks(w.Log.String(), tt.Secrets()); len(leaks) > 0 {
			t.Errorf("%v in a worker's log", leaks)
		}
		for line := range strings.Lines(w.Log.String()) {
			if dup := duplicateKeys(line); len(dup) > 0 {
				t.Errorf("log line with the keys %v twice: %s", dup, line)
				break
			}
		}
	}
}

func waitTenantRun(t *testing.T, rdb redis.UniversalClient, tenant, run string, timeout time.Duration) ledger.RunStatus {
	t.Helper()
	var st ledger.RunStatus
	testwait.For(t, tenant+"'s run "+run+" finished", timeout, func() (bool, error) {
		var err error
		st, err = e2etest.TenantRunStatus(rdb, tenant, run)
		return err == nil && st.TotalKeys > 0 && st.PendingKeys == 0, fmt.Errorf("%+v, %v", st, err)
	})
	return st
}

// TestUpgradeKeepsTodaysRuns: a Redis holding a run submitted before tenants existed (no
// tenant in its payloads, its ledger keys as they always were) keeps working when the
// worker starts with a tenants file: with SUPEROFFICE_URL set the implicit tenant still
// serves it; without, its batches are held, never dead-lettered, until it is configured.
func TestUpgradeKeepsTodaysRuns(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	sim, other := e2etest.StartSim(t), e2etest.StartSim(t)
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := fmt.Sprintf("tenants:\n  - id: other\n    url: %s\n    auth: {username: %s, password_env: OTHER_PASSWORD}\n", other.URL, e2etest.User)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := e2etest.Keys("OLD", 300)
	e2etest.Submit(t, rdb, "before-tenants", erpsync.ActorCustomer, keys, 100)

	env := e2etest.WorkerEnv(db.URL(), sim)
	env["TENANTS_CONFIG"] = file
	env["OTHER_PASSWORD"] = e2etest.Password
	noImplicit := maps.Clone(env)
	for _, k := range []string{"SUPEROFFICE_URL", "SUPEROFFICE_USERNAME", "SUPEROFFICE_PASSWORD"} {
		delete(noImplicit, k)
	}
	w := e2etest.StartWorker(t, noImplicit)
	testwait.For(t, "the implicit tenant's batches held", 30*time.Second, func() (bool, error) {
		return strings.Contains(w.Log.String(), "batch of a tenant this worker does not serve"), errors.New("no hold logged")
	})
	w.Signal(t, syscall.SIGTERM)
	w.Wait(t, 30*time.Second)
	if st, err := e2etest.RunStatus(rdb, "before-tenants"); err != nil || st.DeadKeys != 0 || st.ResyncedKeys != 0 {
		t.Fatalf("held run: %+v, %v; want nothing resynced or dead", st, err)
	}
	// The held batches come back by themselves after tasks.UnknownTenantHold (a minute); the
	// test does not wait for that: it runs them now, as an operator could from the dashboard.
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if _, err := insp.RunAllRetryTasks(tasks.DefaultQueue); err != nil {
		t.Fatal(err)
	}
	e2etest.StartWorker(t, env)
	st := e2etest.WaitRunFinished(t, rdb, "before-tenants", 2*time.Minute)
	if st.ResyncedKeys != 300 || st.DeadKeys != 0 {
		t.Errorf("today's run after the upgrade: %+v", st)
	}
	for _, k := range keys {
		if sim.ResyncCount(k) != 1 || other.Seen(k) != 0 {
			t.Fatalf("key %s: %d resyncs at the implicit tenant, seen %d times at the other", k, sim.ResyncCount(k), other.Seen(k))
		}
	}
}

// duplicateKeys are the keys a JSON log line's object holds more than once (a log shipper
// keeps one of them, or refuses the line).
func duplicateKeys(line string) []string {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	var dup []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return dup
		}
		k, _ := tok.(string)
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return dup
		}
	}
	return dup
}

// TestDuplicateKeys: the check finds a key the line's object holds twice (nested objects
// are values, not looked into).
func TestDuplicateKeys(t *testing.T) {
	t.Parallel()
	if dup := duplicateKeys(`{"level":"warn","tenant":"B","tenant":"@B","x":{"a":1,"a":2},"message":"m"}`); !slices.Equal(dup, []string{"tenant"}) {
		t.Errorf("duplicateKeys = %v, want [tenant]", dup)
	}
	if dup := duplicateKeys(`{"level":"warn","tenant":"B"}`); len(dup) != 0 {
		t.Errorf("duplicateKeys = %v on a clean line", dup)
	}
}
