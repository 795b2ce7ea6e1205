package main

import (
	"context"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/runspage"
	"github.com/erpresync/erpresync/internal/tenant"
	"github.com/erpresync/erpresync/internal/tenantstate"
)

// stateChangeHandler is SuperOffice's "Customer state change" endpoint
// (tenantstate.NotificationsPath) for the tenants lookup finds: each notification is
// verified against the environment of its tenant's Follower (a token signed by it, for that
// tenant), so it needs no bearer token; a tenant lookup does not know is refused. The body
// is capped (tenantstate.DefaultMaxNotificationBytes) and the listener's deadlines apply.
// ctx ends the JWKS refreshes.
// applied, when set, runs after a notification changed a tenant's state.
func stateChangeHandler(ctx context.Context, lookup func(contextID string) *tenantstate.Follower, applied func(*tenantstate.Follower, tenantstate.Status), log zerolog.Logger) (http.Handler, error) {
	return tenantstate.NewNotifications(ctx, tenantstate.NotificationsConfig{Lookup: lookup, Applied: applied, Logger: log})
}

// followersOf is the lookup of the followed tenants among ts (by context id, in any case).
func followersOf(ts ...*tenant.Tenant) func(contextID string) *tenantstate.Follower {
	return func(id string) *tenantstate.Follower {
		for _, t := range ts {
			if t != nil && t.State != nil && strings.EqualFold(t.State.ContextID(), id) {
				return t.State
			}
		}
		return nil
	}
}

var (
	tenantStateDesc = prometheus.NewDesc("erpresync_tenant_state",
		"State of the SuperOffice tenant as its state API last said (this worker's view): 2 Running, 5 OnlineMaintenance, 6 OfflineMaintenance, 4 Suspended, 0 Unknown (not asked yet)…",
		[]string{"tenant", "context_id"}, nil)
	tenantRunningDesc = prometheus.NewDesc("erpresync_tenant_running",
		"1 while the SuperOffice tenant's state lets the worker call it (Running, OnlineMaintenance), 0 while its batches are held",
		[]string{"tenant", "context_id"}, nil)
)

// tenantStateCollector reports the followed tenants' states, read from Follower.Status at
// scrape time (no I/O). The tenant label is erpresync's tenant ID, as on every other series
// (empty for the implicit tenant); context_id is SuperOffice's.
type tenantStateCollector struct {
	tenants func() []*tenant.Tenant
}

func (c tenantStateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tenantStateDesc
	ch <- tenantRunningDesc
}

func (c tenantStateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.tenants() {
		f := t.State
		if f == nil {
			continue
		}
		st := f.Status()
		running := 0.0
		if st.Running {
			running = 1
		}
		ch <- prometheus.MustNewConstMetric(tenantStateDesc, prometheus.GaugeValue, float64(st.State), t.Spec.ID, f.ContextID())
		ch <- prometheus.MustNewConstMetric(tenantRunningDesc, prometheus.GaugeValue, running, t.Spec.ID, f.ContextID())
	}
}

// followTenants sets deps up for the followed tenants of f, as the tenants file changes:
// their state gauges on deps.Registry and the state-change endpoint on the listener (which
// refuses a notification of a tenant no served tenant follows).
func followTenants(ctx context.Context, deps *appDeps, f *fleet) error {
	deps.Registry.MustRegister(tenantStateCollector{tenants: f.all})
	// A resumed tenant's lane is looked at at once, not at its pause's next check.
	wake := func(fw *tenantstate.Follower, st tenantstate.Status) {
		if !st.Running {
			return
		}
		for _, t := range f.all() {
			if t.State == fw {
				f.wake(t.Spec.ID)
			}
		}
	}
	h, err := stateChangeHandler(ctx, func(id string) *tenantstate.Follower { return followersOf(f.all()...)(id) }, wake, deps.Logger)
	if err != nil {
		return err
	}
	deps.StateChange = h
	return nil
}

// statePauses are the runs page's pauses of the tenants whose shared state says they are not
// running (tenantstate.Pauses); a Redis error shows none (the breakers' read reports it).
func statePauses(ctx context.Context, rdb redis.UniversalClient) []runspage.Pause {
	ps, err := tenantstate.Pauses(ctx, rdb)
	if err != nil {
		return nil
	}
	out := make([]runspage.Pause, 0, len(ps))
	for _, p := range ps {
		out = append(out, runspage.Pause{Reason: tenantstate.PauseWhat(p.ContextID, p.State), Since: p.Since, Until: p.NextCheck})
	}
	return out
}
