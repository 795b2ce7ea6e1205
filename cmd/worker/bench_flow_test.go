package main

import (
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

// BenchmarkFlow measures flow control with three worker processes on one Redis, limited to
// 20 requests/s together, against a simulator that answers each call in 50 ms:
//
//   - rate: 600 batches; the achieved request rate from the first to the last request
//     the simulator saw (as a share of the limit), and the most requests in any 10-second
//     window (the limit allows 200 + the burst of 1);
//   - trickle: one trickled key enqueued behind a backlog of 300 bulk batches; its
//     latency until the simulator resynced it, and how many bulk batches were still waiting.
//
// Run it with `make bench-flow` (about a minute).
func BenchmarkFlow(b *testing.B) {
	const limit = 20.0
	for b.Loop() {
		db := redistest.New(b)
		rdb := db.Client()
		sim := startSim(b)
		sim.SetLatency(50 * time.Millisecond)
		flowWorkers(b, db, sim, 3, map[string]string{"SUPEROFFICE_RATE_LIMIT": "20", "WORKER_CONCURRENCY": "4",
			"WORKER_TRICKLE_MAX_DELAY": "1s", "WORKER_TRICKLE_GRACE": "1s"})

		sim.ResetTraffic()
		submit(b, db, "bench-rate", erpsync.ActorCustomer, testKeys("R", 6000), 10)
		waitDone(b, rdb, "bench-rate", 2*time.Minute)
		tr := sim.Traffic()
		ts := tr.Arrivals
		span := ts[len(ts)-1].Sub(ts[0])
		rate := float64(len(ts)-1) / span.Seconds()
		max10 := maxInWindow(ts, 10*time.Second)
		b.ReportMetric(rate, "req/s")
		b.ReportMetric(rate/limit*100, "%-of-limit")
		b.ReportMetric(float64(max10), "max-req/10s")
		b.Logf("rate: %d requests in %s = %.2f/s (%.1f%% of %v/s); most in any 10 s: %d (limit 200 + burst 1)",
			len(ts), span.Round(time.Millisecond), rate, rate/limit*100, limit, max10)

		const bulk = "bench-bulk"
		submit(b, db, bulk, erpsync.ActorCustomer, testKeys("B", 300), 1)
		waitFor(b, time.Minute, func() (bool, string) {
			return runStatus(b, rdb, bulk).ResyncedKeys >= 20, "the bulk run has not started"
		})
		start := enqueueTrickle(b, rdb, "TRICKLE-B")
		waitFor(b, time.Minute, func() (bool, string) { return sim.ResyncCount("TRICKLE-B") > 0, "trickle key not resynced" })
		latency := time.Since(start)
		left := runStatus(b, rdb, bulk).PendingKeys
		b.ReportMetric(float64(latency.Milliseconds()), "trickle-ms")
		b.Logf("trickle: resynced %s after it was enqueued, with %d of 300 bulk batches still waiting (WORKER_TRICKLE_MAX_DELAY 1s)", latency.Round(time.Millisecond), left)
		rdb.Close()
	}
}

// BenchmarkFlowOutage measures what the tenant's breaker lets through during an outage:
// three worker processes on one Redis (ten batches at once each, the default), limited to 20
// requests/s together, calls of 50 ms, a backlog flowing at the limit when the tenant starts answering 503 (the maintenance page)
// for 30 s. It reports the requests that reached the tenant during the outage
// (outage-calls) and how many of them came in the 2 s after the breaker opened. The bound is
// the failures that open the breaker (SUPEROFFICE_BREAKER_FAILURES, 5) plus the requests
// already in flight when it opened plus the probes (at 5 s and 15 s: two in 30 s), at most
// 15 here; every key must be resynced once the tenant is back.
//
// Run it with `make bench-flow` (about a minute).
func BenchmarkFlowOutage(b *testing.B) {
	const outage = 30 * time.Second
	for b.Loop() {
		db := redistest.New(b)
		rdb := db.Client()
		sim := startSim(b)
		sim.SetLatency(50 * time.Millisecond)
		flowWorkers(b, db, sim, 3, map[string]string{"SUPEROFFICE_RATE_LIMIT": "20", "WORKER_CONCURRENCY": "10"})

		const run = "bench-outage"
		keys := testKeys("U", 3000)
		submit(b, db, run, erpsync.ActorCustomer, keys, 10)
		waitFor(b, time.Minute, func() (bool, string) {
			return runStatus(b, rdb, run).ResyncedKeys >= 200, "the run has not reached full speed"
		})
		sim.SetOutage(true)
		start := time.Now()
		time.Sleep(outage) // the scenario: the tenant is down this long
		sim.SetOutage(false)
		end := time.Now()
		st := waitDone(b, rdb, run, 2*time.Minute)
		if st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 {
			b.Fatalf("after the outage: %+v; want every key resynced, none dead", st)
		}
		var during []time.Time
		for _, at := range sim.Traffic().Arrivals {
			if !at.Before(start) && at.Before(end) {
				during = append(during, at)
			}
		}
		burst := 0
		if len(during) > 0 {
			burst = maxInWindow(during, 2*time.Second)
		}
		b.ReportMetric(float64(len(during)), "outage-calls")
		b.ReportMetric(float64(burst), "max-calls/2s")
		b.Logf("outage: %d requests reached the tenant during %s of 503 (bound: 5 failures + in flight + 2 probes <= 15); most in any 2 s: %d",
			len(during), outage, burst)
		rdb.Close()
	}
}
