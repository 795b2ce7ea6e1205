package ledger

import (
	"context"
	"slices"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestRecordPurgedAndTenants: Tenants names the implicit tenant and every tenant with a run
// index; RecordPurged dead-letters a registered batch and one the ledger never saw (counting
// it in its run), once; RunCounts sees the run end; a batch of another tenant is refused.
func TestRecordPurgedAndTenants(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	l := NewLedger(db.TestClient(t))
	meta := RunMeta{Run: "nightly", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}
	for _, id := range []string{"", "A", "B"} {
		if _, err := l.Tenant(id).RegisterBatch(ctx, meta, tasks.BatchID(tasks.RunKey(id, "nightly"), 0), 2); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	if err := l.Tenants(ctx, func(id string) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(slices.Compact(ids), []string{"", "A", "B"}) {
		t.Errorf("Tenants: %q", ids)
	}

	a := l.Tenant("A")
	if total, active, err := a.RunCounts(ctx); err != nil || total != 1 || active != 1 {
		t.Errorf("RunCounts before: %d, %d, %v", total, active, err)
	}
	b := tasks.Batch{Tenant: "A", Run: "nightly", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: []string{"K1", "K2"}}
	never := tasks.Batch{Tenant: "A", Run: "nightly", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: []string{"K3"}}
	for i := range 2 { // the second time changes nothing
		applied, err := a.RecordPurged(ctx, b, tasks.BatchID(tasks.RunKey("A", "nightly"), 0), "tq", 0)
		if err != nil || applied != (i == 0) {
			t.Fatalf("RecordPurged #%d: %v, %v", i+1, applied, err)
		}
		if applied, err = a.RecordPurged(ctx, never, tasks.BatchID(tasks.RunKey("A", "nightly"), 1), "tq", 2); err != nil || applied != (i == 0) {
			t.Fatalf("RecordPurged of an unregistered batch #%d: %v, %v", i+1, applied, err)
		}
	}
	st, err := a.Status(ctx, "nightly")
	if err != nil || st.State != RunDoneWithDead || st.TotalKeys != 3 || st.DeadKeys != 3 {
		t.Errorf("A's run after the purge: %+v, %v", st, err)
	}
	dls, err := a.SelectDead(ctx, DeadFilter{All: true, ErrorCode: PurgedErrorCode})
	if err != nil || len(dls) != 3 || dls[0].Reason != PurgedReason || dls[0].Class != "permanent" || dls[0].Queue != "tq" {
		t.Errorf("A's dead letters: %+v, %v", dls, err)
	}
	if total, active, err := a.RunCounts(ctx); err != nil || total != 1 || active != 0 {
		t.Errorf("RunCounts after: %d, %d, %v", total, active, err)
	}
	if _, err := l.Tenant("B").RecordPurged(ctx, b, "x", "tq", 0); err == nil {
		t.Error("B's ledger recorded a batch of A")
	}
	if st, _ := l.Tenant("B").Status(ctx, "nightly"); st.DeadKeys != 0 {
		t.Errorf("B's run: %+v", st)
	}
}
