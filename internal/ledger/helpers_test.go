package ledger

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/retry"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// fakeSO is a hand-written SuperOffice: a batch containing a poison key is refused
// (IsOk=false, ErrorCode "ERP_REJECTED"); otherwise every key yields one updated contact.
// fn, when set, decides instead.
type fakeSO struct {
	mu     sync.Mutex
	poison map[string]bool
	fn     func(call int, keys []string) (*erpsync.Result, error)
	calls  [][]string
}

func (f *fakeSO) ForceResyncExternal(ctx context.Context, conn int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.calls = append(f.calls, slices.Clone(keys))
	n := len(f.calls)
	fn := f.fn
	f.mu.Unlock()
	if fn != nil {
		return fn(n, keys)
	}
	for _, k := range keys {
		if f.poison[k] {
			return &erpsync.Result{IsOk: false, Status: erpsync.StatusError, ErrorCode: "ERP_REJECTED",
				TechExplanation: "customer " + k + " is blocked in the ERP", UserExplanation: "Kunden er sperret"}, nil
		}
	}
	return okResponse(keys), nil
}

func (f *fakeSO) Calls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeSO) CallCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func recordID(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() & 0x7fffffff)
}

func okResponse(keys []string) *erpsync.Result {
	r := &erpsync.Result{IsOk: true, Status: erpsync.StatusOk}
	for _, k := range keys {
		r.Changes.Updated = append(r.Changes.Updated, erpsync.ChangedItem{Table: "contact", RecordID: recordID(k)})
	}
	return r
}

// instantClock makes the fast retry layer's waits take no time.
type instantClock struct{}

func (instantClock) Now() time.Time { return time.Now() }
func (instantClock) NewTimer(time.Duration) retry.Timer {
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return instantTimer{ch}
}

type instantTimer struct{ ch chan time.Time }

func (t instantTimer) C() <-chan time.Time { return t.ch }
func (t instantTimer) Stop() bool          { return true }

// fastPolicy is DefaultFastPolicy() with instant waits.
func fastPolicy() retry.Policy {
	p := tasks.DefaultFastPolicy()
	p.Clock = instantClock{}
	return p
}

// quick policies for asynq's retries in tests: everything due at once (asynq keeps whole
// seconds, so a retry still fires up to a second or so later).
var quick = retry.Policy{Initial: time.Millisecond, Max: time.Millisecond, RandomizationFactor: -1, MaxRetryAfter: time.Hour}

func testKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return keys
}

// env is one test's Redis, ledger, handler and (optionally) asynq server.
type env struct {
	t      *testing.T
	db     *redistest.DB
	ledger *Ledger
	so     *fakeSO
	h      *tasks.Handler
	cfg    tasks.HandlerConfig // what h was built from
	flow   *flow.Control       // nil without flow control
	client *asynq.Client
	insp   *asynq.Inspector
	reg    *prometheus.Registry
}

func newEnv(t *testing.T, so *fakeSO, mod func(*tasks.HandlerConfig)) *env {
	t.Helper()
	return newFlowEnv(t, so, nil, mod)
}

// newEnvOn is newEnv on a database of the test's choosing.
func newEnvOn(t *testing.T, db *redistest.DB, so *fakeSO, mod func(*tasks.HandlerConfig)) *env {
	t.Helper()
	return newFlowEnvOn(t, db, so, nil, mod)
}

// newFlowEnv is newEnv with flow control (fc without its Redis and Tenant, which it fills
// in) when fc is not nil.
func newFlowEnv(t *testing.T, so *fakeSO, fc *flow.Config, mod func(*tasks.HandlerConfig)) *env {
	t.Helper()
	return newFlowEnvOn(t, redistest.New(t), so, fc, mod)
}

// newFlowEnvOn is newFlowEnv on a database of the test's choosing.
func newFlowEnvOn(t *testing.T, db *redistest.DB, so *fakeSO, fc *flow.Config, mod func(*tasks.HandlerConfig)) *env {
	t.Helper()
	rdb := db.TestClient(t)
	e := &env{t: t, db: db, ledger: NewLedger(rdb), so: so, reg: prometheus.NewRegistry()}
	cfg := tasks.HandlerConfig{
		Resyncer:   so,
		Ledger:     e.ledger,
		Redis:      rdb,
		FastPolicy: fastPolicy(),
		Metrics:    tasks.NewMetrics(e.reg),
		Logger:     testLogger(t),
	}
	if fc != nil {
		c := *fc
		c.Redis, c.Tenant, c.Logger = rdb, "test", testLogger(t)
		fl, err := flow.New(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fl.Close)
		cfg.Flow = fl
		e.flow = fl
	}
	if mod != nil {
		mod(&cfg)
	}
	e.cfg = cfg
	e.newHandler()
	e.client = asynq.NewClient(db.Opt())
	e.insp = asynq.NewInspector(db.Opt())
	t.Cleanup(func() { e.client.Close(); e.insp.Close() })
	return e
}

func testLogger(t *testing.T) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	}
	return zerolog.Nop()
}

// serve runs an asynq server with the handler until the test ends. handler may wrap e.h.
func (e *env) serve(handler asynq.Handler, mod func(*asynq.Config)) *asynq.Server {
	e.t.Helper()
	if handler == nil {
		handler = e.h
	}
	cfg := asynq.Config{
		Concurrency:              4,
		Queues:                   map[string]int{tasks.DefaultQueue: 1},
		TaskCheckInterval:        20 * time.Millisecond,
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		ShutdownTimeout:          2 * time.Second,
		IsFailure:                tasks.IsFailure,
		RetryDelayFunc:           tasks.RetryDelay(quick, quick),
		Logger:                   nopLogger{},
		LogLevel:                 asynq.FatalLevel,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv := asynq.NewServer(e.db.Opt(), cfg)
	if err := srv.Start(handler); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(srv.Shutdown)
	return srv
}

type nopLogger struct{}

func (nopLogger) Debug(...any) {}
func (nopLogger) Info(...any)  {}
func (nopLogger) Warn(...any)  {}
func (nopLogger) Error(...any) {}
func (nopLogger) Fatal(...any) {}

// register registers and enqueues batches like a producer.
func (e *env) enqueue(b tasks.Batch, opts ...asynq.Option) string {
	e.t.Helper()
	ctx := context.Background()
	id := tasks.BatchID(b.RunKey(), b.Seq)
	if _, err := e.ledger.Tenant(b.Tenant).RegisterBatch(ctx, RunMeta{Run: b.Run, ErpConnectionID: b.ErpConnectionID, ActorType: b.ActorType, Source: "test"}, id, len(b.Keys)); err != nil {
		e.t.Fatal(err)
	}
	task, err := tasks.NewResyncTask(b, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.client.Enqueue(task); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// waitFor polls cond until it is true or the deadline passes; an error other than
// ErrRunNotFound (the run not written yet) fails the test at once.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	testwait.For(t, what, timeout, func() (bool, error) {
		ok, err := cond()
		if err != nil && !errors.Is(err, ErrRunNotFound) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return ok, err
	})
}

// waitRunFinished waits until the run has nothing pending and returns its status.
func (e *env) waitRunFinished(run string, timeout time.Duration) RunStatus {
	e.t.Helper()
	var st RunStatus
	waitFor(e.t, "run "+run+" to finish", timeout, func() (bool, error) {
		var err error
		st, err = e.ledger.Status(context.Background(), run)
		return err == nil && st.PendingKeys == 0, err
	})
	return st
}

// waitQueueIdle waits until no task of the queue is pending, active, scheduled or aggregating.
func (e *env) waitQueueIdle(timeout time.Duration) *asynq.QueueInfo {
	e.t.Helper()
	var qi *asynq.QueueInfo
	waitFor(e.t, "queue to be idle", timeout, func() (bool, error) {
		var err error
		qi, err = e.insp.GetQueueInfo(tasks.DefaultQueue)
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return false, nil
		}
		return err == nil && qi.Pending == 0 && qi.Active == 0 && qi.Scheduled == 0 && qi.Aggregating == 0, err
	})
	return qi
}

// metricValue reads a counter from the registry (sum over label sets matching labels).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// newHandler builds e.h from e.cfg.
func (e *env) newHandler() {
	e.t.Helper()
	h, err := tasks.NewHandler(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.h = h
}
