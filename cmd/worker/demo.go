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
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/erpresync/erpresync/netserversim"
	"github.com/erpresync/erpresync/runspage"
	"github.com/erpresync/erpresync/tasks"
)

const (
	demoUser     = "DEMO"
	demoPassword = "demo-password"
	demoConn     = 1
	demoQueue    = "erpresync-demo"
)

// cmdDemo runs the whole pipeline on embedded defaults: miniredis, the NetServer simulator
// with a few faults, the worker and the dashboard; it enqueues a sample run, shows progress
// and a summary, and checks the summary against what the simulator saw.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("worker demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "exit after the summary (status 0 when it matches what the simulator saw)")
	nkeys := fs.Int("keys", 3000, "keys in the sample run")
	npoison := fs.Int("poison", 4, "poison keys among them (the simulator rejects any batch holding one)")
	api := fs.String("api", "", "transport, soap or rest: short for --superoffice-api")
	v, err := parseSettings(fs, args, getenv)
	if err != nil {
		return parseExit(err)
	}
	if *api != "" {
		v["SUPEROFFICE_API"] = *api
	}
	if err := noArgs(fs); err != nil {
		fmt.Fprintf(stderr, "worker demo: %v\n", err)
		return 2
	}
	if *nkeys < 1 || *npoison < 0 || *npoison > *nkeys {
		fmt.Fprintln(stderr, "worker demo: --keys must be positive and --poison between 0 and --keys")
		return 2
	}
	log, err := newLogger(stderr, v.str("LOG_FORMAT"), "error")
	if err != nil {
		fmt.Fprintf(stderr, "worker demo: %v\n", err)
		return 2
	}
	redis.SetLogger(newRedisOutage(log))
	say := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	// Redis: the configured one when REDIS_URL (or --redis-url) was given, else miniredis.
	var redisOpt asynq.RedisConnOpt
	if getenv("REDIS_URL") != "" || flagSet(fs, "redis-url") || v.str("REDIS_CLUSTER_ADDRS") != "" {
		if redisOpt, err = redisconn.Parse(v.str("REDIS_URL"), v.str("REDIS_CLUSTER_ADDRS")); err != nil {
			say("worker demo: %v", err)
			return 2
		}
		if addrs := v.str("REDIS_CLUSTER_ADDRS"); addrs != "" {
			say("Redis:       cluster %s", addrs)
		} else {
			say("Redis:       %s", redisconn.Redact(v.str("REDIS_URL")))
		}
	} else {
		mr, err := miniredis.Run()
		if err != nil {
			say("worker demo: start miniredis: %v", err)
			return 2
		}
		defer mr.Close()
		redisOpt = asynq.RedisClientOpt{Addr: mr.Addr()}
		say("Redis:       in-process miniredis at %s (set REDIS_URL to use a real one)", mr.Addr())
	}

	// SuperOffice: the configured tenant when SUPEROFFICE_URL is set, else the simulator.
	keys := demoKeys(*nkeys)
	poison := pickPoison(keys, *npoison)
	var sim *netserversim.Running
	var setup *tenantSetup
	if v.str("SUPEROFFICE_URL") != "" {
		if setup, err = newTenant(v, nil); err != nil {
			say("worker demo: %v", err)
			return 2
		}
		poison = nil
		say("SuperOffice: %s (%s, %s auth); no faults are injected", redisconn.Redact(v.str("SUPEROFFICE_URL")), setup.API, setup.Mode)
		say("WARNING: SUPEROFFICE_URL is set, so the demo sends its %d sample keys (CUST-1xxxx, ERP connection %d) to that tenant.", *nkeys, demoConn)
		say("         Unset SUPEROFFICE_URL to use the built-in simulator. Starting in 5 s; Ctrl-C stops.")
		select {
		case <-ctx.Done():
			return 2
		case <-time.After(5 * time.Second):
		}
	} else {
		sim, err = netserversim.Start(netserversim.Config{Users: map[string]string{demoUser: demoPassword}})
		if err != nil {
			say("worker demo: start simulator: %v", err)
			return 2
		}
		defer sim.Close()
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
		if setup, err = newTenant(vv, nil); err != nil {
			say("worker demo: %v", err)
			return 2
		}
		say("SuperOffice: NetServer simulator at %s over %s (8 injected 503s, 3 dropped connections, 2 throttled calls, a ticket expiry, %d poison keys)", sim.URL, setup.API, len(poison))
	}

	cfg, err := workerSettings(v)
	if err != nil {
		say("worker demo: %v", err)
		return 2
	}
	cfg.RedisOpt, cfg.Resyncer, cfg.Refreshes, cfg.Logger = redisOpt, setup.Client, setup.Refreshes, log
	cfg.BusinessRetries, cfg.BusinessDelay, cfg.ReconcileEvery = 2, time.Second, 5*time.Second
	// The demo may share a Redis with real runs: their retention is the real workers' call.
	cfg.LedgerRetention = 0
	// A queue of its own, so that a real worker on the same Redis never takes a demo batch.
	cfg.Queues, cfg.TrickleQueue = map[string]int{demoQueue: 1}, ""
	if cfg.Listener, err = demoListen(cfg.HTTPAddr, say); err != nil {
		say("worker demo: %v", err)
		return 2
	}
	if cfg.Listener != nil {
		base := "http://" + cfg.Listener.Addr().String()
		say("Dashboard:   %s%s/", base, dashboardPath)
		say("Runs:        %s%s", base, runspage.Path)
		say("Metrics:     %s/metrics", base)
	}
	a, err := startApp(cfg)
	if err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		say("worker demo: %v", err)
		return 2
	}
	defer a.shutdown()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	prod, err := intake.NewProducer(intake.ProducerConfig{Redis: a.rdb, Queue: demoQueue, TaskOptions: []asynq.Option{asynq.Retention(cfg.ResultRetention)}})
	if err != nil {
		say("worker demo: %v", err)
		return 2
	}
	run := "demo-" + time.Now().UTC().Format("20060102-150405")
	start := time.Now()
	sum, err := prod.Submit(ctx, intake.RunSpec{Run: run, ErpConnectionID: demoConn, ActorType: erpsync.ActorCustomer, Origin: "demo"},
		intake.Source{Name: "demo keys", R: strings.NewReader(strings.Join(keys, "\n") + "\n")})
	if err != nil {
		say("worker demo: enqueue: %v", err)
		return 2
	}
	say("\nEnqueued run %s: %d keys in %d batches. Resyncing...", run, sum.Keys, sum.Batches)

	st, err := demoWait(ctx, a.ledger, run, sim, stderr)
	if err != nil {
		say("worker demo: %v", err)
		return 2
	}
	elapsed := time.Since(start)
	dead, err := a.ledger.DeadLetters(context.Background(), run)
	if err != nil {
		say("worker demo: read the dead letters: %v", err)
		return 2
	}
	ok := printSummary(stdout, st, dead, sim, a.metrics, elapsed, keys, poison)
	if *once {
		if !ok {
			return 1
		}
		return 0
	}
	say("\nThe worker keeps running: the dashboard and metrics stay up until Ctrl-C.")
	<-ctx.Done()
	return 0
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

// demoWait shows progress until nothing of the run is pending; on the simulator it expires
// every ticket once a third of the keys are done.
func demoWait(ctx context.Context, lg *ledger.Ledger, run string, sim *netserversim.Running, w io.Writer) (ledger.RunStatus, error) {
	expired := sim == nil
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := time.Time{}
	for {
		st, err := lg.Status(ctx, run)
		if err != nil && !errors.Is(err, ledger.ErrRunNotFound) {
			return st, err
		}
		if !expired && st.ResyncedKeys*3 >= st.TotalKeys {
			sim.ExpireTickets()
			expired = true
			fmt.Fprintln(w, "  (the simulator just expired every ticket: the worker logs in again, once)")
		}
		if time.Since(last) >= time.Second || st.PendingKeys == 0 {
			pct := 0.0
			if st.TotalKeys > 0 {
				pct = 100 * float64(st.ResyncedKeys+st.DeadKeys) / float64(st.TotalKeys)
			}
			fmt.Fprintf(w, "  %5.1f%%  resynced %d  dead %d  pending %d  calls %d\n", pct, st.ResyncedKeys, st.DeadKeys, st.PendingKeys, st.Calls)
			last = time.Now()
		}
		if st.TotalKeys > 0 && st.PendingKeys == 0 {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// printSummary writes the run's summary and reports whether it matches the simulator's
// own counts (always true against a real tenant, where there is nothing to compare).
func printSummary(w io.Writer, st ledger.RunStatus, dead []tasks.DeadLetter, sim *netserversim.Running, m *tasks.Metrics, elapsed time.Duration, keys, poison []string) bool {
	retries, splits := retryCounts(m)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nRun %s\t%s\n", st.Run, st.State)
	fmt.Fprintf(tw, "  keys resynced\t%d of %d\n", st.ResyncedKeys, st.TotalKeys)
	fmt.Fprintf(tw, "  dead letters\t%d\n", st.DeadKeys)
	for _, d := range dead {
		fmt.Fprintf(tw, "    %s\t%s\n", d.Key, d.Reason)
	}
	fmt.Fprintf(tw, "  records\tadded\tupdated\tdeleted\n")
	for _, table := range recordTables(st.Records) {
		fmt.Fprintf(tw, "    %s\t%d\t%d\t%d\n", table, st.Records[tasks.KindAdded][table], st.Records[tasks.KindUpdated][table], st.Records[tasks.KindDeleted][table])
	}
	fmt.Fprintf(tw, "  ForceResyncExternal calls by the worker\t%d\n", st.Calls)
	ok := true
	if sim != nil {
		snap := sim.Counts()
		var outcomes []string
		for o, n := range snap.Calls {
			outcomes = append(outcomes, fmt.Sprintf("%s %d", o, n))
		}
		sort.Strings(outcomes)
		fmt.Fprintf(tw, "  HTTP requests the simulator saw (ticket retries and faults included)\t%s\n", strings.Join(outcomes, ", "))
		fmt.Fprintf(tw, "  logins\t%d\n", snap.Logins.PasswordOK)
		ok = demoMatches(st, dead, snap, keys, poison)
	}
	if retries != "" {
		fmt.Fprintf(tw, "  retries by class\t%s\n", retries)
	}
	fmt.Fprintf(tw, "  batches split to isolate poison keys\t%d\n", splits)
	fmt.Fprintf(tw, "  elapsed\t%s\n", elapsed.Round(10*time.Millisecond))
	fmt.Fprintf(tw, "  keys/s\t%.0f\n", float64(st.ResyncedKeys+st.DeadKeys)/elapsed.Seconds())
	if sim != nil {
		verdict := "matches what the simulator saw"
		if !ok {
			verdict = "DOES NOT match what the simulator saw"
		}
		fmt.Fprintf(tw, "  summary\t%s\n", verdict)
	}
	tw.Flush()
	return ok
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
