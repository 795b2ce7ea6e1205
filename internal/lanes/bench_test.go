package lanes

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/hibiken/asynq"
	"golang.org/x/time/rate"
)

// The fleet of the fairness benchmarks: two workers, each an asynq server with 6 slots and
// a dispatcher, so 12 slots; a task takes taskTime.
const (
	benchWorkers = 2
	benchSlots   = 6
	taskTime     = 50 * time.Millisecond
)

// fleet is benchWorkers workers on one database, counting finished tasks per tenant.
type fleet struct {
	q    *Queue // the producers' handle
	mu   sync.Mutex
	done map[string][]time.Time // tenant -> finish times
}

func (f *fleet) ProcessTask(ctx context.Context, task *asynq.Task) error {
	time.Sleep(taskTime) // the SuperOffice call a task stands for
	tenant := string(task.Payload())
	f.mu.Lock()
	f.done[tenant] = append(f.done[tenant], time.Now())
	f.mu.Unlock()
	return f.q.Done(ctx, tenant, task.ResultWriter().TaskID())
}

func (f *fleet) finished(tenant string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.done[tenant])
}

// finishedBetween counts tenant's tasks finished in [from, to).
func (f *fleet) finishedBetween(tenant string, from, to time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, at := range f.done[tenant] {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// iteration is one benchmark iteration's testing.TB: what its helpers register with
// Cleanup runs at the iteration's end, so no dispatcher or asynq server of an earlier
// iteration still runs (and sends Redis commands) during the next.
type iteration struct {
	testing.TB
	cleanups []func()
}

func (it *iteration) Cleanup(f func()) { it.cleanups = append(it.cleanups, f) }

func (it *iteration) end() {
	for i := len(it.cleanups) - 1; i >= 0; i-- {
		it.cleanups[i]()
	}
}

// measure runs f as one iteration of b.
func measure[T any](b *testing.B, f func(testing.TB) T) T {
	it := &iteration{TB: b}
	defer it.end()
	return f(it)
}

// newFleet starts the workers; with direct set there are no dispatchers (producers would
// enqueue into asynq themselves: the baseline).
func newFleet(b testing.TB, cfg Config, direct bool) *fleet {
	b.Helper()
	db := redistest.New(b)
	cfg.LowWater = 2 * benchWorkers * benchSlots
	f := &fleet{done: map[string][]time.Time{}}
	f.q = testQueue(b, db, cfg)
	for range benchWorkers {
		serve(b, db, f.q.cfg.Queues, benchSlots, f)
		if !direct {
			run(b, testQueue(b, db, cfg))
		}
	}
	return f
}

// submit hands n batches of tenant to the lanes, or straight to asynq with direct.
func (f *fleet) submit(b testing.TB, tenant string, n int, direct bool) {
	b.Helper()
	js := jobs(tenant, n)
	if !direct {
		enqueue(b, f.q, tenant, js)
		return
	}
	for _, j := range js {
		j.Queue = "lanes-test"
		task, opts := j.task(time.Hour)
		if _, err := f.q.client.Enqueue(task, opts...); err != nil {
			b.Fatal(err)
		}
	}
}

// smallRun times a small tenant's 5 batches, alone or behind another tenant's 200-batch
// backlog submitted first and already running.
func smallRun(b testing.TB, backlog, direct bool) time.Duration {
	f := newFleet(b, Config{}, direct)
	if backlog {
		f.submit(b, "big", 200, direct)
		eventually(b, 30*time.Second, "the backlog running", func() bool { return f.finished("big") >= 12 })
	}
	start := time.Now()
	f.submit(b, "small", 5, direct)
	eventually(b, 60*time.Second, "the small tenant's batches", func() bool { return f.finished("small") == 5 })
	return time.Since(start)
}

// BenchmarkFairnessSmallTenant: a small tenant's 5 batches alone, behind a 200-batch
// backlog of another tenant through the lanes, and (baseline) behind it in one asynq queue.
// small_ms is the time from submission until the 5 batches finished.
func BenchmarkFairnessSmallTenant(b *testing.B) {
	for _, c := range []struct {
		name            string
		backlog, direct bool
	}{{"alone", false, false}, {"behind_backlog", true, false}, {"asynq_only_behind_backlog", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			var ds []time.Duration
			for b.Loop() {
				ds = append(ds, measure(b, func(tb testing.TB) time.Duration { return smallRun(tb, c.backlog, c.direct) }))
			}
			b.ReportMetric(float64(median(ds).Milliseconds()), "small_ms")
		})
	}
}

// shareWindow is how long the throughput of the sharing benchmark is counted, after warm-up.
const (
	shareWarmup = time.Second
	shareWindow = 6 * time.Second
)

// shareRun runs the limited tenant (10 batches/s through Ready), the unlimited one, or both
// on the 12 slots, and returns each one's finished batches per second over the window.
func shareRun(b testing.TB, limited, unlimited bool) (lim, unl float64) {
	limiter := rate.NewLimiter(10, 1)
	ready := func(_ context.Context, tenant string) time.Duration {
		if tenant != "limited" {
			return 0
		}
		r := limiter.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			return d
		}
		return 0
	}
	f := newFleet(b, Config{Ready: ready}, false)
	if limited {
		f.submit(b, "limited", 100, false)
	}
	if unlimited {
		f.submit(b, "unlimited", 2000, false)
	}
	from := time.Now().Add(shareWarmup)
	to := from.Add(shareWindow)
	time.Sleep(time.Until(to)) // the measurement window itself
	secs := shareWindow.Seconds()
	return float64(f.finishedBetween("limited", from, to)) / secs, float64(f.finishedBetween("unlimited", from, to)) / secs
}

// BenchmarkFairnessSharedSlots: a tenant limited to 10 requests/s (Ready) and an unlimited
// one on 12 slots, each alone and both together; reports batches/s and the shared
// throughput as a percentage of the alone one.
func BenchmarkFairnessSharedSlots(b *testing.B) {
	var limAlone, unlAlone, limShared, unlShared []float64
	for b.Loop() {
		l := measure(b, func(tb testing.TB) [2]float64 { l, u := shareRun(tb, true, false); return [2]float64{l, u} })[0]
		u := measure(b, func(tb testing.TB) [2]float64 { l, u := shareRun(tb, false, true); return [2]float64{l, u} })[1]
		both := measure(b, func(tb testing.TB) [2]float64 { l, u := shareRun(tb, true, true); return [2]float64{l, u} })
		ls, us := both[0], both[1]
		limAlone, unlAlone, limShared, unlShared = append(limAlone, l), append(unlAlone, u), append(limShared, ls), append(unlShared, us)
	}
	b.ReportMetric(medianF(limAlone), "limited_alone/s")
	b.ReportMetric(medianF(limShared), "limited_shared/s")
	b.ReportMetric(medianF(unlAlone), "unlimited_alone/s")
	b.ReportMetric(medianF(unlShared), "unlimited_shared/s")
	b.ReportMetric(100*medianF(limShared)/medianF(limAlone), "limited_%")
	b.ReportMetric(100*medianF(unlShared)/medianF(unlAlone), "unlimited_%")
}

// BenchmarkFairnessIdle: Redis commands/s and the process's CPU with 1,000 tenants whose
// lanes ran empty, for two workers' dispatchers alone and with their asynq servers (12
// slots each, asynq's default TaskCheckInterval of 1 s).
func BenchmarkFairnessIdle(b *testing.B) {
	for _, withServers := range []bool{false, true} {
		b.Run(fmt.Sprintf("asynq_servers=%v", withServers), func(b *testing.B) {
			var cmds, cpu []float64
			for b.Loop() {
				r := measure(b, func(tb testing.TB) [2]float64 { c, p := idleRun(tb, withServers); return [2]float64{c, p} })
				c, p := r[0], r[1]
				cmds, cpu = append(cmds, c), append(cpu, p)
			}
			b.ReportMetric(medianF(cmds), "redis_cmds/s")
			b.ReportMetric(medianF(cpu), "cpu_%")
		})
	}
}

const idleWindow = 10 * time.Second

func idleRun(b testing.TB, withServers bool) (cmdsPerSec, cpuPercent float64) {
	db := redistest.New(b)
	if !db.Server.Real {
		b.Skip("commandstats need a real redis-server")
	}
	q := testQueue(b, db, Config{LowWater: 100000})
	c := q.cfg.Redis
	for i := range 1000 {
		tenant := "tenant-" + strconv.Itoa(i)
		enqueue(b, q, tenant, jobs(tenant, 1))
	}
	for range 2 {
		run(b, testQueue(b, db, Config{LowWater: 100000}))
	}
	eventually(b, 60*time.Second, "every lane empty", func() bool { due, _ := q.Due(context.Background()); return len(due) == 0 })
	c.Del(context.Background(), asynqPendingKey("lanes-test")) // the tasks ran elsewhere
	if withServers {
		for range 2 {
			srv := asynq.NewServer(db.Opt(), asynq.Config{Concurrency: 12, Queues: map[string]int{"lanes-test": 1}, LogLevel: asynq.ErrorLevel})
			if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(srv.Shutdown)
		}
	}
	time.Sleep(2 * time.Second) // let the dispatchers settle into their idle waits
	before, cpu0, t0 := commands(b, db), cpuTime(), time.Now()
	time.Sleep(idleWindow) // the measurement window itself
	after, cpu1, elapsed := commands(b, db), cpuTime(), time.Since(t0)
	// The two INFO calls themselves are not counted.
	return float64(after-before-1) / elapsed.Seconds(), 100 * (cpu1 - cpu0).Seconds() / elapsed.Seconds()
}

// commands is the server's total of commands run (INFO commandstats, all databases).
func commands(b testing.TB, db *redistest.DB) int64 {
	c := db.Client()
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		if _, rest, ok := strings.Cut(line, ":calls="); ok {
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			total += n
		}
	}
	return total
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	return s[len(s)/2]
}
