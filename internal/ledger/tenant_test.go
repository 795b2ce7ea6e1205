package ledger

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestTenantsNeverMeet serves two tenants from one Redis and one asynq server through a
// Router. Both have a run called "nightly" with the same keys, one of them a poison key of
// tenant A only: each tenant's client sees exactly its own batches, each ledger counts its
// own run, and A's dead letters, runs and changes are invisible from B.
func TestTenantsNeverMeet(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	soA := &fakeSO{poison: map[string]bool{"K-003": true}}
	soB := &fakeSO{}
	eA := newEnvOn(t, db, soA, func(c *tasks.HandlerConfig) { c.Tenant, c.Ledger = "A", NewLedger(c.Redis).Tenant("A") })
	eB := newEnvOn(t, db, soB, func(c *tasks.HandlerConfig) { c.Tenant, c.Ledger = "B", NewLedger(c.Redis).Tenant("B") })
	router := tasks.NewRouter(func(id string) asynq.Handler {
		switch id {
		case "A":
			return eA.h
		case "B":
			return eB.h
		}
		return nil
	}, testLogger(t))
	keys := testKeys("K", 8)
	for seq, tenant := range []string{"A", "B"} {
		b := customerBatch("nightly", 0, keys)
		b.Tenant = tenant
		if id := eA.enqueue(b); id != tenant+"/nightly:b000000" {
			t.Fatalf("batch %d id = %q", seq, id)
		}
	}
	eA.serve(router, nil)
	ctx := context.Background()
	la, lb := NewLedger(eA.db.TestClient(t)).Tenant("A"), NewLedger(eA.db.TestClient(t)).Tenant("B")
	var stA, stB RunStatus
	waitFor(t, "both runs to finish", 30*time.Second, func() (bool, error) {
		var errA, errB error
		stA, errA = la.Status(ctx, "nightly")
		stB, errB = lb.Status(ctx, "nightly")
		return errA == nil && errB == nil && stA.PendingKeys == 0 && stB.PendingKeys == 0, errors.Join(errA, errB)
	})
	if stA.TotalKeys != 8 || stA.ResyncedKeys != 7 || stA.DeadKeys != 1 || stB.TotalKeys != 8 || stB.ResyncedKeys != 8 || stB.DeadKeys != 0 {
		t.Errorf("A = %+v\nB = %+v", stA, stB)
	}
	if n := soB.CallCount(); n != 1 {
		t.Errorf("tenant B's SuperOffice called %d times, want 1 (A's splits must not reach it)", n)
	}
	for _, c := range soB.Calls() {
		if !slices.Equal(c, keys) {
			t.Errorf("tenant B's SuperOffice got %v", c)
		}
	}
	deadB, err := lb.SelectDead(ctx, DeadFilter{All: true})
	if err != nil || len(deadB) != 0 {
		t.Errorf("B's dead letters = %v, %v; want none (A's poison key is A's)", deadB, err)
	}
	deadA, err := la.SelectDead(ctx, DeadFilter{All: true})
	if err != nil || len(deadA) != 1 || deadA[0].Key != "K-003" {
		t.Errorf("A's dead letters = %v, %v", deadA, err)
	}
	for _, l := range []*Ledger{la, lb} {
		runs, err := l.Runs(ctx, 0)
		if err != nil || len(runs) != 1 || runs[0].Run != "nightly" {
			t.Errorf("tenant %s runs = %+v, %v; want its own nightly only", l.TenantID(), runs, err)
		}
	}
	if runs, err := NewLedger(eA.db.TestClient(t)).Runs(ctx, 0); err != nil || len(runs) != 0 {
		t.Errorf("implicit tenant's runs = %+v, %v; want none", runs, err)
	}
}

// TestRouterHoldsUnknownTenant: a batch of a tenant no handler serves is held, using no
// retry, and never reaches another tenant's handler.
func TestRouterHoldsUnknownTenant(t *testing.T) {
	t.Parallel()
	so := &fakeSO{}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.Tenant, c.Ledger = "A", NewLedger(c.Redis).Tenant("A") })
	router := tasks.NewRouter(func(id string) asynq.Handler {
		if id == "A" {
			return e.h
		}
		return nil
	}, testLogger(t))
	b := customerBatch("gone", 0, []string{"X"})
	b.Tenant = "Removed"
	err := router.ProcessTask(context.Background(), mustTask(t, b))
	var pe *flow.PausedError
	if !errors.As(err, &pe) || tasks.IsFailure(err) || tasks.RetryAfter(err) != tasks.UnknownTenantHold {
		t.Fatalf("err = %v (failure %v, retry after %v); want a hold of %v", err, tasks.IsFailure(err), tasks.RetryAfter(err), tasks.UnknownTenantHold)
	}
	// The implicit tenant's batch (no tenant in the payload) is not A's either.
	b.Tenant = ""
	if err := router.ProcessTask(context.Background(), mustTask(t, b)); !errors.As(err, &pe) {
		t.Fatalf("implicit tenant's batch on a worker without it: %v, want a hold", err)
	}
	// A handler given another tenant's batch holds it instead of calling.
	b.Tenant = "B"
	if err := e.h.ProcessTask(context.Background(), mustTask(t, b)); !errors.As(err, &pe) || tasks.IsFailure(err) {
		t.Fatalf("A's handler with B's batch: %v, want a hold", err)
	}
	if n := so.CallCount(); n != 0 {
		t.Errorf("SuperOffice called %d times, want 0", n)
	}
}
