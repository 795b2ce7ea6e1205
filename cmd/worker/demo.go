package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/runspage"
	"github.com/erpresync/erpresync/internal/tenant"
	"github.com/erpresync/erpresync/tasks"
)

const (
	demoUser     = "DEMO"
	demoPassword = "demo-password"
	demoConn     = 1
	demoQueue    = "erpresync-demo"
)

const demoUsage = `Usage: worker demo [--once] [--api soap|rest] [--keys N] [--poison N] [--tenants N] [flags]

Runs the whole pipeline in one process, with nothing to install: an in-process Redis
(miniredis), the NetServer simulator with poison keys, injected 503s and a ticket expiry, the
worker and the dashboard. It enqueues a sample run, shows its progress and a summary (keys
resynced, dead letters with reasons, Changes by table, calls, retries, keys/s), checks the
summary against what the simulator saw, and keeps the dashboard, the runs page and /metrics
up until Ctrl-C (--once: exits after the summary). REDIS_URL points it at a real Redis (queue
erpresync-demo); SUPEROFFICE_URL with credentials at a real tenant, only with --real-tenant
(the demo's keys are invented). --tenants 2 serves two tenants from a tenants file (written to
a temporary directory), each on a simulator of its own, submits a run for each (the first
with the poison keys and the faults) and shows progress and a summary per tenant.
Exit status: 0 the summary matches; 1 it does not; 2 usage or start-up error, or a hold only
an operator can fix (a refused login: the line names the setting).

Flags:
`

// cmdDemo runs the whole pipeline on embedded defaults: miniredis, the NetServer simulator
// with a few faults, the worker and the dashboard; it enqueues a sample run, shows progress
// and a summary, and checks the summary against what the simulator saw.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, v, code, ok := parseDemo(args, stderr, getenv)
	if !ok {
		return code
	}
	log, err := newLogger(stderr, v.str("LOG_FORMAT"), "error")
	if err != nil {
		fmt.Fprintf(stderr, "worker demo: %v\n", err)
		return 2
	}
	redis.SetLogger(newRedisOutage(log))
	say := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	if o.tenants > 1 {
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return cmdDemoTenants(ctx, o, v, log, stdout, stderr, say)
	}
	fail := func(err error) int {
		say("worker demo: %v", err)
		return 2
	}

	redisOpt, closeRedis, err := demoRedis(o, v, say)
	if err != nil {
		return fail(err)
	}
	defer closeRedis()
	keys := demoKeys(o.keys)
	t, err := demoTenant(o, v, keys, say)
	if err != nil {
		return fail(err)
	}
	defer t.close()
	cfg, deps, err := demoWorker(v, redisOpt, t.setup, log, say)
	if err != nil {
		return fail(err)
	}
	a, err := startApp(cfg, deps)
	if err != nil {
		if deps.Listener != nil {
			deps.Listener.Close()
		}
		return fail(err)
	}
	defer a.shutdown()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	matches, err := demoRun(ctx, a, keys, t, stdout, stderr, say)
	if err != nil {
		return fail(err)
	}
	if o.once {
		if !matches {
			return 1
		}
		return 0
	}
	say("\nThe worker keeps running: the dashboard and metrics stay up until Ctrl-C.")
	<-ctx.Done()
	return 0
}

// demoOptions are the demo's own flags.
type demoOptions struct {
	once       bool
	keys       int  // keys in the sample run
	poison     int  // poison keys among them
	realTenant bool // --real-tenant: the sample keys may go to SUPEROFFICE_URL
	realRedis  bool // REDIS_URL, --redis-url or REDIS_CLUSTER_ADDRS was given
	tenants    int  // --tenants: tenants served from a tenants file, each on its own simulator (2 or more)
}

// parseDemo parses the demo's flags and the settings. ok=false means: exit with code, the
// reason already printed.
func parseDemo(args []string, stderr io.Writer, getenv func(string) string) (o demoOptions, v values, code int, ok bool) {
	fs := flag.NewFlagSet("worker demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.once, "once", false, "exit after the summary (status 0 when it matches what the simulator saw)")
	fs.IntVar(&o.keys, "keys", 3000, "keys in the sample run")
	fs.IntVar(&o.poison, "poison", 4, "poison keys among them (the simulator rejects any batch holding one)")
	api := fs.String("api", "", "transport, soap or rest: short for --superoffice-api")
	fs.IntVar(&o.tenants, "tenants", 1, fmt.Sprintf("tenants served from a tenants file, each on a simulator of its own, 1 to %d (with 2 or more: a run each, the first with the poison keys)", len(demoTenantIDs)))
	fs.BoolVar(&o.realTenant, "real-tenant", false, "with SUPEROFFICE_URL set: send the invented sample keys (CUST-1xxxx) to that tenant; without it the demo refuses")
	fs.Usage = func() {
		fmt.Fprint(stderr, demoUsage)
		fs.PrintDefaults()
	}
	v, err := parseSettings(fs, args, getenv)
	if err != nil {
		return o, nil, parseExit(err), false
	}
	if *api != "" {
		v["SUPEROFFICE_API"] = *api
	}
	if err := noArgs(fs); err != nil {
		fmt.Fprintf(stderr, "worker demo: %v\n", err)
		return o, nil, 2, false
	}
	if o.keys < 1 || o.poison < 0 || o.poison > o.keys {
		fmt.Fprintln(stderr, "worker demo: --keys must be positive and --poison between 0 and --keys")
		return o, nil, 2, false
	}
	if o.tenants < 1 || o.tenants > len(demoTenantIDs) {
		fmt.Fprintf(stderr, "worker demo: --tenants %d: want 1 to %d\n", o.tenants, len(demoTenantIDs))
		return o, nil, 2, false
	}
	if o.tenants > 1 && (o.realTenant || v.str("SUPEROFFICE_URL") != "") {
		fmt.Fprintln(stderr, "worker demo: --tenants serves simulators only: unset SUPEROFFICE_URL and leave out --real-tenant")
		return o, nil, 2, false
	}
	o.realRedis = getenv("REDIS_URL") != "" || flagSet(fs, "redis-url") || v.str("REDIS_CLUSTER_ADDRS") != ""
	return o, v, 0, true
}

// demoRedis is the configured Redis when one was given, else an in-process miniredis;
// closeRedis stops the miniredis.
func demoRedis(o demoOptions, v values, say func(format string, a ...any)) (_ asynq.RedisConnOpt, closeRedis func(), err error) {
	if o.realRedis {
		opt, err := redisconn.Parse(v.str("REDIS_URL"), v.str("REDIS_CLUSTER_ADDRS"))
		if err != nil {
			return nil, nil, err
		}
		if addrs := v.str("REDIS_CLUSTER_ADDRS"); addrs != "" {
			say("Redis:       cluster %s", addrs)
		} else {
			say("Redis:       %s", redisconn.Redact(v.str("REDIS_URL")))
		}
		return opt, func() {}, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return nil, nil, fmt.Errorf("start miniredis: %v", err)
	}
	say("Redis:       in-process miniredis at %s (set REDIS_URL to use a real one)", mr.Addr())
	return asynq.RedisClientOpt{Addr: mr.Addr()}, mr.Close, nil
}

// demoSuperOffice is the SuperOffice the demo calls: a real tenant (sim nil, no poison) or
// the simulator.
type demoSuperOffice struct {
	setup  *tenant.Tenant
	sim    *netserversim.Running // nil for a real tenant
	poison []string              // the keys the simulator rejects
}

// close stops the simulator, if any.
func (t *demoSuperOffice) close() {
	if t.sim != nil {
		t.sim.Close()
	}
}

// demoTenant is the configured tenant when SUPEROFFICE_URL is set (and --real-tenant
// allows it), else the simulator with poison keys among keys and a few faults.
func demoTenant(o demoOptions, v values, keys []string, say func(format string, a ...any)) (*demoSuperOffice, error) {
	if v.str("SUPEROFFICE_URL") != "" {
		if !o.realTenant {
			return nil, fmt.Errorf("SUPEROFFICE_URL is set (%s): the demo would send %d invented keys (CUST-1xxxx, ERP connection %d) to that tenant; "+
				"pass --real-tenant to do so, or unset SUPEROFFICE_URL to use the built-in simulator", redisconn.Redact(v.str("SUPEROFFICE_URL")), o.keys, demoConn)
		}
		setup, err := implicitTenant(v, false, tenant.BuildOptions{})
		if err != nil {
			return nil, err
		}
		say("SuperOffice: %s (%s, %s auth); no faults are injected", redisconn.Redact(v.str("SUPEROFFICE_URL")), setup.API, setup.Mode)
		say("--real-tenant: sending %d sample keys (CUST-1xxxx, ERP connection %d) to that tenant; Ctrl-C stops.", o.keys, demoConn)
		return &demoSuperOffice{setup: setup}, nil
	}
	poison := pickPoison(keys, o.poison)
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{demoUser: demoPassword}})
	if err != nil {
		return nil, fmt.Errorf("start simulator: %v", err)
	}
	sim.SetPoison(poison...)
	sim.SetLatency(20 * time.Millisecond)
	sim.Fail503(8)
	sim.DropNext(3)
	sim.Throttle(2, time.Second)
	vv := values{}
	for k, x := range v {
		vv[k] = x
	}
	vv["SUPEROFFICE_URL"], vv["SUPEROFFICE_USERNAME"], vv["SUPEROFFICE_PASSWORD"] = sim.URL, demoUser, demoPassword
	vv["SUPEROFFICE_TICKET"], vv["SUPEROFFICE_SYSTEM_TOKEN"], vv["SUPEROFFICE_PRIVATE_KEY_FILE"], vv["SUPEROFFICE_CONTEXT_ID"], vv["SUPEROFFICE_LOGIN_URL"] = "", "", "", "", ""
	setup, err := implicitTenant(vv, false, tenant.BuildOptions{})
	if err != nil {
		sim.Close()
		return nil, err
	}
	say("SuperOffice: NetServer simulator at %s over %s (8 injected 503s, 3 dropped connections, 2 throttled calls, a ticket expiry, %d poison keys)", sim.URL, setup.API, len(poison))
	return &demoSuperOffice{setup: setup, sim: sim, poison: poison}, nil
}

// demoWorker is the worker's settings with the demo's overrides, and its live objects:
// the tenant's client and the listener (whose URLs it prints).
func demoWorker(v values, redisOpt asynq.RedisConnOpt, setup *tenant.Tenant, log zerolog.Logger, say func(format string, a ...any)) (appConfig, appDeps, error) {
	cfg, err := workerSettings(v)
	if err != nil {
		return cfg, appDeps{}, err
	}
	cfg.RedisOpt = redisOpt
	deps := appDeps{Resyncer: setup.Resyncer, Refreshes: setup.Refreshes, AuthFix: setup.AuthFix, Logger: log}
	cfg.BusinessRetries, cfg.BusinessDelay, cfg.ReconcileEvery = 2, time.Second, 5*time.Second
	// The demo may share a Redis with real runs: their retention is the real workers' call.
	cfg.LedgerRetention = 0
	// A queue of its own, so that a real worker on the same Redis never takes a demo batch.
	cfg.Queues, cfg.TrickleQueue = map[string]int{demoQueue: 1}, ""
	if deps.Listener, err = demoListen(cfg.HTTPAddr, say); err != nil {
		return cfg, deps, err
	}
	if deps.Listener != nil {
		base := "http://" + deps.Listener.Addr().String()
		say("Dashboard:   %s%s/", base, dashboardPath)
		say("Runs:        %s%s", base, runspage.Path)
		say("Metrics:     %s/metrics", base)
	}
	return cfg, deps, nil
}

// demoRun enqueues the sample run, shows its progress until nothing is pending and prints
// the summary; matches reports whether the summary matches what the simulator saw.
func demoRun(ctx context.Context, a *app, keys []string, t *demoSuperOffice, stdout, stderr io.Writer, say func(format string, a ...any)) (matches bool, err error) {
	prod, err := intake.NewProducer(intake.ProducerConfig{Redis: a.rdb, Queue: demoQueue, TaskOptions: []asynq.Option{asynq.Retention(a.cfg.ResultRetention)}})
	if err != nil {
		return false, err
	}
	run := "demo-" + time.Now().UTC().Format("20060102-150405")
	start := time.Now()
	sum, err := prod.Submit(ctx, intake.RunSpec{Run: run, ErpConnectionID: demoConn, ActorType: erpsync.ActorCustomer, Origin: "demo"},
		intake.Source{Name: "demo keys", R: strings.NewReader(strings.Join(keys, "\n") + "\n")})
	if err != nil {
		return false, fmt.Errorf("enqueue: %v", err)
	}
	say("\nEnqueued run %s: %d keys in %d batches. Resyncing...", run, sum.Keys, sum.Batches)

	st, err := demoWait(ctx, demoWatch{ledger: a.ledger, rdb: a.rdb, insp: asynq.NewInspectorFromRedisClient(a.rdb), run: run}, t.sim, stderr)
	var held *heldError
	if errors.As(err, &held) {
		return false, fmt.Errorf("%s; %s (or SUPEROFFICE_URL if SuperOffice answered HTTP 421: the tenant moved). Last error: %s",
			held.what, t.setup.AuthFix, held.lastErr)
	}
	if err != nil {
		return false, err
	}
	elapsed := time.Since(start)
	dead, err := a.ledger.DeadLetters(context.Background(), run)
	if err != nil {
		return false, fmt.Errorf("read the dead letters: %v", err)
	}
	return printSummary(stdout, st, dead, t.sim, a.metrics, elapsed, keys, t.poison), nil
}

// demoListen opens the listener for the dashboard and metrics on addr or, when addr cannot
// be had (8080 is often taken on a developer's machine), on a free loopback port; nil when
// addr is "off".
func demoListen(addr string, say func(format string, a ...any)) (net.Listener, error) {
	ln, err := listen(addr)
	if err == nil {
		return ln, nil
	}
	ln, err2 := net.Listen("tcp", "127.0.0.1:0")
	if err2 != nil {
		return nil, fmt.Errorf("listen on %s (%v) or on a free port: %w", addr, err, err2)
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		say("(%s is taken; using %s)", addr, ln.Addr())
	} else {
		say("(cannot listen on %s: %v; using %s)", addr, err, ln.Addr())
	}
	return ln, nil
}

// demoHeartbeat is how often the demo repeats a progress line that has not changed.
const demoHeartbeat = 30 * time.Second

// demoWatch is what demoWait reads: the run's ledger, its batches in the retry set and
// the circuit breakers, as `enqueue status` reads them.
type demoWatch struct {
	ledger *ledger.Ledger
	rdb    redis.UniversalClient
	insp   *asynq.Inspector
	run    string
}

// report is the run's report as `enqueue status` prints it.
func (d demoWatch) report(ctx context.Context) (runreport.RunReport, error) {
	st, err := d.ledger.Status(ctx, d.run)
	if err != nil && !errors.Is(err, ledger.ErrRunNotFound) {
		return runreport.RunReport{}, err
	}
	return runreport.Report(ctx, d.rdb, d.insp, demoQueue, st, time.Now())
}

// heldError ends the demo when every pending batch is held for an auth failure: the
// demo's own settings are wrong, and they cannot change while it runs.
type heldError struct{ what, lastErr string }

func (e *heldError) Error() string { return e.what + ": " + e.lastErr }

// demoWait shows progress until nothing of the run is pending, one line when something
// changed (at most one a second) and otherwise one every demoHeartbeat; it returns a
// *heldError when every pending key is held for an auth failure. On the simulator it
// expires every ticket once a third of the keys are done.
func demoWait(ctx context.Context, d demoWatch, sim *netserversim.Running, w io.Writer) (ledger.RunStatus, error) {
	expired := sim == nil
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last time.Time
	lastState := ""
	for {
		r, err := d.report(ctx)
		if err != nil {
			return ledger.RunStatus{}, err
		}
		if !expired && r.ResyncedKeys*3 >= r.TotalKeys {
			sim.ExpireTickets()
			expired = true
			fmt.Fprintln(w, "  (the simulator just expired every ticket: the worker logs in again, once)")
		}
		// What the line says apart from the clock: the rate and the ETA move every tick.
		state := fmt.Sprint(r.ResyncedKeys, r.DeadKeys, r.PendingKeys, r.AuthHeldBatches, len(r.Paused))
		if r.Waiting != "" {
			state += fmt.Sprint(" waiting ", r.RetryingBatches, r.NextRetryAt.Unix(), r.LastRetryAt.Unix())
		}
		finished := r.TotalKeys > 0 && r.PendingKeys == 0
		if since := time.Since(last); finished || (state != lastState && since >= time.Second) || since >= demoHeartbeat {
			fmt.Fprintf(w, "  %s\n", r.Line())
			last, lastState = time.Now(), state
		}
		if finished {
			st, err := d.ledger.Status(ctx, d.run)
			return st, err
		}
		if r.NeedsOperator() {
			if state != lastState {
				fmt.Fprintf(w, "  %s\n", r.Line())
			}
			return ledger.RunStatus{}, &heldError{what: fmt.Sprintf("SuperOffice refused the login: all %d pending keys are held until the credentials are fixed", r.PendingKeys),
				lastErr: r.AuthHeldError}
		}
		select {
		case <-ctx.Done():
			return ledger.RunStatus{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// summaryWidth is the width the demo's summary keeps within: a terminal's default.
const summaryWidth = 80

// summary writes label-value rows within summaryWidth columns: the label in a column of
// its own, the value wrapped at word boundaries and indented under itself.
type summary struct {
	w io.Writer
}

const summaryLabel = 24 // columns of the label, indent included

func (s summary) row(indent int, label, value string) {
	pad := strings.Repeat(" ", summaryLabel)
	line := strings.Repeat(" ", indent) + label
	if len(line) >= summaryLabel {
		fmt.Fprintln(s.w, line)
		line = ""
	}
	line += pad[len(line):]
	if summaryLabel+len(value) <= summaryWidth { // fits: as it is, columns kept
		fmt.Fprintln(s.w, line+value)
		return
	}
	n := len(line)
	for i, word := range strings.Fields(value) {
		if i > 0 && n+1+len(word) > summaryWidth {
			fmt.Fprintln(s.w, line)
			line, n = pad+word, summaryLabel+len(word)
			continue
		}
		if i > 0 {
			line += " "
			n++
		}
		line += word
		n += len(word)
	}
	fmt.Fprintln(s.w, strings.TrimRight(line, " "))
}

// printSummary writes the run's summary, within 80 columns, and reports whether it matches
// the simulator's own counts (always true against a real tenant, where there is nothing to
// compare). m nil leaves out the retries and splits (the fleet's, not the run's, when the
// worker serves several tenants).
func printSummary(w io.Writer, st ledger.RunStatus, dead []tasks.DeadLetter, sim *netserversim.Running, m *tasks.Metrics, elapsed time.Duration, keys, poison []string) bool {
	var retries string
	splits := -1
	if m != nil {
		retries, splits = retryCounts(m)
	}
	s := summary{w}
	fmt.Fprintf(w, "\nRun %s: %s\n", st.Run, st.State)
	s.row(2, "keys resynced", fmt.Sprintf("%d of %d", st.ResyncedKeys, st.TotalKeys))
	s.row(2, "dead letters", fmt.Sprint(st.DeadKeys))
	for _, d := range dead {
		s.row(4, d.Key, deadLine(d))
	}
	s.row(2, "records", fmt.Sprintf("%7s %7s %7s", "added", "updated", "deleted"))
	for _, table := range recordTables(st.Records) {
		s.row(4, table, fmt.Sprintf("%7d %7d %7d", st.Records[tasks.KindAdded][table], st.Records[tasks.KindUpdated][table], st.Records[tasks.KindDeleted][table]))
	}
	s.row(2, "calls by the worker", fmt.Sprintf("%d ForceResyncExternal calls", st.Calls))
	ok := true
	if sim != nil {
		snap := sim.Counts()
		var outcomes []string
		for o, n := range snap.Calls {
			outcomes = append(outcomes, fmt.Sprintf("%s %d", o, n))
		}
		sort.Strings(outcomes)
		s.row(2, "simulator saw", "HTTP requests (ticket retries and faults included): "+strings.Join(outcomes, ", "))
		s.row(2, "logins", fmt.Sprint(snap.Logins.PasswordOK))
		ok = demoMatches(st, dead, snap, keys, poison)
	}
	if retries != "" {
		s.row(2, "retries by class", retries)
	}
	if splits >= 0 {
		s.row(2, "poison splits", fmt.Sprintf("%d batches split to isolate poison keys", splits))
	}
	s.row(2, "elapsed", elapsed.Round(10*time.Millisecond).String())
	s.row(2, "keys/s", fmt.Sprintf("%.0f", float64(st.ResyncedKeys+st.DeadKeys)/elapsed.Seconds()))
	if sim != nil {
		verdict := "matches what the simulator saw"
		if !ok {
			verdict = "DOES NOT match what the simulator saw"
		}
		s.row(2, "summary", verdict)
	}
	return ok
}

// deadLine is a dead letter for the summary, which names its key already: the class and
// error code, the attempts, and SuperOffice's explanation ("business ERP_REJECTED after 3
// attempts: ERP connection 1 rejected …"), instead of the ledger's reason, which says
// "dead letter" and the number of keys again.
func deadLine(d tasks.DeadLetter) string {
	what := d.Class
	if d.ErrorCode != "" {
		what += " " + d.ErrorCode
	}
	what += fmt.Sprintf(" after %d attempts", d.Attempts)
	if d.Attempts == 1 {
		what = strings.TrimSuffix(what, "s")
	}
	why := d.TechExplanation
	if why == "" {
		why = d.UserExplanation
	}
	if why == "" {
		return what
	}
	return what + ": " + erpsync.Truncate(strings.Join(strings.Fields(why), " "), 300)
}

// demoMatches checks the ledger against the simulator: every good key resynced, exactly the
// poison keys dead (each once), no resync-all call, and the records equal to the changes the
// simulator delivered.
func demoMatches(st ledger.RunStatus, dead []tasks.DeadLetter, snap netserversim.Snapshot, keys, poison []string) bool {
	bad := map[string]bool{}
	for _, p := range poison {
		bad[p] = true
	}
	for _, k := range keys {
		if !bad[k] && snap.Resynced[k] < 1 {
			return false
		}
	}
	if len(dead) != len(poison) || st.DeadKeys != int64(len(poison)) || st.ResyncedKeys != int64(len(keys)-len(poison)) {
		return false
	}
	seen := map[string]bool{}
	for _, d := range dead {
		if !bad[d.Key] || seen[d.Key] {
			return false
		}
		seen[d.Key] = true
	}
	return snap.ResyncAll == 0 && sameRecords(st.Records, simRecords(snap))
}

// simRecords turns the simulator's delivered change counts into the ledger's shape
// (kind → table → records).
func simRecords(s netserversim.Snapshot) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for table, kinds := range s.Changes {
		for kind, n := range kinds {
			if out[string(kind)] == nil {
				out[string(kind)] = map[string]int64{}
			}
			out[string(kind)][table] += int64(n)
		}
	}
	return out
}

// sameRecords compares two kind → table → records maps; a zero count equals an absent one.
func sameRecords(a, b map[string]map[string]int64) bool {
	norm := func(m map[string]map[string]int64) string {
		var parts []string
		for k, tables := range m {
			for tb, n := range tables {
				if n != 0 {
					parts = append(parts, fmt.Sprintf("%s/%s=%d", k, tb, n))
				}
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	return norm(a) == norm(b)
}

// retryCounts reads the worker's own retry and split counters: "transient 11 (fast 9,
// asynq 2), business 12 (asynq 12)".
func retryCounts(m *tasks.Metrics) (string, int) {
	byClass := map[string]map[string]int{}
	var pm dto.Metric
	ch := make(chan prometheus.Metric, 64)
	go func() { m.Retries.Collect(ch); close(ch) }()
	for metric := range ch {
		if err := metric.Write(&pm); err != nil {
			continue
		}
		var class, layer string
		for _, l := range pm.GetLabel() {
			switch l.GetName() {
			case "class":
				class = l.GetValue()
			case "layer":
				layer = l.GetValue()
			}
		}
		if byClass[class] == nil {
			byClass[class] = map[string]int{}
		}
		byClass[class][layer] += int(pm.GetCounter().GetValue())
	}
	var parts []string
	for class, layers := range byClass {
		total := 0
		var ls []string
		for layer, n := range layers {
			total += n
			ls = append(ls, fmt.Sprintf("%s %d", layer, n))
		}
		sort.Strings(ls)
		parts = append(parts, fmt.Sprintf("%s %d (%s)", class, total, strings.Join(ls, ", ")))
	}
	sort.Strings(parts)
	if err := m.Splits.Write(&pm); err != nil {
		return strings.Join(parts, ", "), 0
	}
	return strings.Join(parts, ", "), int(pm.GetCounter().GetValue())
}

func recordTables(r map[string]map[string]int64) []string {
	seen := map[string]bool{}
	for _, tables := range r {
		for t := range tables {
			seen[t] = true
		}
	}
	out := make([]string, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func demoKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("CUST-%05d", 10000+i)
	}
	return keys
}

// pickPoison spreads n poison keys over the run.
func pickPoison(keys []string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, keys[(i*len(keys))/n+len(keys)/(2*n+1)])
	}
	return out
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
