package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/erpresync/erpresync/internal/tenant"
)

// demoTenantIDs are the tenants of `worker demo --tenants N`, in order; the first has the
// poison keys and the faults.
var demoTenantIDs = []string{"acme", "globex", "initech", "umbrella"}

// demoServed is one tenant of the many-tenant demo: its simulator, keys and run.
type demoServed struct {
	id     string
	sim    *netserversim.Running
	keys   []string
	poison []string
	run    string
	start  time.Time
}

// cmdDemoTenants is `worker demo --tenants N`: the demo serving N tenants, each on a
// simulator of its own, from a tenants file written to a temporary directory, through the
// lanes as a fleet with a tenants file does. It submits a run for each (the first tenant's
// with poison keys and injected faults), shows progress per tenant and a summary per tenant;
// matches is true when every summary matches its simulator.
func cmdDemoTenants(ctx context.Context, o demoOptions, v values, log zerolog.Logger, stdout, stderr io.Writer, say func(string, ...any)) (code int) {
	fail := func(err error) int {
		say("worker demo: %v", err)
		return 2
	}
	redisOpt, closeRedis, err := demoRedis(o, v, say)
	if err != nil {
		return fail(err)
	}
	defer closeRedis()
	served, path, env, err := demoTenantSims(o, say)
	defer func() {
		for _, s := range served {
			s.sim.Close()
		}
	}()
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(filepath.Dir(path))
	vv := values{}
	for k, x := range v {
		vv[k] = x
	}
	vv["TENANTS_CONFIG"], vv["SUPEROFFICE_URL"] = path, ""
	frdb := redisconn.Client(redisOpt)
	defer frdb.Close()
	reg := prometheus.NewRegistry()
	tctx, stopTenants := context.WithCancel(ctx)
	defer stopTenants()
	fl, err := serveTenants(tctx, vv, func(k string) string { return env[k] }, tenant.BuildOptions{Redis: frdb, FlowMetrics: flow.NewMetrics(reg), Logger: log})
	if err != nil {
		return fail(err)
	}
	defer fl.close()
	cfg, deps, err := demoWorker(v, redisOpt, &tenant.Tenant{}, log, say)
	if err != nil {
		return fail(err)
	}
	deps.Tenants, deps.Registry, cfg.TaskCheckInterval = fl, reg, lanesTaskCheck
	a, err := startApp(cfg, deps)
	if err != nil {
		if deps.Listener != nil {
			deps.Listener.Close()
		}
		return fail(err)
	}
	defer a.shutdown()
	matches, err := demoTenantsRun(ctx, a, served, stdout, stderr, say)
	if err != nil {
		return fail(err)
	}
	if !o.once {
		say("\nThe worker keeps running: the dashboard and metrics stay up until Ctrl-C.")
		<-ctx.Done()
		return 0
	}
	if !matches {
		return 1
	}
	return 0
}

// demoTenantSims starts a simulator per tenant and writes the tenants file naming them
// (passwords by environment variable, which env holds) to a temporary directory.
func demoTenantSims(o demoOptions, say func(string, ...any)) (served []*demoServed, path string, env map[string]string, err error) {
	env = map[string]string{}
	var spec strings.Builder
	spec.WriteString("tenants:\n")
	for i, id := range demoTenantIDs[:o.tenants] {
		api := []string{"soap", "rest"}[i%2] // both transports
		s := &demoServed{id: id, keys: demoTenantKeys(id, o.keys)}
		if i == 0 {
			s.poison = pickPoison(s.keys, o.poison)
		}
		if s.sim, err = netserversim.Start(netserversim.Config{Users: map[string]string{demoUser: demoPassword}}); err != nil {
			return served, "", nil, fmt.Errorf("start simulator of %s: %v", id, err)
		}
		served = append(served, s)
		s.sim.SetLatency(20 * time.Millisecond)
		s.sim.SetPoison(s.poison...)
		if i == 0 {
			s.sim.Fail503(4)
			s.sim.DropNext(2)
		}
		pwEnv := strings.ToUpper(id) + "_PASSWORD"
		env[pwEnv] = demoPassword
		fmt.Fprintf(&spec, "  - id: %s\n    url: %s\n    api: %s\n    auth: {username: %s, password_env: %s}\n", id, s.sim.URL, api, demoUser, pwEnv)
		faults := "no faults"
		if i == 0 {
			faults = fmt.Sprintf("4 injected 503s, 2 dropped connections, %d poison keys", len(s.poison))
		}
		say("Tenant %-8s NetServer simulator at %s over %s (%s)", id, s.sim.URL, api, faults)
	}
	dir, err := os.MkdirTemp("", "erpresync-demo-")
	if err != nil {
		return served, "", nil, err
	}
	path = filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(path, []byte(spec.String()), 0o600); err != nil {
		os.RemoveAll(dir)
		return served, "", nil, err
	}
	say("Tenants:     %s (the demo's tenants file; removed when it ends)", path)
	return served, path, env, nil
}

// demoTenantKeys are a tenant's sample keys: ACME-10000, ACME-10001, ...
func demoTenantKeys(id string, n int) []string {
	keys := demoKeys(n)
	for i, k := range keys {
		keys[i] = strings.ToUpper(id) + strings.TrimPrefix(k, "CUST")
	}
	return keys
}

// demoTenantsRun submits a run for each tenant, shows the progress of each until nothing
// is pending, and prints a summary per tenant; matches reports whether every one matches
// its simulator.
func demoTenantsRun(ctx context.Context, a *app, served []*demoServed, stdout, stderr io.Writer, say func(string, ...any)) (matches bool, err error) {
	for _, s := range served {
		prod, err := intake.NewProducer(intake.ProducerConfig{Redis: a.rdb, Tenant: s.id, Queue: demoQueue,
			TaskOptions: []asynq.Option{asynq.Retention(a.cfg.ResultRetention)}})
		if err != nil {
			return false, err
		}
		s.run, s.start = "demo-"+time.Now().UTC().Format("20060102-150405"), time.Now()
		sum, err := prod.Submit(ctx, intake.RunSpec{Run: s.run, ErpConnectionID: demoConn, ActorType: erpsync.ActorCustomer, Origin: "demo"},
			intake.Source{Name: "demo keys of " + s.id, R: strings.NewReader(strings.Join(s.keys, "\n") + "\n")})
		if err != nil {
			return false, fmt.Errorf("enqueue for %s: %v", s.id, err)
		}
		say("Enqueued run %s of tenant %s: %d keys in %d batches, in its lane.", s.run, s.id, sum.Keys, sum.Batches)
	}
	say("Resyncing; the lanes hand the tenants' batches to the workers in turn...")
	sts, elapsed, err := demoTenantsWait(ctx, a, served, stderr)
	if err != nil {
		return false, err
	}
	matches = true
	for i, s := range served {
		l := a.ledger.Tenant(s.id)
		dead, err := l.DeadLetters(context.Background(), s.run)
		if err != nil {
			return false, fmt.Errorf("read the dead letters of %s: %v", s.id, err)
		}
		fmt.Fprintf(stdout, "\nTenant %s", s.id) // printSummary's "Run ..." line follows
		ok := printSummary(stdout, sts[i], dead, s.sim, nil, elapsed[i], s.keys, s.poison)
		matches = matches && ok
	}
	// Retries and splits are counted for the fleet, not per tenant.
	retries, splits := retryCounts(a.metrics)
	fmt.Fprintln(stdout, "\nAll tenants")
	sm := summary{stdout}
	if retries != "" {
		sm.row(2, "retries by class", retries)
	}
	sm.row(2, "poison splits", fmt.Sprintf("%d batches split to isolate poison keys", splits))
	return matches, nil
}

// demoTenantsWait shows a progress line per tenant when its counts change (each tenant at
// most once a second) until no tenant has keys pending, and returns each run's status and
// how long it took.
func demoTenantsWait(ctx context.Context, a *app, served []*demoServed, w io.Writer) ([]ledger.RunStatus, []time.Duration, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	sts := make([]ledger.RunStatus, len(served))
	took := make([]time.Duration, len(served))
	last := make([]string, len(served))
	lastAt := make([]time.Time, len(served))
	for {
		done := 0
		for i, s := range served {
			st, err := a.ledger.Tenant(s.id).Status(ctx, s.run)
			if err != nil {
				return nil, nil, fmt.Errorf("status of %s: %v", s.id, err)
			}
			finished := st.TotalKeys > 0 && st.PendingKeys == 0
			line := fmt.Sprintf("  %-8s %d/%d keys done (%.1f%%), %d dead", s.id, st.ResyncedKeys+st.DeadKeys, st.TotalKeys,
				100*float64(st.ResyncedKeys+st.DeadKeys)/float64(max(st.TotalKeys, 1)), st.DeadKeys)
			if finished {
				if took[i] == 0 {
					took[i] = time.Since(s.start)
				}
				line += ", finished"
			}
			if line != last[i] && (finished || time.Since(lastAt[i]) >= time.Second) {
				fmt.Fprintln(w, line)
				last[i], lastAt[i] = line, time.Now()
			}
			sts[i] = st
			if finished {
				done++
			}
		}
		if done == len(served) {
			return sts, took, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-tick.C:
		}
	}
}
