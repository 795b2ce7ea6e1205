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
	return &tenantBench{b: b, srv: srv, rdb: rdb, sim: sim, dir: b.TempDir()}
}

// benchTenant is one entry of the tenants file: its id and rate limit (0: none).
type benchTenant struct {
	id        string
	rateLimit float64
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

// metric is the value of the unlabelled metric name on w's /metrics.
func (w benchWorker) metric(b *testing.B, name string) float64 {
	b.Helper()
	resp, err := http.Get("http://" + w.addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatalf("no %s in /metrics (%v)", name, sc.Err())
	return 0
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
// Each tenant's requests per second are measured over 6 s after 1 s of warm-up, alone and
// then both at once, in the same run; the goal is shared >= 95 % of alone for each.
//
//	go test ./bench -run '^$' -bench TenantsRateShare -benchtime 5x
func BenchmarkTenantsRateShare(b *testing.B) {
	const batch, warm, window = 10, time.Second, 6 * time.Second
	tb := newTenantBench(b)
	tb.sim.SetLatency(50 * time.Millisecond)
	ws := tb.startWorkers(2, 6, tb.writeTenants([]benchTenant{{id: "limited", rateLimit: 10}, {id: "open"}}), false)
	// Backlogs that last beyond the window: 10 requests/s, and at most 12 slots / 50 ms.
	backlog := map[string]int{"limited": 10 * batch * 10, "open": 240 * batch * 10}
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
