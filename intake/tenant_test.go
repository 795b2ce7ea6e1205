package intake

import (
	"context"
	"errors"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
	"github.com/hibiken/asynq"
)

// TestTenantsShareRunNames: two tenants submit a run called "nightly" with other parameters
// into one queue; neither finds the other's batches present or its parameters different,
// each tenant's ledger, lane and trickle group is its own, and a resubmission finds its
// batches present in the lane.
func TestTenantsShareRunNames(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	lq, err := lanes.New(lanes.Config{Redis: rdb, Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, tenant := range []string{"Cust1", "Cust2"} {
		p, err := NewProducer(ProducerConfig{Redis: rdb, Queue: "q", Tenant: tenant})
		if err != nil {
			t.Fatal(err)
		}
		spec := RunSpec{Run: "nightly", ErpConnectionID: 3 + i, ActorType: erpsync.ActorCustomer}
		sum, err := p.Submit(context.Background(), spec, Source{Path: keysFile(t, 150)})
		if err != nil {
			t.Fatalf("tenant %s: %v", tenant, err)
		}
		if sum.BatchesEnqueued != 2 || sum.BatchesPresent != 0 {
			t.Errorf("tenant %s: summary = %+v", tenant, sum)
		}
		if sum, err = p.Submit(context.Background(), spec, Source{Path: keysFile(t, 150)}); err != nil || sum.BatchesPresent != 2 {
			t.Errorf("tenant %s: resubmission = %+v, %v; want both batches present in the lane", tenant, sum, err)
		}
		if _, err := p.Submit(context.Background(), spec, Source{Path: keysFile(t, 149)}); !errors.Is(err, ErrRunMismatch) {
			t.Errorf("tenant %s: other keys under the run: %v, want ErrRunMismatch", tenant, err)
		}
		if n, err := lq.Len(context.Background(), tenant); err != nil || n != 2 {
			t.Errorf("tenant %s: lane holds %d, %v; want 2", tenant, n, err)
		}
		st, err := ledger.NewLedger(rdb).Tenant(tenant).Status(context.Background(), "nightly")
		if err != nil || st.TotalKeys != 150 || st.ErpConnectionID != 3+i {
			t.Errorf("tenant %s: status = %+v, %v", tenant, st, err)
		}
		if g := p.Trickled(1, 3, erpsync.ActorCustomer).Group; g != tasks.TenantGroupName(tenant, 3, erpsync.ActorCustomer) {
			t.Errorf("tenant %s: trickle group %q", tenant, g)
		}
	}
	if info, err := asynq.NewInspector(db.Opt()).GetQueueInfo("q"); err == nil && info.Size != 0 {
		t.Errorf("asynq holds %d tasks; a tenant's batches wait in its lane", info.Size)
	}
	if _, err := ledger.NewLedger(rdb).Status(context.Background(), "nightly"); err == nil {
		t.Error("the implicit tenant has a run nightly; want none")
	}
	if _, err := NewProducer(ProducerConfig{Tenant: "no/such"}); err == nil {
		t.Error("a producer for an invalid tenant id was accepted")
	}
}
