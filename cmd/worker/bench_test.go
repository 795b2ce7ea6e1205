package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

// BenchmarkPipeline measures the whole pipeline on this machine: keys registered and
// enqueued (one batch at a time, as a plain producer would), the worker's calls to the
// simulator (no injected faults, no latency), the ledger's records; it reports keys/s. An
// idle worker polls for tasks every 5 ms here (asynq's default is 1 s, which would
// dominate a one-second run). Run it with
//
//	go test ./cmd/worker -run '^$' -bench Pipeline -benchtime 3x -count 5
//
// The baseline sub-benchmark makes the same calls straight from 4 goroutines, with no queue
// and no ledger: the gap to it is what Redis, asynq and the exactly-once ledger cost.
func BenchmarkPipeline(b *testing.B) {
	b.Run("baseline=direct-calls/keys=10000/batch=100/concurrency=4", func(b *testing.B) {
		sim := startSim(b)
		client, _ := newClient(b, sim)
		keys := testKeys("D", 10000)
		var total time.Duration
		n := 0
		for b.Loop() {
			start := time.Now()
			batches := make(chan []string)
			errs := make(chan error, 4)
			for range 4 {
				go func() {
					for batch := range batches {
						if _, err := client.ForceResyncExternal(b.Context(), testConn, erpsync.ActorCustomer, batch); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for i := 0; i < len(keys); i += 100 {
				batches <- keys[i : i+100]
			}
			close(batches)
			for range 4 {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			total += time.Since(start)
			n++
		}
		b.ReportMetric(float64(len(keys)*n)/total.Seconds(), "keys/s")
	})

	for _, conc := range []int{4, 16} {
		b.Run(fmt.Sprintf("keys=10000/batch=100/concurrency=%d", conc), func(b *testing.B) {
			db := redistest.New(b)
			sim := startSim(b)
			client, _ := newClient(b, sim)
			rdb := db.TestClient(b)
			inProcess(b, db.Opt(), client, func(c *workerSetup) { c.Concurrency, c.TaskCheckInterval = conc, 5*time.Millisecond })
			keys := testKeys("B", 10000)
			var total time.Duration
			i := 0
			for b.Loop() {
				run := fmt.Sprintf("bench-%d-%d", conc, i)
				i++
				start := time.Now()
				submit(b, db, run, erpsync.ActorCustomer, keys, 100)
				waitDone(b, rdb, run, 5*time.Minute)
				total += time.Since(start)
			}
			b.ReportMetric(float64(len(keys)*i)/total.Seconds(), "keys/s")
		})
	}
}
