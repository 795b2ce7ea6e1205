package intake

import (
	"context"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestTenantsShareRunNames: two tenants submit a run called "nightly" with other parameters
// into one queue; neither finds the other's batches present or its parameters different,
// and each tenant's ledger and trickle group is its own.
func TestTenantsShareRunNames(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
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
		st, err := ledger.NewLedger(rdb).Tenant(tenant).Status(context.Background(), "nightly")
		if err != nil || st.TotalKeys != 150 || st.ErpConnectionID != 3+i {
			t.Errorf("tenant %s: status = %+v, %v", tenant, st, err)
		}
		if g := p.Trickled(1, 3, erpsync.ActorCustomer).Group; g != tasks.TenantGroupName(tenant, 3, erpsync.ActorCustomer) {
			t.Errorf("tenant %s: trickle group %q", tenant, g)
		}
	}
	_, ids := pendingKeys(t, db, "q")
	if len(ids) != 4 {
		t.Errorf("%d tasks, want 4: %v", len(ids), ids)
	}
	if _, err := ledger.NewLedger(rdb).Status(context.Background(), "nightly"); err == nil {
		t.Error("the implicit tenant has a run nightly; want none")
	}
	if _, err := NewProducer(ProducerConfig{Tenant: "no/such"}); err == nil {
		t.Error("a producer for an invalid tenant id was accepted")
	}
}
