package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/tenant"
)

// fleet is the tenants a worker serves, live: the implicit tenant of the SUPEROFFICE_*
// settings (ID "") and those of the tenants file, each built once (tenant.Build) and
// rebuilt only when its entry changes. apply takes a whole new set (the tenants file read
// again); a tenant whose new entry does not build keeps its previous one, and the error is
// logged. A removed tenant's batches are held by the Router, never dead-lettered, until it
// returns. Safe for concurrent use.
type fleet struct {
	opts tenant.BuildOptions // Logger is the process's
	log  zerolog.Logger

	mu     sync.RWMutex
	byID   map[string]*tenant.Tenant
	file   []tenant.Spec // the tenants file's last set
	change []func()      // called after every apply that changed something
	waker  func(id string)
}

// setWaker sets what wake does: the lanes' dispatcher looking at a tenant's lane at once.
func (f *fleet) setWaker(fn func(id string)) {
	f.mu.Lock()
	f.waker = fn
	f.mu.Unlock()
}

// wake has tenant id's lane looked at now (it may go again: resumed, or back in the file).
func (f *fleet) wake(id string) {
	f.mu.RLock()
	fn := f.waker
	f.mu.RUnlock()
	if fn != nil && id != "" {
		fn(id)
	}
}

// newFleet returns a fleet that builds its tenants with opts (Logger: the process's).
func newFleet(opts tenant.BuildOptions) *fleet {
	return &fleet{opts: opts, log: opts.Logger, byID: map[string]*tenant.Tenant{}}
}

// get is the tenant id, or nil when it is not served.
func (f *fleet) get(id string) *tenant.Tenant {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.byID[id]
}

// ids are the served tenants' IDs, sorted ("" first when the implicit tenant is served).
func (f *fleet) ids() []string {
	f.mu.RLock()
	out := make([]string, 0, len(f.byID))
	for id := range f.byID {
		out = append(out, id)
	}
	f.mu.RUnlock()
	slices.Sort(out)
	return out
}

// all is the served tenants, in ids order.
func (f *fleet) all() []*tenant.Tenant {
	ids := f.ids()
	out := make([]*tenant.Tenant, 0, len(ids))
	f.mu.RLock()
	for _, id := range ids {
		if t := f.byID[id]; t != nil {
			out = append(out, t)
		}
	}
	f.mu.RUnlock()
	return out
}

// onChange registers fn to run after each apply that added, removed or rebuilt a tenant.
func (f *fleet) onChange(fn func()) {
	f.mu.Lock()
	f.change = append(f.change, fn)
	f.mu.Unlock()
}

// build builds spec with the fleet's options. The logger stays the process's: flow control,
// its only user, names the tenant on each line itself (flow.TenantName), and a second
// "tenant" key would make the JSON lines hold the key twice.
func (f *fleet) build(spec tenant.Spec) (*tenant.Tenant, error) {
	return tenant.Build(spec, f.opts)
}

// add builds and serves one tenant (the implicit one, at start); its error is the caller's.
func (f *fleet) add(spec tenant.Spec) (*tenant.Tenant, error) {
	t, err := f.build(spec)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	old := f.byID[spec.ID]
	f.byID[spec.ID] = t
	fns := slices.Clone(f.change)
	f.mu.Unlock()
	if old != nil {
		old.Close()
	}
	for _, fn := range fns {
		fn()
	}
	return t, nil
}

// apply makes the tenants file's tenants specs: it builds those added or changed, stops
// serving those removed, and leaves the rest (and the implicit tenant) alone. It returns the
// errors of the tenants it could not build (each also logged), which keep their previous
// settings, or are not served if they are new.
func (f *fleet) apply(specs []tenant.Spec) error {
	f.mu.RLock()
	prev := f.file
	f.mu.RUnlock()
	added, removed, changed := tenant.Diff(prev, specs)
	if len(added)+len(removed)+len(changed) == 0 {
		return nil
	}
	want := map[string]tenant.Spec{}
	for _, s := range specs {
		want[s.ID] = s
	}
	built := map[string]*tenant.Tenant{}
	var errs []error
	for _, id := range slices.Concat(added, changed) {
		t, err := f.build(want[id])
		if err != nil {
			f.log.Error().Str("tenant", id).Msgf("tenants file: tenant not (re)built, its previous settings stay: %v", err)
			errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
			continue
		}
		built[id] = t
	}
	var closing []*tenant.Tenant
	f.mu.Lock()
	for id, t := range built {
		if old := f.byID[id]; old != nil {
			closing = append(closing, old)
		}
		f.byID[id] = t
	}
	for _, id := range removed {
		if id == "" {
			continue
		}
		if old := f.byID[id]; old != nil {
			closing = append(closing, old)
			delete(f.byID, id)
		}
	}
	f.file = specs
	fns := slices.Clone(f.change)
	f.mu.Unlock()
	for _, t := range closing {
		t.Close()
	}
	f.log.Info().Strs("added", added).Strs("removed", removed).Strs("changed", changed).Int("tenants", len(f.ids())).
		Msg("tenants file applied (a removed tenant's batches are held until it returns or an operator purges its runs)")
	for _, fn := range fns {
		fn()
	}
	return errors.Join(errs...)
}

// close stops every tenant's flow control.
func (f *fleet) close() {
	for _, t := range f.all() {
		t.Close()
	}
}

// refreshesCollector reports erpresync_ticket_refreshes_total per served tenant, from each
// tenant's ticket source at scrape time.
type refreshesCollector struct{ f *fleet }

var refreshesDesc = prometheus.NewDesc("erpresync_ticket_refreshes_total",
	"SuperOffice tickets obtained (logins), by tenant, as counted by the tenant's ticket source.", []string{"tenant"}, nil)

func (c refreshesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- refreshesDesc }

func (c refreshesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.f.all() {
		if t.Refreshes != nil {
			ch <- prometheus.MustNewConstMetric(refreshesDesc, prometheus.CounterValue, float64(t.Refreshes()), t.Spec.ID)
		}
	}
}

// serveTenants builds the tenants the worker serves: the implicit tenant of the
// SUPEROFFICE_* settings (always without TENANTS_CONFIG; with it, when SUPEROFFICE_URL or
// SUPEROFFICE_ENVIRONMENT names the tenant), and the tenants file's, which it then follows until ctx ends (on SIGHUP and when the
// file changes). Any tenant that does not build at start is an error: the worker does not
// start half configured.
func serveTenants(ctx context.Context, v values, getenv func(string) string, opts tenant.BuildOptions) (*fleet, error) {
	f := newFleet(opts)
	path := v.str("TENANTS_CONFIG")
	if path == "" || v.str("SUPEROFFICE_URL") != "" || v.str("SUPEROFFICE_ENVIRONMENT") != "" {
		spec, err := specFromSettings(v, true)
		if err == nil {
			_, err = f.add(spec)
		}
		if err != nil {
			return nil, err
		}
	}
	if path == "" {
		return f, nil
	}
	specs, err := tenant.Load(path, getenv)
	if err == nil {
		err = f.apply(specs)
	}
	if err != nil {
		f.close()
		return nil, fmt.Errorf("TENANTS_CONFIG: %w", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		apply := func(specs []tenant.Spec) { _ = f.apply(specs) } // errors logged by apply
		if err := tenant.Watch(ctx, path, getenv, specs, hup, apply, opts.Logger); err != nil {
			opts.Logger.Error().Err(err).Msg("tenants file: no longer followed; SIGHUP and changes take effect after a restart")
		}
	}()
	return f, nil
}

// withTenants is c serving f's tenants on the runs page (nil f: the implicit tenant only).
func (c httpConfig) withTenants(f *fleet) httpConfig {
	if f != nil {
		c.Tenants = f.ids
	}
	return c
}
