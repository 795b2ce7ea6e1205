package main

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/redistest"
)

// TestRunsPagePausesFromBreakers: the runs page's banner lists exactly the open circuit
// breakers every worker sees in Redis, with their scope, reason and next probe.
func TestRunsPagePausesFromBreakers(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	defer rdb.Close()
	ctx := context.Background()
	p := breakerPauses{rdb}
	if got, err := p.Pauses(ctx); err != nil || len(got) != 0 {
		t.Fatalf("no breaker yet: %v, %v", got, err)
	}
	c, err := flow.New(flow.Config{Redis: rdb, Tenant: "Cust12345", ConnWindow: 4, ConnThreshold: 0.75, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 4 { // every batch of connection 3 refused alike: its breaker opens
		c.Outcome(ctx, 3, "ERP_DOWN", false, true)
	}
	got, err := p.Pauses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Scope != "ERP connection 3 of tenant Cust12345" || got[0].Reason == "" ||
		got[0].Since.IsZero() || !got[0].Until.After(got[0].Since) || !strings.Contains(got[0].Reason, "ERP_DOWN") {
		t.Errorf("pauses = %+v", got)
	}
}
