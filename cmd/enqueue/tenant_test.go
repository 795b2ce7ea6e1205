package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestTenantsSameRunName: two tenants and the implicit one each submit a run called nightly
// through the CLI; status, runs, dead list and changes of each (--tenant, or
// ENQUEUE_TENANT) see that tenant's run only, and its batches carry its tenant.
func TestTenantsSameRunName(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	files := map[string]string{"": "I1\nI2\n", "A": "A1\nA2\nA3\n", "B": "B1\n"}
	tenantArgs := func(tenant string) []string {
		if tenant == "" {
			return []string{"--redis-url", db.URL(), "--queue", "tq"}
		}
		return []string{"--tenant", tenant, "--redis-url", db.URL(), "--queue", "tq"}
	}
	for _, tenant := range []string{"", "A", "B"} {
		r := enqueue(t, "", append([]string{"--erp-connection", "3", "--actor-type", "Customer", "--run", "nightly",
			"--file", writeKeys(t, "k.txt", files[tenant])}, tenantArgs(tenant)...)...)
		if r.code != exitOK {
			t.Fatalf("submit for tenant %q: exit %d\n%s", tenant, r.code, r.stderr)
		}
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	lq, err := lanes.New(lanes.Config{Redis: db.TestClient(t), Queues: []string{"tq"}})
	if err != nil {
		t.Fatal(err)
	}
	defer lq.Close()
	// The implicit tenant's batch is in asynq; a file tenant's waits in its lane.
	payload := func(tenant string) ([]byte, error) {
		id := tasks.BatchID(tasks.RunKey(tenant, "nightly"), 0)
		if tenant == "" {
			info, err := insp.GetTaskInfo("tq", id)
			if err != nil {
				return nil, err
			}
			return info.Payload, nil
		}
		job, ok, err := lq.Job(context.Background(), tenant, id)
		if err == nil && (!ok || job.Queue != "tq") {
			err = fmt.Errorf("batch %s not in the lane for queue tq: %+v, %v", id, job, ok)
		}
		return job.Payload, err
	}
	for _, tenant := range []string{"", "A", "B"} {
		p, err := payload(tenant)
		if err != nil {
			t.Fatalf("tenant %q: %v", tenant, err)
		}
		if b, err := tasks.ParseBatch(p); err != nil || b.Tenant != tenant || strings.Join(b.Keys, "\n")+"\n" != files[tenant] {
			t.Errorf("tenant %q: batch %+v, %v", tenant, b, err)
		}
		var st struct {
			Run       string `json:"run"`
			TotalKeys int64  `json:"total_keys"`
		}
		r := enqueue(t, "", append([]string{"status", "nightly", "--json"}, tenantArgs(tenant)...)...)
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Run != "nightly" || st.TotalKeys != int64(strings.Count(files[tenant], "\n")) {
			t.Errorf("status of tenant %q's nightly: exit %d, %+v, %v\n%s", tenant, r.code, st, err, r.stderr)
		}
		var runs []struct {
			Run string `json:"run"`
		}
		r = enqueue(t, "", append([]string{"runs", "--json"}, tenantArgs(tenant)...)...)
		if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil || len(runs) != 1 || runs[0].Run != "nightly" {
			t.Errorf("runs of tenant %q: %+v, %v", tenant, runs, err)
		}
	}
	// A dead letter of A's run, as the worker records it: only A's dead list shows it.
	id := tasks.BatchID(tasks.RunKey("A", "nightly"), 0)
	if _, err := ledger.NewLedger(db.TestClient(t)).Tenant("A").RecordDead(context.Background(), "nightly", id,
		[]tasks.DeadLetter{{Run: "nightly", Key: "A2", BatchID: id, Class: "business", Reason: "IsOk=false", At: time.Now()}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "A", "B"} {
		r := enqueue(t, "", append([]string{"dead", "list", "--run", "nightly", "--json"}, tenantArgs(tenant)...)...)
		var dls []tasks.DeadLetter
		if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil || (tenant == "A") != (len(dls) == 1) || len(dls) > 1 {
			t.Errorf("dead list of tenant %q: %+v, %v\n%s", tenant, dls, err, r.stderr)
		}
		if r := enqueue(t, "", append([]string{"changes", "nightly", "--format", "csv"}, tenantArgs(tenant)...)...); r.code != exitOK {
			t.Errorf("changes of tenant %q: exit %d\n%s", tenant, r.code, r.stderr)
		}
	}
	// ENQUEUE_TENANT does what --tenant does; the flag wins.
	var out, errb bytes.Buffer
	env := map[string]string{"ENQUEUE_TENANT": "B", "REDIS_URL": db.URL()}
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, progressEvery: time.Hour, now: time.Now}
	if code := c.run(context.Background(), []string{"status", "nightly", "--json"}); code != exitOK || !strings.Contains(out.String(), `"total_keys": 1,`) {
		t.Errorf("ENQUEUE_TENANT=B status: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	// A's run has a dead letter: exit 1.
	if code := c.run(context.Background(), []string{"status", "nightly", "--json", "--tenant", "A"}); code != exitBad || !strings.Contains(out.String(), `"total_keys": 3,`) {
		t.Errorf("ENQUEUE_TENANT=B --tenant A status: exit %d\n%s%s", code, out.String(), errb.String())
	}
	// A tenant without the run, and trickle keys of a tenant.
	r := enqueue(t, "", "status", "nightly", "--tenant", "C", "--redis-url", db.URL())
	if r.code != exitUsage || !strings.Contains(r.stderr, `run "nightly" of tenant C not found`) {
		t.Errorf("status of tenant C: exit %d\n%s", r.code, r.stderr)
	}
	r = enqueue(t, "", "key", "--tenant", "B", "--erp-connection", "4", "--actor-type", "Supplier", "--redis-url", db.URL(), "--queue", "trq", "S1")
	if ts, err := insp.ListAggregatingTasks("trq", tasks.TenantGroupName("B", 4, erpsync.ActorSupplier)); r.code != exitOK || err != nil || len(ts) != 1 {
		t.Errorf("key --tenant B: exit %d, %d tasks in B's group, %v\n%s", r.code, len(ts), err, r.stderr)
	}
}

// TestTenantFlagChecked: a tenant ID that is none is one usage line, from the flag or from
// ENQUEUE_TENANT, before Redis is asked (and for a dry run, which needs none).
func TestTenantFlagChecked(t *testing.T) {
	t.Parallel()
	keys := writeKeys(t, "k.txt", "K1\n")
	for _, args := range [][]string{
		{"status", "r", "--tenant", "a b", "--redis-url", deadURL},
		{"--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--dry-run", "--tenant", "-x"},
		{"dead", "requeue", "--all", "--tenant", strings.Repeat("t", tasks.MaxTenantID+1), "--redis-url", deadURL},
	} {
		r := enqueue(t, "", args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "enqueue: --tenant: tenant id") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("enqueue %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string {
		return map[string]string{"ENQUEUE_TENANT": "Cust/1", "REDIS_URL": deadURL}[k]
	}, progressEvery: time.Hour, now: time.Now}
	if code := c.run(context.Background(), []string{"runs"}); code != exitUsage || !strings.HasPrefix(errb.String(), `enqueue: ENQUEUE_TENANT: tenant id "Cust/1"`) {
		t.Errorf("ENQUEUE_TENANT=Cust/1: exit %d\n%s", code, errb.String())
	}
}
