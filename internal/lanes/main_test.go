package lanes

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// testQueue is a Queue on a fresh database, with cfg's zero fields filled for tests.
func testQueue(t testing.TB, db *redistest.DB, cfg Config) *Queue {
	t.Helper()
	if cfg.Redis == nil {
		cfg.Redis = db.TestClient(t)
	}
	if cfg.Queues == nil {
		cfg.Queues = []string{"lanes-test"}
	}
	if cfg.OnError == nil {
		cfg.OnError = func(err error) { t.Logf("dispatcher: %v", err) }
	}
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// run starts q's dispatcher until the test ends.
func run(t testing.TB, q *Queue) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

// jobs makes n jobs of tenant, IDs "TENANT-1".."TENANT-n".
func jobs(tenant string, n int) []Job {
	out := make([]Job, n)
	for i := range out {
		out[i] = Job{ID: fmt.Sprintf("%s-%d", tenant, i+1), Type: "test:job", Payload: []byte(tenant), Retention: time.Hour}
	}
	return out
}

func enqueue(t testing.TB, q *Queue, tenant string, js []Job) {
	t.Helper()
	conflicts, err := q.EnqueueMany(context.Background(), tenant, js)
	if err != nil || len(conflicts) > 0 {
		t.Fatalf("EnqueueMany(%s): conflicts %v, err %v", tenant, conflicts, err)
	}
}

// pendingIDs lists the task IDs in asynq's pending list of queue, in dispatch order.
func pendingIDs(t testing.TB, c redis.UniversalClient, queue string) []string {
	t.Helper()
	ids, err := c.LRange(context.Background(), asynqPendingKey(queue), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(ids) // asynq LPUSHes and dequeues from the right
	return ids
}

// eventually waits until cond holds, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is an asynq handler that counts runs per task ID and reports Done to the lanes.
type recorder struct {
	q     *Queue
	delay time.Duration
	mu    sync.Mutex
	runs  map[string]int
	order []string
}

func newRecorder(q *Queue, delay time.Duration) *recorder {
	return &recorder{q: q, delay: delay, runs: map[string]int{}}
}

func (r *recorder) ProcessTask(ctx context.Context, task *asynq.Task) error {
	if r.delay > 0 {
		time.Sleep(r.delay) // the work a task stands for
	}
	id := task.ResultWriter().TaskID()
	r.mu.Lock()
	r.runs[id]++
	r.order = append(r.order, id)
	r.mu.Unlock()
	return r.q.Done(ctx, string(task.Payload()), id)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

// serve runs an in-process asynq server with concurrency slots on db until the test ends.
func serve(t testing.TB, db *redistest.DB, queues []string, concurrency int, h asynq.Handler) {
	t.Helper()
	serveOpt(t, db.Opt(), concurrency, h, queues...)
}

// serveOpt runs an in-process asynq server on opt, serving queues (default "lanes-test").
func serveOpt(t testing.TB, opt asynq.RedisConnOpt, concurrency int, h asynq.Handler, queues ...string) *asynq.Server {
	t.Helper()
	if len(queues) == 0 {
		queues = []string{"lanes-test"}
	}
	qs := map[string]int{}
	for _, name := range queues {
		qs[name] = 1
	}
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency: concurrency, Queues: qs, TaskCheckInterval: 10 * time.Millisecond,
		LogLevel: asynq.ErrorLevel, ShutdownTimeout: 5 * time.Second,
	})
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}
