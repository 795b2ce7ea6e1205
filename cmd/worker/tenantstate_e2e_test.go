package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/tenantstate"
	"github.com/erpresync/erpresync/internal/testwait"
)

// startStateSim is the simulator with two tenant hosts (the tenant starts on host 0), the
// state API answering valid for validFor, and the one on-site user.
func startStateSim(t *testing.T, validFor time.Duration) *netserversim.Running {
	t.Helper()
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{testUser: testPassword}, Hosts: 2, StateValidFor: validFor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// followEnv is a worker's environment that gives the tenant by its environment and context
// id alone: no SUPEROFFICE_URL.
func followEnv(db *redistest.DB, sim *netserversim.Running) map[string]string {
	env := workerEnv(db, sim)
	delete(env, "SUPEROFFICE_URL")
	env["SUPEROFFICE_ENVIRONMENT"] = sim.EnvironmentURL()
	env["SUPEROFFICE_CONTEXT_ID"] = netserversim.DefaultTenant
	return env
}

// requestsTo is what reached the simulator: its calls by outcome and the state API's questions.
func requestsTo(sim *netserversim.Running) (calls map[netserversim.Outcome]int, state int) {
	return sim.Counts().Calls, sim.StateRequests()
}

func total(calls map[netserversim.Outcome]int) (n int) {
	for _, c := range calls {
		n += c
	}
	return n
}

// TestWorkersFollowAMove: two worker processes, given the tenant by environment and
// context id, keep a run in flight going while the tenant moves to another host: every key
// is resynced, nothing is dead-lettered, a few calls at most meet the old host's 421, and the
// whole fleet asks the state API once per ValidUntil (first sight, then once for the move).
func TestWorkersFollowAMove(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startStateSim(t, time.Hour)
	rdb := db.TestClient(t)
	keys := testKeys("M", 1000)
	open := holdCalls(t, sim, 8, 0)
	submit(t, db, "move", erpsync.ActorCustomer, keys, 25)
	startWorker(t, followEnv(db, sim))
	startWorker(t, followEnv(db, sim))
	waitCallsHeld(t, rdb, sim, "move", 100)
	if n := sim.StateRequests(); n != 1 {
		t.Errorf("before the move the fleet asked the state API %d times, want 1", n)
	}
	if err := sim.Move(1); err != nil {
		t.Fatal(err)
	}
	open()
	st := waitDone(t, rdb, "move", 2*time.Minute)
	if st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 {
		t.Fatalf("ledger %+v, want %d resynced, 0 dead", st, len(keys))
	}
	snap := sim.Counts()
	for _, k := range keys {
		if snap.Resynced[k] < 1 {
			t.Fatalf("key %s never resynced", k)
		}
	}
	if n := snap.Calls[netserversim.OutcomeMisdirected]; n > 8 {
		t.Errorf("%d calls met a 421, want a few (those in flight)", n)
	}
	if n := sim.StateRequests(); n != 2 {
		t.Errorf("the fleet asked the state API %d times, want 2 (first sight, the move)", n)
	}
}

// TestWorkerHoldsWhileTheTenantIsNotRunning: one worker process following the tenant.
// 20 s of OfflineMaintenance cost at most 3 requests (calls and state questions) and no dead
// letter, and the metrics say so; a signed Resume ends the hold. A signed Suspend stops
// every call, a forged Resume is refused (401) and changes nothing, a signed Resume lets the
// run finish.
func TestWorkerHoldsWhileTheTenantIsNotRunning(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startStateSim(t, 30*time.Second)
	rdb := db.TestClient(t)
	env := followEnv(db, sim)
	addr := freeAddr(t)
	env["WORKER_HTTP_ADDR"], env["WORKER_CONCURRENCY"] = addr, "1"
	w := startWorker(t, env)
	notifyURL := "http://" + addr + tenantstate.NotificationsPath
	notify := func(change netserversim.ChangeType, forged bool) int {
		t.Helper()
		n, err := sim.Notification(change)
		if err != nil {
			t.Fatal(err)
		}
		if forged {
			n.Token = n.Token[:strings.LastIndexByte(n.Token, '.')+1] + "Zm9yZ2Vk"
		}
		status, err := netserversim.PostNotification(context.Background(), notifyURL, n)
		if err != nil {
			t.Fatal(err)
		}
		return status
	}

	// 20 s of OfflineMaintenance.
	keys := testKeys("H", 300)
	submit(t, db, "maintenance", erpsync.ActorCustomer, keys, 10)
	waitFor(t, time.Minute, func() (bool, string) {
		st := runStatus(t, rdb, "maintenance")
		return st.ResyncedKeys >= 50, fmt.Sprintf("%+v\n%s", st, w.log())
	})
	sim.SetTenantState(netserversim.StateOfflineMaintenance)
	calls0, state0 := requestsTo(sim)
	start := time.Now()
	waitFor(t, time.Minute, func() (bool, string) {
		return time.Since(start) >= 20*time.Second, "20 s of maintenance"
	})
	calls, state := requestsTo(sim)
	refused := total(calls) - total(calls0) - (calls[netserversim.OutcomeOK] - calls0[netserversim.OutcomeOK])
	if ok := calls[netserversim.OutcomeOK] - calls0[netserversim.OutcomeOK]; ok > 1 {
		t.Errorf("%d calls answered during maintenance, want at most the one in flight", ok)
	}
	t.Logf("20 s of OfflineMaintenance: %d refused calls, %d state questions", refused, state-state0)
	if cost := refused + state - state0; cost > 3 {
		t.Errorf("20 s of maintenance cost %d requests (%d refused calls, %d state questions), want at most 3", cost, refused, state-state0)
	}
	if m := scrape(t, "http://"+addr+"/metrics"); !strings.Contains(m, `erpresync_tenant_state{context_id="Cust12345",tenant=""} 6`) || !strings.Contains(m, `erpresync_tenant_running{context_id="Cust12345",tenant=""} 0`) {
		t.Errorf("metrics do not show the maintenance:\n%s", grepLines(m, "erpresync_tenant_"))
	}
	sim.SetTenantState(netserversim.StateRunning)
	if s := notify(netserversim.ChangeResume, false); s != http.StatusOK {
		t.Fatalf("signed Resume answered %d", s)
	}
	if st := waitDone(t, rdb, "maintenance", time.Minute); st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 {
		t.Fatalf("after maintenance: %+v, want every key resynced, 0 dead", st)
	}

	// Suspend, a forged Resume, a signed Resume.
	keys = testKeys("S", 200)
	calls, _ = requestsTo(sim)
	open := holdCalls(t, sim, int64(total(calls))+3, 0)
	submit(t, db, "suspend", erpsync.ActorCustomer, keys, 10)
	waitFor(t, time.Minute, func() (bool, string) {
		st := runStatus(t, rdb, "suspend")
		return st.ResyncedKeys >= 20 && seenKeys(sim) > int64(len(testKeys("H", 300)))+st.ResyncedKeys, fmt.Sprintf("%+v", st)
	})
	calls0, _ = requestsTo(sim)
	sim.SetTenantState(netserversim.StateSuspended)
	if s := notify(netserversim.ChangeSuspend, false); s != http.StatusOK {
		t.Fatalf("signed Suspend answered %d", s)
	}
	open() // the call in flight ends; none follows
	waitFor(t, time.Minute, func() (bool, string) {
		return strings.Contains(w.log(), "in Suspended since"), "a batch held for the suspension"
	})
	// The one worker slot has moved on to a held batch: the call in flight has ended.
	if calls, _ = requestsTo(sim); total(calls)-total(calls0) > 1 {
		t.Errorf("%d calls after the Suspend, want at most the one in flight", total(calls)-total(calls0))
	}
	calls0 = calls
	sim.SetTenantState(netserversim.StateRunning) // a forged Resume must not bring it back
	if s := notify(netserversim.ChangeResume, true); s != http.StatusUnauthorized {
		t.Errorf("forged Resume answered %d, want 401", s)
	}
	if calls, _ = requestsTo(sim); total(calls) != total(calls0) {
		t.Errorf("%d calls reached SuperOffice while suspended", total(calls)-total(calls0))
	}
	if s := notify(netserversim.ChangeResume, false); s != http.StatusOK {
		t.Fatalf("signed Resume answered %d", s)
	}
	// The held batches are due at the hold's next check (tenantstate.MaxPausedRecheck).
	if st := waitDone(t, rdb, "suspend", tenantstate.MaxPausedRecheck+time.Minute); st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 {
		t.Fatalf("after Resume: %+v, want every key resynced, 0 dead", st)
	}
}

// TestRunsPagePausesFromTenantState: a tenant whose shared state holds its batches shows on
// the runs page's banner in PauseReason's words, with since and next check.
func TestRunsPagePausesFromTenantState(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	defer rdb.Close()
	f, err := tenantstate.New(tenantstate.Config{ContextID: "Cust12345", Environment: "https://sod.superoffice.com", Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Hold(context.Background(), tenantstate.OfflineMaintenance, "test"); err != nil {
		t.Fatal(err)
	}
	got, err := breakerPauses{rdb}.Pauses(context.Background())
	if err != nil || len(got) != 1 || got[0].Reason != "SuperOffice: tenant Cust12345 in OfflineMaintenance" ||
		got[0].Since.IsZero() || !got[0].Until.After(got[0].Since) {
		t.Errorf("pauses = %+v, %v", got, err)
	}
}

// TestFileTenantFollowed: a tenant of the tenants file given by environment and context id
// alone is followed as the implicit tenant is: its run survives a move to another host, and
// a signed Suspend for it, posted to the worker's state-change endpoint, stops its calls
// until a signed Resume. Another tenant of the same file keeps working meanwhile, and a
// notification for a context id no tenant follows is refused.
func TestFileTenantFollowed(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	sim := startStateSim(t, time.Hour)
	plain := startSim(t)
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := fmt.Sprintf(`tenants:
  - id: followed
    environment: %s
    auth: {context_id: %s, username: %s, password_env: PW}
  - id: plain
    url: %s
    auth: {username: %s, password_env: PW}
`, sim.EnvironmentURL(), netserversim.DefaultTenant, testUser, plain.URL, testUser)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := workerEnv(db, sim)
	for _, k := range []string{"SUPEROFFICE_URL", "SUPEROFFICE_USERNAME", "SUPEROFFICE_PASSWORD"} {
		delete(env, k)
	}
	env["TENANTS_CONFIG"], env["PW"] = file, testPassword
	addr := freeAddr(t)
	env["WORKER_HTTP_ADDR"] = addr
	keys := testKeys("F", 400)
	e2etest.SubmitTenant(t, rdb, "followed", "run", erpsync.ActorCustomer, keys, 20)
	startWorker(t, env)
	testwait.For(t, "a quarter of the run", time.Minute, func() (bool, error) {
		st, err := e2etest.TenantRunStatus(rdb, "followed", "run")
		return err == nil && st.ResyncedKeys >= 100, fmt.Errorf("%+v, %v", st, err)
	})
	if err := sim.Move(1); err != nil {
		t.Fatal(err)
	}
	st := waitTenantRun(t, rdb, "followed", "run", 2*time.Minute)
	if st.ResyncedKeys != 400 || st.DeadKeys != 0 {
		t.Fatalf("after the move: %+v", st)
	}

	notifyURL := "http://" + addr + tenantstate.NotificationsPath
	notify := func(change netserversim.ChangeType) int {
		n, err := sim.Notification(change)
		if err != nil {
			t.Fatal(err)
		}
		code, err := netserversim.PostNotification(context.Background(), notifyURL, n)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	sim.SetTenantState(netserversim.StateSuspended)
	if code := notify(netserversim.ChangeSuspend); code != http.StatusOK {
		t.Fatalf("signed Suspend: %d", code)
	}
	before := sim.Counts().Calls[netserversim.OutcomeOK]
	e2etest.SubmitTenant(t, rdb, "followed", "while-suspended", erpsync.ActorCustomer, testKeys("S", 40), 20)
	e2etest.SubmitTenant(t, rdb, "plain", "meanwhile", erpsync.ActorCustomer, testKeys("P", 40), 20)
	if st := waitTenantRun(t, rdb, "plain", "meanwhile", time.Minute); st.ResyncedKeys != 40 {
		t.Errorf("the other tenant while one is suspended: %+v", st)
	}
	if n := sim.Counts().Calls[netserversim.OutcomeOK] - before; n != 0 {
		t.Errorf("%d calls answered while the tenant is suspended", n)
	}
	sim.SetTenantState(netserversim.StateRunning)
	if code := notify(netserversim.ChangeResume); code != http.StatusOK {
		t.Fatalf("signed Resume: %d", code)
	}
	if st := waitTenantRun(t, rdb, "followed", "while-suspended", 2*time.Minute); st.ResyncedKeys != 40 || st.DeadKeys != 0 {
		t.Errorf("after Resume: %+v", st)
	}
}

// TestImplicitTenantByEnvironmentBesideAFile: with a tenants file, the implicit tenant given
// by SUPEROFFICE_ENVIRONMENT and SUPEROFFICE_CONTEXT_ID alone (no SUPEROFFICE_URL) is served
// too, as one given by its URL is.
func TestImplicitTenantByEnvironmentBesideAFile(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	sim, other := startStateSim(t, time.Hour), startSim(t)
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := fmt.Sprintf("tenants:\n  - id: other\n    url: %s\n    auth: {username: %s, password_env: PW}\n", other.URL, testUser)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := followEnv(db, sim)
	env["TENANTS_CONFIG"], env["PW"] = file, testPassword
	keys := testKeys("I", 100)
	submit(t, db, "implicit", erpsync.ActorCustomer, keys, 20)
	startWorker(t, env)
	if st := waitDone(t, rdb, "implicit", time.Minute); st.ResyncedKeys != 100 || st.DeadKeys != 0 {
		t.Errorf("the implicit tenant's run: %+v", st)
	}
}
