package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/soap"
)

// BenchmarkPipeline measures the whole pipeline on this machine: keys registered and
// enqueued, the worker's calls to the simulator (no injected faults, no latency), the
// ledger's records; it reports keys/s. Run it with
//
//	go test ./cmd/worker -run '^$' -bench Pipeline -benchtime 3x -count 5
func BenchmarkPipeline(b *testing.B) {
	for _, conc := range []int{4, 16} {
		b.Run(fmt.Sprintf("keys=10000/batch=100/concurrency=%d", conc), func(b *testing.B) {
			db := redistest.New(b)
			sim := startSim(b)
			client, _ := newClient(b, sim)
			rdb := db.Client()
			defer rdb.Close()
			inProcess(b, db, client, func(c *appConfig) { c.Concurrency = conc })
			keys := testKeys("B", 10000)
			var total time.Duration
			i := 0
			for b.Loop() {
				run := fmt.Sprintf("bench-%d-%d", conc, i)
				i++
				start := time.Now()
				submit(b, db, run, soap.ActorCustomer, keys, 100)
				waitDone(b, rdb, run, 5*time.Minute)
				total += time.Since(start)
			}
			b.ReportMetric(float64(len(keys)*i)/total.Seconds(), "keys/s")
		})
	}
}
