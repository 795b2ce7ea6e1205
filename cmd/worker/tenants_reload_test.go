package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

// TestTenantsFileReload edits the tenants file under a running worker process, which follows
// it without a restart. A tenant's run submitted while the tenant is not in the file waits;
// the tenant added to the file gets it processed. The tenant removed while its second run
// has work in flight has its batches held, none dead-lettered: those still in its lane stay
// there, those asynq had already are held by the worker's router. Added back, the tenant's
// run ends exact: every key resynced once, at its own host only.
func TestTenantsFileReload(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	ctx := context.Background()
	tt := e2etest.StartTwoTenants(t)
	tt.WriteFile(t, tt.A) // B is not served yet
	a, b := tt.A, tt.B
	w := e2etest.StartWorker(t, tt.WorkerEnv(db.URL()))

	keysA, first := e2etest.Keys("RA", 200), e2etest.Keys("RB", 200)
	e2etest.SubmitTenant(t, rdb, b.ID, "first", erpsync.ActorCustomer, first, 20)
	e2etest.SubmitTenant(t, rdb, a.ID, "first", erpsync.ActorCustomer, keysA, 20)
	waitTenantRun(t, rdb, a.ID, "first", time.Minute)
	if st, err := e2etest.TenantRunStatus(rdb, b.ID, "first"); err != nil || st.ResyncedKeys+st.DeadKeys != 0 || b.Sim.Counts().TotalCalls() != 0 {
		t.Fatalf("B's run while B is not in the file: %+v, %v; %d calls at B", st, err, b.Sim.Counts().TotalCalls())
	}

	// Added: B's held lane goes at once.
	tt.WriteFile(t, a, b)
	if st := waitTenantRun(t, rdb, b.ID, "first", time.Minute); st.ResyncedKeys != int64(len(first)) || st.DeadKeys != 0 {
		t.Errorf("B's first run once B is in the file: %+v", st)
	}

	// Removed with work in flight: slow calls, so asynq holds some of B's batches and its
	// lane the rest when the file changes.
	second := e2etest.Keys("RS", 1200)
	b.Sim.SetLatency(200 * time.Millisecond)
	e2etest.SubmitTenant(t, rdb, b.ID, "second", erpsync.ActorCustomer, second, 20)
	testwait.For(t, "B's second run under way", time.Minute, func() (bool, error) {
		st, err := e2etest.TenantRunStatus(rdb, b.ID, "second")
		return err == nil && st.ResyncedKeys >= 100, fmt.Errorf("%+v, %v", st, err)
	})
	tt.WriteFile(t, a)
	const heldLog = "batch of a tenant this worker does not serve"
	testwait.For(t, "the router holding B's batches", time.Minute, func() (bool, error) {
		return strings.Contains(w.Log.String(), heldLog), fmt.Errorf("no %q in the log", heldLog)
	})
	lq, err := lanes.New(lanes.Config{Redis: rdb, Queues: []string{tasks.DefaultQueue}})
	if err != nil {
		t.Fatal(err)
	}
	defer lq.Close()
	inLane, err := lq.Len(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e2etest.TenantRunStatus(rdb, b.ID, "second")
	if err != nil {
		t.Fatal(err)
	}
	if inLane == 0 || st.PendingKeys == 0 || st.DeadKeys != 0 {
		t.Errorf("B removed: %d batches in its lane, run %+v; want batches in the lane, keys pending and none dead", inLane, st)
	}
	dead, err := ledger.NewLedger(rdb).Tenant(b.ID).DeadLetters(ctx, "")
	if err != nil || len(dead) != 0 {
		t.Errorf("B's dead letters while it is removed: %+v, %v", dead, err)
	}
	t.Logf("B removed: %d batches in its lane, %d keys pending", inLane, st.PendingKeys)

	// Back: the lane goes at once, the router's held batches at their next look.
	b.Sim.SetLatency(0)
	tt.WriteFile(t, a, b)
	if st := waitTenantRun(t, rdb, b.ID, "second", tasks.UnknownTenantHold+time.Minute); st.ResyncedKeys != int64(len(second)) || st.DeadKeys != 0 {
		t.Errorf("B's second run once B is back: %+v", st)
	}
	for _, k := range append(first, second...) {
		if n := b.Sim.ResyncCount(k); n != 1 {
			t.Errorf("B's key %s resynced %d times, want 1", k, n)
		}
		if n := a.Sim.Seen(k); n != 0 {
			t.Errorf("B's key %s reached A's host", k)
		}
	}
	if leaks := e2etest.Leaks(w.Log.String(), tt.Secrets()); len(leaks) > 0 {
		t.Errorf("%v in the worker's log", leaks)
	}
}
