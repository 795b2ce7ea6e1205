package main

import (
	"context"
	"net/http"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/runspage"
	"github.com/erpresync/erpresync/tasks"
)

// mountRunsPage serves the read-only runs page at /runs/, next to the dashboard and behind
// the same login.
func mountRunsPage(mux *http.ServeMux, cfg httpConfig) {
	insp := asynq.NewInspectorFromRedisClient(cfg.Redis) // shares the client: nothing to close
	h, err := runspage.New(runspage.Config{
		Ledger: tasks.NewLedger(cfg.Redis),
		Pauses: nil, // flow control: the circuit breaker's runspage.Pauser goes here
		Retrying: func(_ context.Context, run string) (tasks.Retrying, error) {
			return tasks.RetryingBatches(insp, "", run)
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

// protect puts h behind the dashboard's basic auth when DASHBOARD_USER and
// DASHBOARD_PASSWORD are set.
func (cfg httpConfig) protect(h http.Handler) http.Handler {
	if cfg.DashboardUser == "" && cfg.DashboardPass == "" {
		return h
	}
	return basicAuth(h, cfg.DashboardUser, cfg.DashboardPass)
}
