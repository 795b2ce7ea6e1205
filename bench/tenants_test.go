package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
)

// tenantBench is the set-up of the tenants benchmarks: one private redis-server, one
// simulator that serves any tenant path (netserversim.Config.AnyTenant: the tenants file
// refuses two tenants of one URL, and a thousand simulators are too many), a tenants file
// and worker processes started on it.
type tenantBench struct {
	b   *testing.B
	srv *redistest.Server
	rdb *redis.Client
	sim *netserversim.Running
	dir string
}

func newTenantBench(b *testing.B) *tenantBench {
	b.Helper()
	srv := e2etest.StartRedis(b, redistest.Options{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { rdb.Close() })
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{e2etest.User: e2etest.Password}, AnyTenant: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	e2etest.Binary(b, "cmd/worker") // built before anything is timed
	return &tenantBench{b: b, srv: srv, rdb: rdb, sim: sim, dir: b.TempDir()}
}

// benchTenant is one entry of the tenants file: its id and rate limit (0: none).
type benchTenant struct {
	id        string
	rateLimit float64
	rateBurst int // 0: the default (1)
}

// tenantIDs are n tenants named prefix0000, prefix0001… without limits.
func tenantIDs(prefix string, n int) []benchTenant {
	out := make([]benchTenant, n)
	for i := range out {
		out[i] = benchTenant{id: fmt.Sprintf("%s%04d", prefix, i)}
	}
	return out
}

// writeTenants writes a tenants file of ts, each at its own path of the simulator with a
// password login, and returns its path.
func (tb *tenantBench) writeTenants(ts []benchTenant) string {
	tb.b.Helper()
	var sb strings.Builder
	sb.WriteString("tenants:\n")
	for _, t := range ts {
		fmt.Fprintf(&sb, "  - id: %s\n    url: %s/%s\n    auth: {username: %s, password_env: SIM_PASSWORD}\n", t.id, tb.sim.RootURL, t.id, e2etest.User)
		if t.rateLimit > 0 {
			fmt.Fprintf(&sb, "    rate_limit: %g\n", t.rateLimit)
		}
		if t.rateBurst > 0 {
			fmt.Fprintf(&sb, "    rate_burst: %d\n", t.rateBurst)
		}
	}
	path := filepath.Join(tb.dir, fmt.Sprintf("tenants-%d.yaml", len(ts)))
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		tb.b.Fatal(err)
	}
	return path
}

// benchWorker is a worker process and the address of its HTTP listener.
type benchWorker struct {
	*e2etest.Process
	addr string
}

// startWorkers starts n worker processes of concurrency slots each on the tenants file
// (implicit: the simulator's own tenant is served as the implicit one too) and waits until
// each answers /readyz.
func (tb *tenantBench) startWorkers(n, concurrency int, file string, implicit bool) []benchWorker {
	tb.b.Helper()
	env := e2etest.WorkerEnv("redis://"+tb.srv.Addr+"/0", tb.sim)
	if !implicit {
		for _, k := range []string{"SUPEROFFICE_URL", "SUPEROFFICE_USERNAME", "SUPEROFFICE_PASSWORD"} {
			delete(env, k)
		}
	}
	env["TENANTS_CONFIG"] = file
	env["SIM_PASSWORD"] = e2etest.Password
	env["WORKER_CONCURRENCY"] = strconv.Itoa(concurrency)
	env["LOG_LEVEL"] = "warn"
	ws := make([]benchWorker, n)
	for i := range ws {
		env["WORKER_HTTP_ADDR"] = freeAddr(tb.b)
		ws[i] = benchWorker{e2etest.StartWorker(tb.b, env), env["WORKER_HTTP_ADDR"]}
	}
	for _, w := range ws {
		testwait.For(tb.b, "worker ready", 5*time.Minute, func() (bool, error) { return w.get("/readyz") == http.StatusOK, nil })
	}
	return ws
}

// stopWorkers stops ws with SIGTERM, as an orchestrator does, and waits for them.
func (tb *tenantBench) stopWorkers(ws []benchWorker) {
	tb.b.Helper()
	for _, w := range ws {
		w.Signal(tb.b, syscall.SIGTERM)
	}
	for _, w := range ws {
		if code := w.Wait(tb.b, time.Minute); code != 0 {
			tb.b.Fatalf("worker exited with %d", code)
		}
	}
}

// get is the status of GET path on w's listener (0 when it does not answer).
func (w benchWorker) get(path string) int {
	resp, err := http.Get("http://" + w.addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metrics are the unlabelled metrics of one scrape of w's /metrics, by name.
func (w benchWorker) metrics(b *testing.B) map[string]float64 {
	b.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+w.addr+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "identity") // no gzip writer allocated for the scrape
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.ContainsAny(name, "{#") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

// liveHeap waits for w's next garbage collection after since (the runtime forces one at
// least every two minutes) and returns the heap's allocated bytes it reports then: the live
// heap, plus what a scrape or two allocated since.
func (w benchWorker) liveHeap(b *testing.B, since time.Time) float64 {
	b.Helper()
	var heap float64
	testwait.For(b, "a garbage collection", 3*time.Minute, func() (bool, error) {
		m := w.metrics(b)
		heap = m["go_memstats_heap_alloc_bytes"]
		if last := m["go_memstats_last_gc_time_seconds"]; last > float64(since.UnixNano())/1e9 {
			return true, nil
		}
		time.Sleep(2 * time.Second) // scrape seldom: each allocates
		return false, nil
	})
	return heap
}

// cpuTime is the user + system CPU time process pid has used so far, from /proc.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis: state is the 3rd, utime the 14th and
	// stime the 15th, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// rss is the resident set of process pid now (VmRSS), in bytes.
func rss(b *testing.B, pid int) int64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// commandCalls is how many commands Redis has run (INFO commandstats, those inside Lua
// scripts included), by command.
func commandCalls(b *testing.B, rdb *redis.Client) map[string]int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		out[name] = n
	}
	return out
}

// freeAddr is a loopback address with a free port.
func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// median is the median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medians reports the median of each named series as a metric.
func medians(b *testing.B, series map[string][]float64) {
	for name, xs := range series {
		b.ReportMetric(median(xs), name)
	}
	b.ReportMetric(0, "ns/op") // an iteration's wall time includes set-up; the medians are the figures
}

// status is tenant's run (tenant "" the implicit one), zero while it is not in the ledger.
func (tb *tenantBench) status(tenant, run string) (resynced, pending int64) {
	st, err := e2etest.TenantRunStatus(tb.rdb, tenant, run)
	if err != nil {
		return 0, 1
	}
	return st.ResyncedKeys, st.PendingKeys + st.DeadKeys
}

// waitFinished waits until tenant's run has every key resynced (a dead letter fails).
func (tb *tenantBench) waitFinished(tenant, run string, timeout time.Duration) {
	tb.b.Helper()
	testwait.For(tb.b, tenant+"/"+run+" resynced", timeout, func() (bool, error) {
		st, err := e2etest.TenantRunStatus(tb.rdb, tenant, run)
		if err == nil && st.DeadKeys > 0 {
			tb.b.Fatalf("%s/%s: %d dead keys", tenant, run, st.DeadKeys)
		}
		return err == nil && st.TotalKeys > 0 && st.ResyncedKeys == st.TotalKeys, fmt.Errorf("%+v %v", st, err)
	})
}

// submitTimed submits keys as tenant's run in batches of batch and returns how long it took
// from the submission to the last key resynced.
func (tb *tenantBench) submitTimed(tenant, run string, keys []string, batch int) time.Duration {
	tb.b.Helper()
	start := time.Now()
	e2etest.SubmitTenant(tb.b, tb.rdb, tenant, run, erpsync.ActorCustomer, keys, batch)
	tb.waitFinished(tenant, run, 5*time.Minute)
	return time.Since(start)
}

// BenchmarkTenantsBacklog: a small tenant's run (500 keys) submitted while another tenant's
// 20,000-key run is being worked off, against the same small run alone and against both runs
// as the implicit tenant's (one asynq queue, no lanes), in the same run: two worker
// processes of 6 slots, batches of 10 keys, calls of 50 ms. Each figure is the time from the
// small run's submission to its last key resynced, median of the iterations. The goal is
// lanes-s <= 2 × alone-s + 1 s.
//
//	go test ./bench -run '^$' -bench TenantsBacklog -benchtime 5x
func BenchmarkTenantsBacklog(b *testing.B) {
	const small, big, batch = 500, 20000, 10
	tb := newTenantBench(b)
	tb.sim.SetLatency(50 * time.Millisecond)
	ws := tb.startWorkers(2, 6, tb.writeTenants([]benchTenant{{id: "big"}, {id: "small"}}), true)
	series := map[string][]float64{}
	i := 0
	for b.Loop() {
		alone := tb.submitTimed("small", fmt.Sprintf("alone-%d", i), e2etest.Keys(fmt.Sprintf("SA%d-", i), small), batch)
		lanes := tb.behind("big", "small", i, small, big, batch)
		plain := tb.behind("", "", i, small, big, batch)
		series["alone-s"] = append(series["alone-s"], alone.Seconds())
		series["lanes-s"] = append(series["lanes-s"], lanes.Seconds())
		series["no-lanes-s"] = append(series["no-lanes-s"], plain.Seconds())
		i++
	}
	tb.stopWorkers(ws)
	medians(b, series)
}

// behind submits bigTenant's run of big keys, waits until a twentieth of it is resynced
// (the backlog is being worked off), submits smallTenant's run of small keys and returns how
// long that took to finish; then it waits for the backlog to finish.
func (tb *tenantBench) behind(bigTenant, smallTenant string, i, small, big, batch int) time.Duration {
	tb.b.Helper()
	backlog := fmt.Sprintf("backlog-%s-%d", bigTenant, i)
	e2etest.SubmitTenant(tb.b, tb.rdb, bigTenant, backlog, erpsync.ActorCustomer, e2etest.Keys(fmt.Sprintf("BB%s%d-", bigTenant, i), big), batch)
	testwait.Until(tb.b, "backlog running", 5*time.Minute, func() bool {
		done, _ := tb.status(bigTenant, backlog)
		return done >= int64(big/20)
	})
	took := tb.submitTimed(smallTenant, fmt.Sprintf("behind-%s-%d", bigTenant, i), e2etest.Keys(fmt.Sprintf("SB%s%d-", bigTenant, i), small), batch)
	if done, _ := tb.status(bigTenant, backlog); done == int64(big) {
		tb.b.Logf("tenant %q: the small run finished after the whole backlog (%s)", smallTenant, took)
	}
	tb.waitFinished(bigTenant, backlog, 10*time.Minute)
	return took
}

// BenchmarkTenantsRateShare: a tenant limited to 10 requests a second and an unlimited one
// share 12 slots (two worker processes of 6) against calls of 50 ms, batches of 10 keys.
// Each tenant's requests per second are measured over 10 s after 1 s of warm-up, alone and
// then both at once, in the same run; the goal is shared >= 95 % of alone for each. It runs
// with the limited tenant's rate_burst at its default of 1 and at 2: a burst of one loses
// every gap the busy fleet leaves between two of its calls, a burst of two lets the next call
// make the gap up (at most two requests at once, still 10 a second on average).
//
//	go test ./bench -run '^$' -bench TenantsRateShare -benchtime 5x
func BenchmarkTenantsRateShare(b *testing.B) {
	for _, burst := range []int{1, 2} {
		b.Run(fmt.Sprintf("burst%d", burst), func(b *testing.B) { rateShare(b, burst) })
	}
}

func rateShare(b *testing.B, burst int) {
	const batch, warm, window = 10, time.Second, 10 * time.Second
	tb := newTenantBench(b)
	tb.sim.SetLatency(50 * time.Millisecond)
	ws := tb.startWorkers(2, 6, tb.writeTenants([]benchTenant{{id: "limited", rateLimit: 10, rateBurst: burst}, {id: "open"}}), false)
	// Backlogs that last beyond the window: 10 requests/s, and at most 12 slots / 50 ms.
	backlog := map[string]int{"limited": 10 * batch * 14, "open": 240 * batch * 14}
	series := map[string][]float64{}
	i := 0
	for b.Loop() {
		for _, phase := range [][]string{{"limited"}, {"open"}, {"limited", "open"}} {
			runs := map[string]string{}
			for _, t := range phase {
				runs[t] = fmt.Sprintf("share-%d-%d", i, len(phase))
				e2etest.SubmitTenant(b, tb.rdb, t, runs[t], erpsync.ActorCustomer, e2etest.Keys(fmt.Sprintf("R%s%d-%d-", t, i, len(phase)), backlog[t]), batch)
			}
			time.Sleep(warm) // a measurement window, not synchronisation
			before := map[string]int64{}
			for t, run := range runs {
				before[t], _ = tb.status(t, run)
			}
			time.Sleep(window)
			for t, run := range runs {
				after, _ := tb.status(t, run)
				name := t + "-alone-req/s"
				if len(phase) > 1 {
					name = t + "-shared-req/s"
				}
				series[name] = append(series[name], float64(after-before[t])/batch/window.Seconds())
			}
			for t, run := range runs {
				tb.waitFinished(t, run, 5*time.Minute)
			}
		}
		i++
	}
	tb.stopWorkers(ws)
	for _, t := range []string{"limited", "open"} {
		var pct []float64
		for j := range series[t+"-alone-req/s"] {
			pct = append(pct, 100*series[t+"-shared-req/s"][j]/series[t+"-alone-req/s"][j])
		}
		series[t+"-shared-%"] = pct
	}
	medians(b, series)
}

// BenchmarkTenantsIdle: what tenants cost while they have nothing to do. Two worker
// processes of 6 slots serve a tenants file of 1 tenant and then one of 1,000, on one Redis;
// after their start (every tenant's login check done) and 3 s of settling, a 10-s window
// measures Redis's commands per second (INFO commandstats, those inside Lua scripts
// included) and each worker's CPU (user + system, /proc); then each worker's Go heap and RSS
// after the next garbage collection (the runtime forces one every two minutes at the
// latest). Per tenant is (1,000's − 1's) / 999. Also measured: from the workers' start to
// both answering /readyz, to every tenant's login done, and the most logins at once at the
// simulator. Goals: <= 100 commands/s, <= 5 % of a core per worker, <= 10 KiB per tenant.
//
//	go test ./bench -run '^$' -bench TenantsIdle -benchtime 3x
func BenchmarkTenantsIdle(b *testing.B) {
	const window, settle, workers = 10 * time.Second, 3 * time.Second, 2
	tb := newTenantBench(b)
	files := map[int]string{1: tb.writeTenants(tenantIDs("one", 1)), 1000: tb.writeTenants(tenantIDs("idle", 1000))}
	series := map[string][]float64{}
	for b.Loop() {
		var rss1, heap1 float64
		for _, n := range []int{1, 1000} {
			tb.sim.Reset()
			tb.sim.ResetTraffic()
			start := time.Now()
			ws := tb.startWorkers(workers, 6, files[n], false)
			ready := time.Since(start)
			testwait.Until(b, "every tenant's login", 5*time.Minute, func() bool { return tb.sim.Counts().Logins.PasswordOK >= workers*n })
			logins := time.Since(start)
			peak := tb.sim.Traffic().PeakInFlight
			time.Sleep(settle) // a measurement window, not synchronisation
			cmds0, cpu0 := commandCalls(b, tb.rdb), workerCPU(b, ws)
			t0 := time.Now()
			time.Sleep(window)
			cmds1, cpu1 := commandCalls(b, tb.rdb), workerCPU(b, ws)
			elapsed := time.Since(t0).Seconds()
			var calls int64
			for name, c := range cmds1 {
				if name != "info" {
					calls += c - cmds0[name]
				}
			}
			end := time.Now()
			var mem, heap float64
			for _, w := range ws {
				heap += w.liveHeap(b, end) / workers
				mem += float64(rss(b, w.Cmd.Process.Pid)) / workers
			}
			tb.stopWorkers(ws)
			p := fmt.Sprintf("t%d-", n)
			series[p+"redis-cmd/s"] = append(series[p+"redis-cmd/s"], float64(calls)/elapsed)
			series[p+"cpu-%/worker"] = append(series[p+"cpu-%/worker"], 100*(cpu1-cpu0).Seconds()/workers/elapsed)
			series[p+"ready-s"] = append(series[p+"ready-s"], ready.Seconds())
			series[p+"logins-s"] = append(series[p+"logins-s"], logins.Seconds())
			series[p+"logins-at-once"] = append(series[p+"logins-at-once"], float64(peak))
			if n == 1 {
				rss1, heap1 = mem, heap
				continue
			}
			series["rss-KiB/tenant"] = append(series["rss-KiB/tenant"], (mem-rss1)/999/1024)
			series["heap-KiB/tenant"] = append(series["heap-KiB/tenant"], (heap-heap1)/999/1024)
		}
	}
	medians(b, series)
}

// workerCPU is the CPU time the processes of ws have used so far, together.
func workerCPU(b *testing.B, ws []benchWorker) time.Duration {
	var d time.Duration
	for _, w := range ws {
		d += cpuTime(b, w.Cmd.Process.Pid)
	}
	return d
}

// BenchmarkTenantsManySmall: 200 tenants' runs of 500 keys against one tenant's run of
// 100,000 keys (the same total), submitted before two worker processes of 6 slots start,
// against the zero-latency simulator, batches of 100. Wall time is from the workers' start to
// the last key resynced (their start, with 200 or 1 login checks, included); keys/s is
// 100,000 over it. The two cases alternate in each iteration.
//
//	go test ./bench -run '^$' -bench TenantsManySmall -benchtime 5x
func BenchmarkTenantsManySmall(b *testing.B) {
	const total, batch = 100000, 100
	tb := newTenantBench(b)
	cases := []struct {
		name    string
		tenants []benchTenant
	}{{"t200x500", tenantIDs("many", 200)}, {"t1x100000", tenantIDs("single", 1)}}
	files := map[string]string{}
	for _, c := range cases {
		files[c.name] = tb.writeTenants(c.tenants)
	}
	series := map[string][]float64{}
	i := 0
	for b.Loop() {
		for _, c := range cases {
			run := fmt.Sprintf("many-%d", i)
			per := total / len(c.tenants)
			for _, t := range c.tenants {
				e2etest.SubmitTenant(b, tb.rdb, t.id, run, erpsync.ActorCustomer, e2etest.Keys(fmt.Sprintf("M%s-%d-", t.id, i), per), batch)
			}
			start := time.Now()
			ws := tb.startWorkers(2, 6, files[c.name], false)
			for _, t := range c.tenants { // each waited for once, in turn: few polls of Redis
				tb.waitFinished(t.id, run, 10*time.Minute)
			}
			wall := time.Since(start)
			tb.stopWorkers(ws)
			series[c.name+"-s"] = append(series[c.name+"-s"], wall.Seconds())
			series[c.name+"-keys/s"] = append(series[c.name+"-keys/s"], total/wall.Seconds())
		}
		i++
	}
	medians(b, series)
}
