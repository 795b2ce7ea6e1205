package runreport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/tenantstate"
)

// TestReportSaysTheTenantIsNotRunning: a tenant whose shared state holds its batches is
// among what holds a run, in PauseReason's words, as `enqueue status` and the intake API
// print it.
func TestReportSaysTheTenantIsNotRunning(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	f, err := tenantstate.New(tenantstate.Config{ContextID: "Cust12345", Environment: "https://sod.superoffice.com", Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Hold(context.Background(), tenantstate.Suspended, "Suspend notification"); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	now := time.Now()
	st := ledger.RunStatus{Run: "r", State: ledger.RunActive, TotalKeys: 10, PendingKeys: 10, StartedAt: now}
	r, err := runreport.Report(context.Background(), rdb, insp, "", st, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Paused) != 1 || !strings.HasPrefix(r.Paused[0], "SuperOffice: tenant Cust12345 in Suspended since ") {
		t.Errorf("paused %q", r.Paused)
	}
	if !strings.Contains(r.Line(), "; held: SuperOffice: tenant Cust12345 in Suspended since ") {
		t.Errorf("line %q", r.Line())
	}
}
