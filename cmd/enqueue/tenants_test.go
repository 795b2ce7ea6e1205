package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

// dispatched puts a batch of tenant's run into asynq as the lanes' dispatcher would, the
// producer having registered it first; opts add to its queue and task ID.
func dispatched(t *testing.T, db *redistest.DB, tenant, run string, keys []string, opts ...asynq.Option) string {
	t.Helper()
	ctx := context.Background()
	rdb := db.TestClient(t)
	id := tasks.BatchID(tasks.RunKey(tenant, run), 0)
	b := tasks.Batch{Tenant: tenant, Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: keys}
	if _, err := ledger.NewLedger(rdb).Tenant(tenant).RegisterBatch(ctx, ledger.RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}, id, len(keys)); err != nil {
		t.Fatal(err)
	}
	task, err := tasks.NewResyncTaskID(b, id, append([]asynq.Option{asynq.Queue("tq")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	return id
}

func tenantsJSON(t *testing.T, url string) map[string]tenantRow {
	t.Helper()
	r := enqueue(t, "", "tenants", "--json", "--redis-url", url, "--queue", "tq")
	var rows []tenantRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || r.code != exitOK {
		t.Fatalf("tenants --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	out := map[string]tenantRow{}
	for _, row := range rows {
		out[row.Tenant] = row
	}
	return out
}

// TestTenantsListAndPurge: tenant A was removed from the tenants file; its batches wait in
// its lane and in asynq (pending, scheduled, and held by a worker's Router in retry). enqueue
// tenants lists A, B and the implicit tenant with their lanes and runs; tenants purge
// refuses without --tenant or --yes, then removes A's lane and tasks and dead-letters their
// keys (PURGED), so A's runs end; B's and the implicit tenant's work is untouched; a second
// purge finds nothing.
func TestTenantsListAndPurge(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	submit := func(tenant, run, keys string) {
		args := []string{"--erp-connection", "3", "--actor-type", "Customer", "--run", run, "--batch-size", "2",
			"--file", writeKeys(t, "k.txt", keys), "--redis-url", url, "--queue", "tq"}
		if tenant != "" {
			args = append(args, "--tenant", tenant)
		}
		if r := enqueue(t, "", args...); r.code != exitOK {
			t.Fatalf("submit %s/%s: exit %d\n%s", tenant, run, r.code, r.stderr)
		}
	}
	submit("A", "nightly", "A1\nA2\nA3\nA4\nA5\n") // 3 batches in A's lane
	submit("B", "nightly", "B1\nB2\n")             // 1 in B's
	submit("", "nightly", "I1\n")                  // the implicit tenant's, in asynq

	// A batch a worker holds (A is not served): asynq has it in retry.
	held := dispatched(t, db, "A", "held", []string{"H1", "H2"})
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	router := tasks.NewRouter(func(string) asynq.Handler { return nil }, zerolog.Nop())
	srv := asynq.NewServer(db.Opt(), asynq.Config{Queues: map[string]int{"tq": 1}, Concurrency: 1, LogLevel: asynq.FatalLevel,
		IsFailure: tasks.IsFailure, RetryDelayFunc: func(_ int, err error, _ *asynq.Task) time.Duration { return tasks.RetryAfter(err) }})
	// Only the held batch is in asynq's tq so far besides the implicit one, which the Router
	// holds alike (no handler for it either) and which must come through untouched.
	if err := srv.Start(router); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "A's batch held in retry", 10*time.Second, func() (bool, error) {
		info, err := insp.GetTaskInfo("tq", held)
		return err == nil && info.State == asynq.TaskStateRetry, nil
	})
	srv.Shutdown()
	dispatched(t, db, "A", "later", []string{"L1"}, asynq.ProcessIn(time.Hour)) // scheduled
	dispatched(t, db, "A", "now", []string{"N1"})                               // pending
	bTask := dispatched(t, db, "B", "other", []string{"O1"})

	rows := tenantsJSON(t, url)
	if a := rows["A"]; a.Queued != 3 || a.Runs != 4 || a.RunsActive != 4 || a.NextTurn == nil {
		t.Errorf("tenants: A is %+v, want 3 queued, 4 runs active", a)
	}
	if b := rows["B"]; b.Queued != 1 || b.Runs != 2 || b.RunsActive != 2 {
		t.Errorf("tenants: B is %+v", b)
	}
	if i, ok := rows[""]; !ok || i.Runs != 1 || i.Queued != 0 {
		t.Errorf("tenants: the implicit tenant is %+v (listed %v)", i, ok)
	}
	r := enqueue(t, "", "tenants", "--redis-url", url, "--queue", "tq")
	wantContains(t, "tenants", r.stdout, "TENANT", "(implicit)", "A ", "B ")

	r = enqueue(t, "", "tenants", "purge", "--yes", "--redis-url", url)
	wantContains(t, "purge without --tenant", r.stderr, "tenants purge needs --tenant ID")
	r2 := enqueue(t, "", "tenants", "purge", "--tenant", "A", "--redis-url", url)
	wantContains(t, "purge without --yes", r2.stderr, "add --yes to confirm")
	if r.code != exitUsage || r2.code != exitUsage || rows["A"].Queued != tenantsJSON(t, url)["A"].Queued {
		t.Fatalf("purge without --tenant or --yes: exits %d, %d; or it removed something", r.code, r2.code)
	}

	r = enqueue(t, "", "tenants", "purge", "--tenant", "A", "--yes", "--json", "--redis-url", url, "--queue", "tq")
	var res purgeResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != exitOK {
		t.Fatalf("purge: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if res.Lane != 3 || res.Asynq["pending"] != 1 || res.Asynq["scheduled"] != 1 || res.Asynq["retry"] != 1 ||
		res.DeadKeys != 9 || strings.Join(res.Runs, ",") != "held,later,nightly,now" || res.Active != 0 || len(res.Unreadable) != 0 {
		t.Errorf("purge removed %+v", res)
	}

	// A's runs ended visibly: every key dead, PURGED, purged by an operator.
	l := ledger.NewLedger(db.TestClient(t)).Tenant("A")
	for _, run := range []string{"nightly", "held", "later", "now"} {
		st, err := l.Status(context.Background(), run)
		if err != nil || st.State != ledger.RunDoneWithDead || st.PendingKeys != 0 || st.DeadKeys != st.TotalKeys {
			t.Errorf("A's run %s after the purge: %+v, %v", run, st, err)
		}
	}
	dls, err := l.SelectDead(context.Background(), ledger.DeadFilter{All: true, ErrorCode: ledger.PurgedErrorCode})
	if err != nil || len(dls) != 9 || dls[0].Reason != ledger.PurgedReason {
		t.Errorf("A's dead letters: %d, %v: %+v", len(dls), err, dls)
	}
	// B and the implicit tenant are untouched.
	rows = tenantsJSON(t, url)
	if rows["A"].Queued != 0 || rows["A"].RunsActive != 0 || rows["B"].Queued != 1 || rows["B"].RunsActive != 2 {
		t.Errorf("tenants after the purge: %+v", rows)
	}
	if _, err := insp.GetTaskInfo("tq", bTask); err != nil {
		t.Errorf("B's task: %v", err)
	}
	if _, err := insp.GetTaskInfo("tq", tasks.BatchID(tasks.RunKey("", "nightly"), 0)); err != nil {
		t.Errorf("the implicit tenant's task: %v", err)
	}

	r = enqueue(t, "", "tenants", "purge", "--tenant", "A", "--yes", "--redis-url", url, "--queue", "tq")
	wantContains(t, "second purge", r.stdout, "tenant A: removed 0 batches from its lane and 0 tasks from asynq", "recorded 0 keys as dead letters")
}
