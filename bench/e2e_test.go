package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/netserversim"
)

const (
	simUser     = "ERPSYNC"
	simPassword = "bench password 1c9e"
	conn        = 3
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds cmd/worker and bench/naive once and returns the path of name.
func binary(b *testing.B, name string) string {
	b.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "erpresync-bench-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"../cmd/worker", "./naive"} {
			if out, err := exec.Command("go", "build", "-o", buildDir, pkg).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name)
}

// setup starts a private redis-server and the simulator for one benchmark.
func setup(b *testing.B) (*redistest.Server, *redis.Client, *netserversim.Running) {
	b.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("the end-to-end benchmarks need redis-server on PATH")
	}
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { rdb.Close() })
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{simUser: simPassword}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	return srv, rdb, sim
}

func testKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%07d", prefix, i)
	}
	return keys
}

// usage is what one measured process cost.
type usage struct {
	wall time.Duration
	cpu  time.Duration // user + system
	rss  int64         // peak resident set, bytes
}

// measure starts bin with env, waits until done reports that every key went through,
// checks that the simulator resynced every one of n keys, stops the process with SIGTERM and
// returns its wall time (start to done), CPU time (from the kernel's rusage) and peak RSS.
// done is polled, not the simulator: copying its per-key counters under its lock would slow
// the very calls being measured.
func measure(b *testing.B, bin string, env []string, sim *netserversim.Running, n int, done func() bool) usage {
	b.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	deadline := start.Add(15 * time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatalf("%s: not done after 15 min (%d of %d keys resynced)\n%s", bin, len(sim.Counts().Resynced), n, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(start)
	// The peak RSS of the process's own image (VmHWM), read before it exits: the rusage
	// of a child on Linux also counts the parent's memory at the fork.
	rss := peakRSS(b, cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	if got := len(sim.Counts().Resynced); got != n {
		b.Fatalf("%s: %d of %d keys resynced", bin, got, n)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
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

// runDone reports whether the ledger holds the run as finished.
func runDone(rdb *redis.Client, run string) func() bool {
	lg := ledger.NewLedger(rdb)
	return func() bool {
		st, err := lg.Status(context.Background(), run)
		return err == nil && st.TotalKeys > 0 && st.PendingKeys == 0
	}
}

// queueDrained reports whether asynq's default queue has processed n tasks and holds none.
func queueDrained(addr string, n int) func() bool {
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: addr})
	return func() bool {
		q, err := insp.GetQueueInfo("default")
		return err == nil && q.Processed >= n && q.Pending == 0 && q.Active == 0 && q.Retry == 0 && q.Scheduled == 0
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

func workerEnv(redisAddr string, sim *netserversim.Running, concurrency int) []string {
	return []string{
		"REDIS_URL=redis://" + redisAddr + "/0",
		"SUPEROFFICE_URL=" + sim.URL,
		"SUPEROFFICE_USERNAME=" + simUser,
		"SUPEROFFICE_PASSWORD=" + simPassword,
		"WORKER_HTTP_ADDR=off",
		"WORKER_CONCURRENCY=" + strconv.Itoa(concurrency),
		"LOG_FORMAT=json",
		"LOG_LEVEL=warn",
	}
}

// submit enqueues keys as one run through intake, as `enqueue` does (not measured).
func submit(b *testing.B, rdb *redis.Client, run string, keys []string, batch int) {
	b.Helper()
	p, err := intake.NewProducer(intake.ProducerConfig{Redis: rdb})
	if err != nil {
		b.Fatal(err)
	}
	sum, err := p.Submit(context.Background(), intake.RunSpec{Run: run, ErpConnectionID: conn, ActorType: erpsync.ActorCustomer, BatchSize: batch},
		intake.Source{Name: run, R: strings.NewReader(strings.Join(keys, "\n") + "\n")})
	if err != nil || sum.Valid != int64(len(keys)) {
		b.Fatalf("submit: %+v, %v", sum, err)
	}
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
	keys := testKeys("E", n)
	b.Run("worker=erpresync/batch=100/concurrency=10", func(b *testing.B) {
		srv, rdb, sim := setup(b)
		bin := binary(b, "worker")
		var us []usage
		var queued, finished int64
		i := 0
		for b.Loop() {
			rdb.FlushAll(context.Background())
			sim.Reset()
			before := usedMemory(b, rdb)
			run := fmt.Sprintf("bench-%d", i)
			submit(b, rdb, run, keys, 100)
			queued += usedMemory(b, rdb) - before
			us = append(us, measure(b, bin, workerEnv(srv.Addr, sim, 10), sim, n, runDone(rdb, run)))
			finished += usedMemory(b, rdb) - before
			i++
		}
		report(b, us, n)
		b.ReportMetric(float64(queued)/float64(n*i), "queued-B/key")
		b.ReportMetric(float64(finished)/float64(n*i), "finished-B/key")
	})
	b.Run("worker=naive/batch=1/concurrency=10", func(b *testing.B) {
		srv, rdb, sim := setup(b)
		bin := binary(b, "naive")
		var us []usage
		for b.Loop() {
			rdb.FlushAll(context.Background())
			sim.Reset()
			enqueueNaive(b, srv.Addr, keys)
			us = append(us, measure(b, bin, []string{
				"REDIS_ADDR=" + srv.Addr,
				"SUPEROFFICE_URL=" + sim.URL,
				"SUPEROFFICE_USERNAME=" + simUser,
				"SUPEROFFICE_PASSWORD=" + simPassword,
				"NAIVE_CONCURRENCY=10",
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
				payload, _ := json.Marshal(map[string]any{"erp_connection": conn, "actor_type": "Customer", "key": keys[i]})
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
			bin := binary(b, "worker")
			keys := testKeys("L", n)
			var us []usage
			i := 0
			for b.Loop() {
				rdb.FlushAll(context.Background())
				sim.Reset()
				run := fmt.Sprintf("latency-%d", i)
				submit(b, rdb, run, keys, tc.batch)
				us = append(us, measure(b, bin, workerEnv(srv.Addr, sim, tc.concurrency), sim, n, runDone(rdb, run)))
				i++
			}
			report(b, us, n)
			b.ReportMetric(ideal, "ideal-keys/s")
		})
	}
}
