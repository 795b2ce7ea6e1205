package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// BenchmarkFootprint measures what a finished run leaves in Redis: a private redis-server,
// the real pipeline (intake's producer, the worker with default task retention, the
// simulator answering one change item a key), and INFO memory's used_memory before the run
// and after it, once every task is completed (asynq keeps completed tasks with their
// results for WORKER_RESULT_RETENTION, a week by default, so they are counted). It reports
// bytes of Redis memory per resynced key, in all and for the ledger's keys alone (MEMORY
// USAGE of each); then how long pruning the run takes, the longest Redis command of that
// (the slow log), and how much memory it frees. Run it with
//
//	make bench-footprint   # go test ./cmd/worker -run '^$' -bench Footprint -benchtime 1x -timeout 30m
//
// ERPRESYNC_FOOTPRINT_KEYS changes the run's size (default 1,000,000 keys, like "ERP0000042").
func BenchmarkFootprint(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("ERPRESYNC_FOOTPRINT_KEYS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1000 {
			b.Fatalf("ERPRESYNC_FOOTPRINT_KEYS=%q: want a whole number >= 1000", s)
		}
	}
	b.Run(fmt.Sprintf("keys=%d/batch=100", n), func(b *testing.B) {
		srv := redistest.NewServer(b, redistest.Options{})
		if !srv.Real {
			b.Skip("needs redis-server for INFO memory")
		}
		db := srv.NewDB(b)
		rdb := db.Client()
		b.Cleanup(func() { rdb.Close() })
		sim := startSim(b)
		client, _ := newClient(b, sim)
		inProcess(b, db.Opt(), client, func(c *workerSetup) {
			c.Concurrency, c.TaskCheckInterval, c.ResultRetention = 16, 5*time.Millisecond, tasks.DefaultRetention
		})
		dir := b.TempDir()
		prod, err := intake.NewProducer(intake.ProducerConfig{Redis: rdb, TempDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		// A small run first, so that what Redis and asynq allocate once (queues, scripts,
		// connections) is in the "before" figure.
		footprintRun(b, prod, rdb, dir, "footprint-warm-up", 1000)
		i := 0
		var total, ledgerBytes, freed, keys int64
		var pruneTime time.Duration
		var slowest int64
		for b.Loop() {
			before := usedMemory(b, rdb)
			run := fmt.Sprintf("footprint-%d", i)
			i++
			start := time.Now()
			footprintRun(b, prod, rdb, dir, run, n)
			b.Logf("%d keys resynced in %s", n, time.Since(start).Round(time.Millisecond))
			after := usedMemory(b, rdb)
			total += after - before
			for _, k := range []string{"meta", "batches", "records", "changes", "dead"} {
				u, err := rdb.MemoryUsage(ctx, "erpresync:{"+run+"}:"+k, 0).Result()
				if err != nil && err != redis.Nil {
					b.Fatal(err)
				}
				ledgerBytes += u
			}
			keys += int64(n)

			// Then prune it, as the worker would a month later: how long that takes, the
			// longest single command it sent (Redis's slow log, logging every command), what
			// it frees.
			rdb.ConfigSet(ctx, "slowlog-max-len", "10000")
			rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0")
			rdb.SlowLogReset(ctx)
			later := ledger.NewLedger(rdb).WithClock(func() time.Time { return time.Now().Add(31 * 24 * time.Hour) })
			start = time.Now()
			res, err := later.Prune(ctx, ledger.PruneOptions{OlderThan: ledger.DefaultLedgerRetention, Inspector: asynq.NewInspectorFromRedisClient(rdb)})
			pruneTime += time.Since(start)
			if err != nil || len(res.Runs) == 0 { // this run, and the first time the warm-up's
				b.Fatalf("prune: %+v, %v", res, err)
			}
			rdb.ConfigSet(ctx, "slowlog-log-slower-than", "10000")
			slow, err := rdb.SlowLogGet(ctx, -1).Result()
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range slow {
				if d := e.Duration.Microseconds(); d > slowest {
					slowest = d
					b.Logf("slowest so far: %s %.60q", e.Duration, fmt.Sprint(e.Args))
				}
			}
			b.Logf("prune: %d commands", len(slow))
			freed += after - usedMemory(b, rdb)
		}
		b.ReportMetric(float64(total)/float64(keys), "bytes/key")
		b.ReportMetric(float64(ledgerBytes)/float64(keys), "ledger-bytes/key")
		b.ReportMetric(float64(freed)/float64(keys), "pruned-bytes/key")
		b.ReportMetric(float64(pruneTime.Milliseconds())/float64(i), "prune-ms")
		b.ReportMetric(float64(slowest), "prune-slowest-cmd-µs")
		b.ReportMetric(0, "ns/op") // a measure of memory, not time
	})
}

// footprintRun submits n keys as one run and waits until it is finished and every task of
// the queue is completed.
func footprintRun(b *testing.B, prod *intake.Producer, rdb redis.UniversalClient, dir, run string, n int) {
	b.Helper()
	path := filepath.Join(dir, run+".txt")
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "ERP%07d\n", i)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	sum, err := prod.Submit(context.Background(), intake.RunSpec{Run: run, ErpConnectionID: testConn, ActorType: erpsync.ActorCustomer},
		intake.Source{Path: path})
	if err != nil || sum.Keys != int64(n) {
		b.Fatalf("submit %s: %+v, %v", run, sum, err)
	}
	os.Remove(path)
	st := waitDone(b, rdb, run, 20*time.Minute)
	if st.ResyncedKeys != int64(n) {
		b.Fatalf("run %s: %+v", run, st)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	waitFor(b, time.Minute, func() (bool, string) {
		qi, err := insp.GetQueueInfo(tasks.DefaultQueue)
		if err != nil {
			return false, err.Error()
		}
		return qi.Pending+qi.Active+qi.Scheduled+qi.Retry == 0, fmt.Sprintf("queue: %+v", qi)
	})
}

// usedMemory is INFO memory's used_memory, once Redis's lazy free has caught up.
func usedMemory(b *testing.B, rdb redis.UniversalClient) int64 {
	b.Helper()
	var used int64
	waitFor(b, 10*time.Second, func() (bool, string) {
		info, err := rdb.Info(context.Background(), "memory").Result()
		if err != nil {
			return false, err.Error()
		}
		pending := ""
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			switch k {
			case "used_memory":
				used, _ = strconv.ParseInt(v, 10, 64)
			case "lazyfree_pending_objects":
				pending = v
			}
		}
		return pending == "0", "lazyfree_pending_objects " + pending
	})
	return used
}
