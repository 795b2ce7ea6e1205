package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
)

func TestMain(m *testing.M) { os.Exit(e2etest.Main(m)) }

// setup starts a private redis-server and the simulator for one benchmark.
func setup(b *testing.B) (*redistest.Server, *redis.Client, *netserversim.Running) {
	b.Helper()
	srv := e2etest.StartRedis(b, redistest.Options{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { rdb.Close() })
	return srv, rdb, e2etest.StartSim(b)
}

// usage is what one measured process cost.
type usage struct {
	wall time.Duration
	cpu  time.Duration // user + system
	rss  int64         // peak resident set, bytes
}

// measure starts bin with env, waits until done holds (every key went through), checks that
// the simulator resynced every one of n keys, stops the process with SIGTERM and returns
// its wall time (start to done), CPU time (from the kernel's rusage) and peak RSS. done is
// polled, not the simulator: copying its per-key counters under its lock would slow the
// very calls being measured.
func measure(b *testing.B, bin string, env map[string]string, sim *netserversim.Running, n int, done func() (bool, error)) usage {
	b.Helper()
	start := time.Now()
	p := e2etest.Start(b, bin, env)
	testwait.For(b, filepath.Base(bin)+" through all keys", 15*time.Minute, done)
	wall := time.Since(start)
	// The peak RSS of the process's own image (VmHWM), read before it exits: the rusage
	// of a child on Linux also counts the parent's memory at the fork.
	rss := peakRSS(b, p.Cmd.Process.Pid)
	p.Signal(b, syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("%s exited with %d", bin, code)
	}
	if got := len(sim.Counts().Resynced); got != n {
		b.Fatalf("%s: %d of %d keys resynced", bin, got, n)
	}
	ru := p.Cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return usage{
		wall: wall,
		cpu:  time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		rss:  rss,
	}
}

// peakRSS reads VmHWM, the peak resident set of process pid, from /proc.
func peakRSS(b *testing.B, pid int) int64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb * 1024
		}
	}
	b.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// queueDrained reports whether asynq's default queue has processed n tasks and holds none.
func queueDrained(addr string, n int) func() (bool, error) {
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: addr})
	return func() (bool, error) {
		q, err := insp.GetQueueInfo("default")
		if err != nil {
			return false, err
		}
		return q.Processed >= n && q.Pending == 0 && q.Active == 0 && q.Retry == 0 && q.Scheduled == 0, fmt.Errorf("%+v", q)
	}
}

// report adds the per-key figures of us (summed over the benchmark's iterations).
func report(b *testing.B, us []usage, keys int) {
	var wall, cpu time.Duration
	var rss int64
	for _, u := range us {
		wall += u.wall
		cpu += u.cpu
		rss = max(rss, u.rss)
	}
	n := float64(keys * len(us))
	b.ReportMetric(n/wall.Seconds(), "keys/s")
	b.ReportMetric(cpu.Seconds()/n*1e6, "cpu-s/Mkeys")
	b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(0, "ns/op") // wall time per iteration includes set-up; keys/s is the figure
}

func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("INFO memory has no used_memory")
	return 0
}

// workerEnv is the environment of the measured worker: concurrency handlers, warnings only.
func workerEnv(redisAddr string, sim *netserversim.Running, concurrency int) map[string]string {
	env := e2etest.WorkerEnv("redis://"+redisAddr+"/0", sim)
	env["WORKER_CONCURRENCY"] = strconv.Itoa(concurrency)
	env["LOG_LEVEL"] = "warn"
	return env
}

// BenchmarkEndToEnd: 200,000 keys against the zero-latency simulator, through the worker
// process (batches of 100, the default) and through the naive baseline (bench/naive: one
// asynq task and one call per key), both with 10 concurrent handlers, measured in the same
// run. Enqueuing is not measured (BenchmarkSubmit in intake measures it). The erpresync
// sub-benchmark also reports Redis memory per key while queued and once the run finished
// (asynq's completed tasks kept for WORKER_RESULT_RETENTION included).
//
//	go test ./bench -run '^$' -bench EndToEnd -benchtime 1x -count 5
func BenchmarkEndToEnd(b *testing.B) {
	const n = 200000
	keys := e2etest.Keys("E", n)
	b.Run("worker=erpresync/batch=100/concurrency=10", func(b *testing.B) {
		srv, rdb, sim := setup(b)
		bin := e2etest.Binary(b, "cmd/worker")
		var us []usage
		var queued, finished int64
		i := 0
		for b.Loop() {
			rdb.FlushAll(context.Background())
			sim.Reset()
			before := usedMemory(b, rdb)
			run := fmt.Sprintf("bench-%d", i)
			e2etest.Submit(b, rdb, run, erpsync.ActorCustomer, keys, 100)
			queued += usedMemory(b, rdb) - before
			us = append(us, measure(b, bin, workerEnv(srv.Addr, sim, 10), sim, n, e2etest.RunFinished(rdb, run)))
			finished += usedMemory(b, rdb) - before
			i++
		}
		report(b, us, n)
		b.ReportMetric(float64(queued)/float64(n*i), "queued-B/key")
		b.ReportMetric(float64(finished)/float64(n*i), "finished-B/key")
	})
	b.Run("worker=naive/batch=1/concurrency=10", func(b *testing.B) {
		srv, rdb, sim := setup(b)
		bin := e2etest.Binary(b, "bench/naive")
		var us []usage
		for b.Loop() {
			rdb.FlushAll(context.Background())
			sim.Reset()
			enqueueNaive(b, srv.Addr, keys)
			us = append(us, measure(b, bin, map[string]string{
				"REDIS_ADDR":           srv.Addr,
				"SUPEROFFICE_URL":      sim.URL,
				"SUPEROFFICE_USERNAME": e2etest.User,
				"SUPEROFFICE_PASSWORD": e2etest.Password,
				"NAIVE_CONCURRENCY":    "10",
			}, sim, n, queueDrained(srv.Addr, n)))
		}
		report(b, us, n)
	})
}

// enqueueNaive enqueues one task per key from 8 goroutines (not measured).
func enqueueNaive(b *testing.B, addr string, keys []string) {
	b.Helper()
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: addr})
	defer client.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(keys); i += 8 {
				payload, _ := json.Marshal(map[string]any{"erp_connection": e2etest.ErpConnection, "actor_type": "Customer", "key": keys[i]})
				if _, err := client.Enqueue(asynq.NewTask("resync:key", payload)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLatencyBound: the simulator answers every call after 100 ms, so throughput is
// bound by concurrency × batch / latency (the "ideal" metric); the worker process should
// come close to it as both grow. Each case runs about three ideal seconds of keys.
//
//	go test ./bench -run '^$' -bench LatencyBound -benchtime 1x -count 5
func BenchmarkLatencyBound(b *testing.B) {
	const latency = 100 * time.Millisecond
	for _, tc := range []struct{ concurrency, batch int }{{4, 10}, {16, 10}, {4, 100}, {16, 100}, {64, 100}} {
		ideal := float64(tc.concurrency*tc.batch) / latency.Seconds()
		n := int(ideal * 3)
		b.Run(fmt.Sprintf("concurrency=%d/batch=%d", tc.concurrency, tc.batch), func(b *testing.B) {
			srv, rdb, sim := setup(b)
			sim.SetLatency(latency)
			bin := e2etest.Binary(b, "cmd/worker")
			keys := e2etest.Keys("L", n)
			var us []usage
			i := 0
			for b.Loop() {
				rdb.FlushAll(context.Background())
				sim.Reset()
				run := fmt.Sprintf("latency-%d", i)
				e2etest.Submit(b, rdb, run, erpsync.ActorCustomer, keys, tc.batch)
				us = append(us, measure(b, bin, workerEnv(srv.Addr, sim, tc.concurrency), sim, n, e2etest.RunFinished(rdb, run)))
				i++
			}
			report(b, us, n)
			b.ReportMetric(ideal, "ideal-keys/s")
		})
	}
}
