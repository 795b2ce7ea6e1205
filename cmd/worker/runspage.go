package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/runspage"
)

// mountRunsPage serves the read-only runs page at /runs/, next to the dashboard and behind
// the same login.
func mountRunsPage(mux *http.ServeMux, cfg httpConfig) {
	insp := asynq.NewInspectorFromRedisClient(cfg.Redis) // shares the client: nothing to close
	h, err := runspage.New(runspage.Config{
		Ledger:  ledger.NewLedger(cfg.Redis),
		Tenants: cfg.Tenants,
		Pauses:  breakerPauses{cfg.Redis},
		Retrying: func(_ context.Context, run string) (runreport.Retrying, error) {
			return runreport.RetryingBatches(insp, "", run)
		},
		DashboardURL: dashboardPath + "/",
	})
	if err != nil {
		// Only a broken build gets here (the config above is fixed); say so where the page
		// would be rather than stop the worker.
		msg := err.Error()
		mux.Handle(runspage.Path, cfg.protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, msg, http.StatusInternalServerError)
		})))
		return
	}
	mux.Handle(runspage.Path, cfg.protect(h))
}

// breakerPauses is the runs page's Pauser: the open circuit breakers of every tenant and
// the tenants whose state holds their batches, read from Redis as every worker sees them.
type breakerPauses struct{ rdb redis.UniversalClient }

func (p breakerPauses) Pauses(ctx context.Context) ([]runspage.Pause, error) {
	bs, err := flow.Breakers(ctx, p.rdb)
	if err != nil {
		return nil, err
	}
	var out []runspage.Pause
	for _, b := range bs {
		if b.State == flow.StateClosed {
			continue
		}
		scope := "tenant " + b.Tenant
		if b.ErpConnection != 0 {
			scope = fmt.Sprintf("ERP connection %d of tenant %s", b.ErpConnection, b.Tenant)
		}
		reason := b.Reason
		if reason == "" {
			reason = "SuperOffice unavailable"
		}
		out = append(out, runspage.Pause{Scope: scope, Reason: reason, Since: b.Since, Until: b.NextProbe})
	}
	return append(out, statePauses(ctx, p.rdb)...), nil
}
