package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// Flow control across worker processes: each test starts real worker processes on one
// private Redis, in front of one simulator, and checks what the simulator saw.

// flowWorkers starts n worker processes with env on top of workerEnv and waits until all
// of them serve (so that a test's traffic starts with every worker ready).
func flowWorkers(t testing.TB, db *redistest.DB, sim *netserversim.Running, n int, env map[string]string) []*proc {
	t.Helper()
	var ps []*proc
	for range n {
		ps = append(ps, startWorker(t, workerEnvWith(db, sim, env)))
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	waitFor(t, 20*time.Second, func() (bool, string) {
		ss, err := insp.Servers()
		return err == nil && len(ss) == n, fmt.Sprintf("%d of %d workers up (%v)", len(ss), n, err)
	})
	return ps
}

// submitWith is submit with task options (a shortened retry budget).
func submitWith(t testing.TB, rdb redis.UniversalClient, run string, keys []string, size int, opts ...asynq.Option) {
	t.Helper()
	lg := ledger.NewLedger(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()
	actor := erpsync.ActorCustomer
	meta := ledger.RunMeta{Run: run, ErpConnectionID: testConn, ActorType: actor, Source: "test"}
	for seq := 0; seq*size < len(keys); seq++ {
		b := tasks.Batch{Run: run, ErpConnectionID: testConn, ActorType: actor, Keys: keys[seq*size : min((seq+1)*size, len(keys))], Seq: seq, Source: "test"}
		if _, err := lg.RegisterBatch(ctx, meta, tasks.BatchID(run, seq), len(b.Keys)); err != nil {
			t.Fatal(err)
		}
		task, err := tasks.NewResyncTask(b, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.EnqueueContext(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
}

// flowCluster starts a private Redis, a simulator that answers each call after latency,
// and n workers with env (see flowWorkers); the simulator's traffic record starts after the
// workers are up.
func flowCluster(t *testing.T, latency time.Duration, n int, env map[string]string) (*redistest.DB, *redis.Client, *netserversim.Running) {
	t.Helper()
	db := redistest.New(t)
	sim := startSim(t)
	sim.SetLatency(latency)
	flowWorkers(t, db, sim, n, env)
	sim.ResetTraffic()
	return db, db.TestClient(t), sim
}

// maxInWindow is the most arrivals within any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestFlowLimitsHoldAcrossProcesses: three workers of four slots each share one rate limit
// (20 requests/s) and one concurrency cap (2 per ERP connection).
func TestFlowLimitsHoldAcrossProcesses(t *testing.T) {
	t.Parallel()
	db, rdb, sim := flowCluster(t, 50*time.Millisecond, 3, map[string]string{"SUPEROFFICE_RATE_LIMIT": "20", "SUPEROFFICE_MAX_CONCURRENCY": "2"})
	const run = "flow-limits"
	keys := testKeys("L", 300)
	submit(t, db, run, erpsync.ActorCustomer, keys, 5) // 60 calls and 3 logins: about 3 s at 20/s
	t0 := time.Now()
	st := waitDone(t, rdb, run, 30*time.Second)
	if st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 {
		t.Fatalf("status %+v", st)
	}
	tr := sim.Traffic()
	t.Logf("run of %d requests took %s", tr.Requests, time.Since(t0))
	// GCRA with a burst of 1: at most 20 + 1 in any second; one more for the clocks of
	// Redis and the simulator, which see a request a moment apart.
	if n := maxInWindow(tr.Arrivals, time.Second); n > 22 {
		t.Errorf("%d requests within one second, limit 20/s", n)
	}
	// One more: the simulator counts a request as ended a moment after the client has its
	// reply and has given its slot to the next one.
	if tr.PeakInFlight > 2+1 {
		t.Errorf("%d requests in flight at once, cap 2", tr.PeakInFlight)
	}
	if d := tr.Arrivals[len(tr.Arrivals)-1].Sub(tr.Arrivals[0]); d < 2500*time.Millisecond {
		t.Errorf("%d requests in %s: faster than 20/s", tr.Requests, d)
	}
}

// TestFlowKilledWorkersSlotComesBack: a worker killed with kill -9 while its call holds the
// only slot; another worker gets the slot within one lease.
func TestFlowKilledWorkersSlotComesBack(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	sim := startSim(t)
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	sim.SetLatencyFunc(func(ci netserversim.CallInfo) time.Duration {
		if len(ci.Keys) > 0 && strings.HasPrefix(ci.Keys[0], "A") {
			select { // the killed worker's call never ends
			case <-gate:
			case <-time.After(time.Minute):
			}
		}
		return 0
	})
	const lease = 3 * time.Second
	env := map[string]string{"SUPEROFFICE_MAX_CONCURRENCY": "1", "SUPEROFFICE_SLOT_LEASE": lease.String(), "WORKER_CONCURRENCY": "1"}
	a := flowWorkers(t, db, sim, 1, env)[0]
	submit(t, db, "flow-kill-a", erpsync.ActorCustomer, testKeys("A", 1), 1)
	waitFor(t, 20*time.Second, func() (bool, string) {
		return sim.Counts().Seen["A000000"] > 0, "the first worker's call has not arrived"
	})
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 10*time.Second)
	killed := time.Now()
	startWorker(t, workerEnvWith(db, sim, env))
	submit(t, db, "flow-kill-b", erpsync.ActorCustomer, testKeys("B", 1), 1)
	waitDone(t, rdb, "flow-kill-b", 30*time.Second)
	tr := sim.Traffic()
	var first time.Time
	for _, at := range tr.Arrivals {
		if at.After(killed) {
			first = at
			break
		}
	}
	// The second worker's login takes a slot of its own (connection 0), so its first request
	// goes out at once; its call waits for the killed worker's lease (renewed every third of
	// it until the kill) and then succeeds.
	if d := time.Since(killed); d > lease+5*time.Second {
		t.Errorf("the slot came back after %s, want within one lease (%s)", d, lease)
	}
	if first.IsZero() {
		t.Fatal("no request after the kill")
	}
	var calls []time.Time
	for _, at := range tr.Arrivals {
		if at.After(killed) {
			calls = append(calls, at)
		}
	}
	if last := calls[len(calls)-1]; last.Sub(killed) < lease/3 {
		t.Errorf("the second worker's call went out %s after the kill: the killed worker's slot was not held", last.Sub(killed))
	}
}

// workerEnvWith is workerEnv plus env.
func workerEnvWith(db *redistest.DB, sim *netserversim.Running, env map[string]string) map[string]string {
	e := workerEnv(db, sim)
	for k, v := range env {
		e[k] = v
	}
	return e
}

// TestFlowRetryAfterHonouredByAll: one 429 with Retry-After 2 s, seen by one worker, holds
// all three off: the simulator sees no request for that long.
func TestFlowRetryAfterHonouredByAll(t *testing.T) {
	t.Parallel()
	db, rdb, sim := flowCluster(t, 20*time.Millisecond, 3, nil)
	sim.Throttle(1, 2*time.Second)
	const run = "flow-429"
	keys := testKeys("R", 200)
	submit(t, db, run, erpsync.ActorCustomer, keys, 2)
	st := waitDone(t, rdb, run, 30*time.Second)
	if st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 {
		t.Fatalf("status %+v", st)
	}
	tr := sim.Traffic()
	gap := time.Duration(0)
	for i := 1; i < len(tr.Arrivals); i++ {
		gap = max(gap, tr.Arrivals[i].Sub(tr.Arrivals[i-1]))
	}
	if gap < 1900*time.Millisecond {
		t.Errorf("longest pause between requests %s; want the Retry-After of 2s honoured by every worker", gap)
	}
	if n := sim.Counts().Calls[netserversim.OutcomeThrottled]; n != 1 {
		t.Errorf("%d throttled calls, want 1", n)
	}
}

// TestFlowOutageCostsNoRetries: SuperOffice is down for longer than the whole retry budget
// (no retries at all here); the breaker opens, every worker holds its batches, and when
// SuperOffice is back every key is resynced and nothing is dead-lettered. The transitions
// are in the logs and the metrics.
func TestFlowOutageCostsNoRetries(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	sim := startSim(t)
	env := map[string]string{"SUPEROFFICE_BREAKER_FAILURES": "3", "SUPEROFFICE_BREAKER_PROBE": "1s", "SUPEROFFICE_BREAKER_PROBE_MAX": "2s"}
	ws := flowWorkers(t, db, sim, 2, env)
	m := workerEnvWith(db, sim, env)
	m["WORKER_HTTP_ADDR"] = "127.0.0.1:0"
	mw := startWorker(t, m)
	ws = append(ws, mw)
	metricsURL := ""
	waitFor(t, 20*time.Second, func() (bool, string) {
		if mm := regexp.MustCompile(`"http_addr":"([^"]+)"`).FindStringSubmatch(mw.log()); mm != nil && mm[1] != "off" {
			metricsURL = "http://" + mm[1] + "/metrics"
			return true, ""
		}
		return false, "the metrics worker has not said where it listens"
	})
	sim.SetOutage(true)
	const run = "flow-outage"
	keys := testKeys("O", 80)
	submitWith(t, rdb, run, keys, 4, asynq.MaxRetry(0))
	waitFor(t, 20*time.Second, func() (bool, string) {
		body := scrape(t, metricsURL)
		return strings.Contains(body, `erpresync_breaker_state{erp_connection="0",tenant=`) && regexp.MustCompile(`erpresync_breaker_state\{erp_connection="0",tenant="[^"]+"\} [12]`).MatchString(body),
			"erpresync_breaker_state does not say open"
	})
	// Several probes fail while the outage lasts (the intervals 1 s, 2 s, 2 s, ...).
	waitFor(t, 20*time.Second, func() (bool, string) {
		n := 0
		for _, w := range ws {
			n += strings.Count(w.log(), `"to":"open"`)
		}
		return n >= 3, fmt.Sprintf("%d openings", n)
	})
	sim.SetOutage(false)
	st := waitDone(t, rdb, run, 30*time.Second)
	if st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 {
		t.Fatalf("after the outage: %+v; want every key resynced, none dead", st)
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if qi, err := insp.GetQueueInfo(tasks.DefaultQueue); err != nil || qi.Archived != 0 {
		t.Errorf("archived tasks: %+v %v", qi, err)
	}
	var logs string
	for _, w := range ws {
		logs += w.log()
	}
	for _, want := range []string{"circuit breaker OPEN", "circuit breaker half-open", "circuit breaker closed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the logs", want)
		}
	}
	if n := strings.Count(logs, "circuit breaker closed"); n != 1 {
		t.Errorf("%d closings logged, want exactly 1 (one line per transition, whichever worker made it)", n)
	}
	if body := scrape(t, metricsURL); !regexp.MustCompile(`erpresync_breaker_state\{erp_connection="0",tenant="[^"]+"\} 0`).MatchString(body) {
		t.Errorf("erpresync_breaker_state after the outage:\n%s", grepLines(body, "erpresync_breaker"))
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestFlowTrickleOvertakesBulk: a trickled key reaches SuperOffice while a bulk backlog
// drains under the rate limit, within the trickle delay plus a call or two.
func TestFlowTrickleOvertakesBulk(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	sim := startSim(t)
	flowWorkers(t, db, sim, 1, map[string]string{"SUPEROFFICE_RATE_LIMIT": "10", "WORKER_CONCURRENCY": "2",
		"WORKER_TRICKLE_MAX_DELAY": "1s", "WORKER_TRICKLE_GRACE": "1s"})
	const run = "flow-bulk"
	submit(t, db, run, erpsync.ActorCustomer, testKeys("K", 100), 1) // 10 s at 10/s
	waitFor(t, 20*time.Second, func() (bool, string) {
		return runStatus(t, rdb, run).ResyncedKeys >= 5, "bulk not started"
	})
	start := enqueueTrickle(t, rdb, "TRICKLE-1")
	waitFor(t, 20*time.Second, func() (bool, string) {
		return sim.ResyncCount("TRICKLE-1") > 0, "the trickle key has not been resynced"
	})
	latency := time.Since(start)
	bulk := runStatus(t, rdb, run)
	t.Logf("trickle key resynced after %s, with %d bulk keys still pending", latency, bulk.PendingKeys)
	if bulk.PendingKeys < 40 {
		t.Errorf("only %d bulk keys left when the trickle key got through: it did not overtake", bulk.PendingKeys)
	}
	// WORKER_TRICKLE_MAX_DELAY (1 s) + the aggregator's check + a call under the limit.
	if latency > 5*time.Second {
		t.Errorf("trickle latency %s behind a bulk backlog", latency)
	}
}

// enqueueTrickle enqueues a trickle task for one Customer key and returns when it did.
func enqueueTrickle(t testing.TB, rdb *redis.Client, key string) time.Time {
	t.Helper()
	task, err := tasks.NewTrickleTask(testConn, erpsync.ActorCustomer, key)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(task); err != nil {
		t.Fatal(err)
	}
	return start
}
