package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
)

func mustTask(t *testing.T, b tasks.Batch, opts ...asynq.Option) *asynq.Task {
	t.Helper()
	task, err := tasks.NewResyncTask(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func customerBatch(run string, seq int, keys []string) tasks.Batch {
	return tasks.Batch{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: keys, Seq: seq}
}

// TestHandlerRecordsSuccessOnce calls the handler twice for the same task, as asynq does
// when a worker dies after the call and before the ack: the second run must neither call
// SuperOffice nor count again.
func TestHandlerRecordsSuccessOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	b := customerBatch("once", 0, []string{"A", "B", "C"})
	task := mustTask(t, b)
	for range 2 {
		if err := e.h.ProcessTask(ctx, task); err != nil {
			t.Fatalf("ProcessTask: %v", err)
		}
	}
	if n := e.so.CallCount(); n != 1 {
		t.Errorf("SuperOffice called %d times, want 1", n)
	}
	st, err := e.ledger.Status(ctx, "once")
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalKeys != 3 || st.ResyncedKeys != 3 || st.DeadKeys != 0 || st.PendingKeys != 0 || st.State != RunDone ||
		st.Calls != 1 || st.Batches != 1 || st.Records[tasks.KindUpdated]["contact"] != 3 || st.FinishedAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
	var items []tasks.ChangeItem
	if err := e.ledger.Changes(ctx, "once", func(it tasks.ChangeItem) error { items = append(items, it); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 {
		t.Fatalf("change items = %+v, want 3", items)
	}
	for i, k := range b.Keys {
		it := items[i]
		if it.RecordID != recordID(k) || it.Table != "contact" || it.Kind != tasks.KindUpdated || it.TaskID != tasks.BatchID("once", 0) || it.Run != "once" || it.At.IsZero() {
			t.Errorf("item %d = %+v", i, it)
		}
	}
	if v := metricValue(t, e.reg, "erpresync_keys_resynced_total", nil); v != 3 {
		t.Errorf("keys resynced metric = %v, want 3", v)
	}
	if v := metricValue(t, e.reg, "erpresync_records_changed_total", map[string]string{"table": "contact", "kind": "updated"}); v != 3 {
		t.Errorf("records metric = %v, want 3", v)
	}
	if v := metricValue(t, e.reg, "erpresync_calls_total", map[string]string{"outcome": "ok"}); v != 1 {
		t.Errorf("calls metric = %v, want 1", v)
	}
}

// TestHandlerReRunAfterLostAck runs a real asynq server whose first run of the task
// "crashes" after the handler recorded success: asynq retries the task, and the re-run must
// find the batch done.
func TestHandlerReRunAfterLostAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	var runs atomic.Int32
	e.serve(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		err := e.h.ProcessTask(ctx, task)
		if runs.Add(1) == 1 {
			return errors.New("simulated crash between success and ack")
		}
		return err
	}), nil)
	keys := testKeys("K", 10)
	id := e.enqueue(customerBatch("lostack", 0, keys))
	waitFor(t, "task to complete", 20*time.Second, func() (bool, error) {
		info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
		return err == nil && info.State == asynq.TaskStateCompleted, err
	})
	if runs.Load() != 2 {
		t.Errorf("handler ran %d times, want 2", runs.Load())
	}
	if n := e.so.CallCount(); n != 1 {
		t.Errorf("SuperOffice called %d times, want 1", n)
	}
	st, err := e.ledger.Status(context.Background(), "lostack")
	if err != nil {
		t.Fatal(err)
	}
	if st.ResyncedKeys != 10 || st.TotalKeys != 10 || st.State != RunDone || st.Records[tasks.KindUpdated]["contact"] != 10 {
		t.Errorf("status = %+v", st)
	}
	info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		BatchID  string `json:"batch_id"`
		Response struct {
			IsOk bool `json:"is_ok"`
		} `json:"response"`
	}
	if err := json.Unmarshal(info.Result, &res); err != nil || res.BatchID != id || !res.Response.IsOk {
		t.Errorf("task result = %s (%v)", info.Result, err)
	}
}

// blockingSO answers only when released, to keep a call in flight across a shutdown.
type blockingSO struct {
	fakeSO
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingSO) ForceResyncExternal(ctx context.Context, conn int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	b.once.Do(func() { close(b.started) })
	<-b.release
	return b.fakeSO.ForceResyncExternal(context.WithoutCancel(ctx), conn, actor, keys)
}

// TestHandlerShutdownMidCall stops the worker while a call is in flight: asynq gives up
// waiting and puts the task back; the call then succeeds and is recorded. The next worker
// must not call SuperOffice again.
func TestHandlerShutdownMidCall(t *testing.T) {
	t.Parallel()
	so := &blockingSO{started: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, &so.fakeSO, func(c *tasks.HandlerConfig) { c.Resyncer = so })
	srv := e.serve(nil, func(c *asynq.Config) { c.ShutdownTimeout = time.Second })
	id := e.enqueue(customerBatch("shutdown", 0, []string{"A", "B"}))
	select {
	case <-so.started:
	case <-time.After(10 * time.Second):
		t.Fatal("call did not start")
	}
	srv.Shutdown() // returns after the task was pushed back to pending
	info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("after shutdown task = %+v, %v; want pending", info, err)
	}
	close(so.release)
	e.waitRunFinished("shutdown", 10*time.Second)

	e.serve(nil, nil)
	waitFor(t, "task to complete", 20*time.Second, func() (bool, error) {
		info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
		return err == nil && info.State == asynq.TaskStateCompleted, err
	})
	if n := so.CallCount(); n != 1 {
		t.Errorf("SuperOffice called %d times, want 1", n)
	}
	st, _ := e.ledger.Status(context.Background(), "shutdown")
	if st.ResyncedKeys != 2 || st.State != RunDone {
		t.Errorf("status = %+v", st)
	}
}

// TestSplitIsolatesPoisonKey: one poison key in a 100-key batch is found by halving, costs
// about 2·log2(n) extra calls, and is the only key dead-lettered.
func TestSplitIsolatesPoisonKey(t *testing.T) {
	t.Parallel()
	const n, businessRetries = 100, 2
	keys := testKeys("K", n)
	poison := keys[42]
	so := &fakeSO{poison: map[string]bool{poison: true}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.BusinessRetries = businessRetries })
	e.serve(nil, nil)
	e.enqueue(customerBatch("poison", 0, keys))
	st := e.waitRunFinished("poison", 40*time.Second)

	if st.TotalKeys != n || st.ResyncedKeys != n-1 || st.DeadKeys != 1 || st.State != RunDoneWithDead {
		t.Errorf("status = %+v", st)
	}
	maxCalls := 1 + 2*int(math.Ceil(math.Log2(n))) + businessRetries
	if c := so.CallCount(); c > maxCalls {
		t.Errorf("%d calls, want at most %d (1 + 2·⌈log2 %d⌉ + %d business retries)", c, maxCalls, n, businessRetries)
	} else {
		t.Logf("%d calls for %d keys with one poison key", c, n)
	}
	dls, err := e.ledger.DeadLetters(context.Background(), "poison")
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("dead letters = %+v, want 1", dls)
	}
	d := dls[0]
	wantReason := "dead letter: business failure ERP_REJECTED: customer " + poison + " is blocked in the ERP after 3 attempts (1 key)"
	if d.Key != poison || d.Class != "business" || d.ErrorCode != "ERP_REJECTED" || d.Attempts != businessRetries+1 ||
		d.Reason != wantReason || d.UserExplanation == "" || d.Queue != tasks.DefaultQueue || d.ErpConnectionID != 3 || d.ActorType != erpsync.ActorCustomer {
		t.Errorf("dead letter = %+v\nwant reason %q", d, wantReason)
	}
	// The dead batch is in asynq's archive with the same readable reason.
	info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, d.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateArchived || info.LastErr != wantReason {
		t.Errorf("archived task: state %v, LastErr %q", info.State, info.LastErr)
	}
	if !strings.HasPrefix(d.BatchID, tasks.BatchID("poison", 0)+".") {
		t.Errorf("dead batch ID %q is not a descendant of the producer's batch", d.BatchID)
	}
	count := 0
	e.ledger.Changes(context.Background(), "poison", func(tasks.ChangeItem) error { count++; return nil })
	if count != n-1 {
		t.Errorf("%d change items, want %d", count, n-1)
	}
	if v := metricValue(t, e.reg, "erpresync_keys_dead_total", map[string]string{"class": "business"}); v != 1 {
		t.Errorf("dead keys metric = %v", v)
	}
}

// TestConnectionBreakerPreventsFanOut: when every call for a connection fails with the
// same ErrorCode, its breaker opens: the handler stops splitting and holds batches
// (throttled, no retries used).
func TestConnectionBreakerPreventsFanOut(t *testing.T) {
	t.Parallel()
	so := &fakeSO{fn: func(int, []string) (*erpsync.Result, error) {
		return &erpsync.Result{IsOk: false, ErrorCode: "ERP_DOWN", TechExplanation: "ERP connector unreachable"}, nil
	}}
	const window = 6
	e := newFlowEnv(t, so, &flow.Config{ConnWindow: window, ConnThreshold: 0.8, ProbeInitial: time.Hour}, nil)
	e.serve(nil, func(c *asynq.Config) { c.Concurrency = 2 })
	const batches = 10
	for i := range batches {
		e.enqueue(customerBatch("systemic", i, testKeys("S"+string(rune('a'+i)), 16)))
	}
	qi := e.waitQueueIdle(20 * time.Second)
	st, err := e.ledger.Status(context.Background(), "systemic")
	if err != nil {
		t.Fatal(err)
	}
	// Without the guard: 10 batches × 31 calls each (plus business retries).
	calls := so.CallCount()
	splits := int(metricValue(t, e.reg, "erpresync_batch_splits_total", nil))
	if splits > window || calls > batches+2*window {
		t.Errorf("%d calls and %d splits; want the guard to stop splitting after about %d calls", calls, splits, window)
	}
	if st.DeadKeys != 0 || st.PendingKeys != batches*16 || qi.Archived != 0 {
		t.Errorf("status = %+v, archived %d; want nothing dead", st, qi.Archived)
	}
	if qi.Retry != batches+splits {
		t.Errorf("%d tasks waiting to retry, want %d", qi.Retry, batches+splits)
	}
	retrying, err := e.insp.ListRetryTasks(tasks.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range retrying {
		if ti.Retried != 0 || !strings.Contains(ti.LastErr, "paused: ERP connection 3 failing systemically") {
			t.Errorf("held task %s: retried %d, LastErr %q", ti.ID, ti.Retried, ti.LastErr)
		}
	}
	if v := metricValue(t, e.reg, "erpresync_breaker_holds_total", nil); v == 0 {
		t.Error("no breaker holds counted")
	}
}

// TestPoisonTailDoesNotOpenBreaker: at the tail of a run only the splits and retries of a
// few poison keys are left, all failing alike. They must not look systemic: the run ends
// with exactly the poison keys dead, not with their batches held for ever.
func TestPoisonTailDoesNotOpenBreaker(t *testing.T) {
	t.Parallel()
	var poison []string
	var batches [][]string
	for i := range 12 {
		keys := testKeys("T"+string(rune('a'+i)), 16)
		if i%4 == 1 {
			poison = append(poison, keys[5])
		}
		batches = append(batches, keys)
	}
	bad := map[string]bool{}
	for _, p := range poison {
		bad[p] = true
	}
	so := &fakeSO{poison: bad}
	e := newFlowEnv(t, so, &flow.Config{ConnWindow: 4, ConnThreshold: 0.75, ProbeInitial: time.Hour}, func(c *tasks.HandlerConfig) {
		c.BusinessRetries = 2
	})
	e.serve(nil, func(c *asynq.Config) { c.Concurrency = 2 })
	for i, keys := range batches {
		e.enqueue(customerBatch("tail", i, keys))
	}
	st := e.waitRunFinished("tail", 40*time.Second)
	if st.DeadKeys != int64(len(poison)) || st.ResyncedKeys != int64(12*16-len(poison)) {
		t.Fatalf("status = %+v, want exactly the %d poison keys dead", st, len(poison))
	}
	if v := metricValue(t, e.reg, "erpresync_breaker_holds_total", nil); v != 0 {
		t.Errorf("%v breaker holds for a few poison keys", v)
	}
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	so := &fakeSO{fn: func(int, []string) (*erpsync.Result, error) {
		return nil, &erpsync.KeyError{Index: 1, Key: "B", Reason: "rejected by test"}
	}}
	e := newEnv(t, so, nil)
	e.serve(nil, nil)
	id := e.enqueue(customerBatch("perm", 0, []string{"A", "B"}))
	st := e.waitRunFinished("perm", 20*time.Second)
	if st.DeadKeys != 2 || st.State != RunDoneWithDead || so.CallCount() != 1 {
		t.Errorf("status = %+v after %d calls", st, so.CallCount())
	}
	want := `dead letter: permanent error: external key #1 "B": rejected by test after 1 attempt (2 keys)`
	waitFor(t, "task to be archived", 10*time.Second, func() (bool, error) {
		info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
		return err == nil && info.State == asynq.TaskStateArchived, err
	})
	info, _ := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
	if info.LastErr != want {
		t.Errorf("LastErr = %q, want %q", info.LastErr, want)
	}
	dls, _ := e.ledger.DeadLetters(context.Background(), "")
	if len(dls) != 2 || dls[0].Class != "permanent" || dls[0].Reason != want || dls[0].Attempts != 1 {
		t.Errorf("dead letters = %+v", dls)
	}
}

func TestTransientRetriesUsedUp(t *testing.T) {
	t.Parallel()
	so := &fakeSO{fn: func(int, []string) (*erpsync.Result, error) {
		return nil, &erpsync.TransportError{Err: errors.New("read tcp: connection reset by peer")}
	}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) {
		c.FastPolicy.MaxAttempts = 2
	})
	e.serve(nil, nil)
	id := e.enqueue(customerBatch("transient", 0, []string{"A"}), asynq.MaxRetry(1))
	st := e.waitRunFinished("transient", 20*time.Second)
	if st.DeadKeys != 1 {
		t.Errorf("status = %+v", st)
	}
	if c := so.CallCount(); c != 4 {
		t.Errorf("%d calls, want 4 (2 asynq attempts × 2 in-process)", c)
	}
	dls, _ := e.ledger.DeadLetters(context.Background(), "transient")
	if len(dls) != 1 || dls[0].Class != "transient" || dls[0].Attempts != 2 ||
		!strings.HasPrefix(dls[0].Reason, "dead letter: transient error, retries used up: ") || !strings.HasSuffix(dls[0].Reason, "after 2 attempts (1 key)") {
		t.Errorf("dead letters = %+v", dls)
	}
	waitFor(t, "task to be archived", 10*time.Second, func() (bool, error) {
		info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
		return err == nil && info.State == asynq.TaskStateArchived, err
	})
	if v := metricValue(t, e.reg, "erpresync_retries_total", map[string]string{"class": "transient", "layer": "fast"}); v != 2 {
		t.Errorf("fast retries metric = %v, want 2", v)
	}
}

// TestThrottlingUsesNoRetries: three 429s in a row on a task with MaxRetry(1) still end in
// success, because throttling is not a failure.
func TestThrottlingUsesNoRetries(t *testing.T) {
	t.Parallel()
	so := &fakeSO{}
	so.fn = func(call int, keys []string) (*erpsync.Result, error) {
		if call <= 3 {
			return nil, &erpsync.HTTPError{StatusCode: 429, RetryAfter: time.Second}
		}
		return okResponse(keys), nil
	}
	e := newEnv(t, so, nil)
	e.serve(nil, nil)
	id := e.enqueue(customerBatch("throttle", 0, []string{"A", "B"}), asynq.MaxRetry(1))
	st := e.waitRunFinished("throttle", 30*time.Second)
	if st.ResyncedKeys != 2 || st.DeadKeys != 0 || so.CallCount() != 4 {
		t.Errorf("status = %+v after %d calls", st, so.CallCount())
	}
	info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Retried != 0 {
		t.Errorf("task retried count = %d, want 0", info.Retried)
	}
}

func TestBusinessRetriesThenDead(t *testing.T) {
	t.Parallel()
	so := &fakeSO{poison: map[string]bool{"X": true}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.BusinessRetries = 2 })
	task := mustTask(t, customerBatch("biz", 0, []string{"X"}))
	ctx := context.Background()
	for attempt := 1; attempt <= 2; attempt++ {
		err := e.h.ProcessTask(ctx, task)
		var te *tasks.Error
		if !errors.As(err, &te) || te.Class != tasks.ClassBusiness || te.Attempt != attempt || te.Dead || !tasks.IsFailure(err) {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	err := e.h.ProcessTask(ctx, task)
	if !errors.Is(err, asynq.SkipRetry) || err.Error() != "dead letter: business failure ERP_REJECTED: customer X is blocked in the ERP after 3 attempts (1 key)" {
		t.Fatalf("third attempt: %v", err)
	}
	// A re-run of a dead batch does not call again and stays dead.
	err = e.h.ProcessTask(ctx, task)
	if !errors.Is(err, asynq.SkipRetry) || so.CallCount() != 3 || !strings.HasPrefix(err.Error(), "dead letter: business failure ERP_REJECTED") ||
		!strings.Contains(err.Error(), "requeue") {
		t.Errorf("re-run of a dead batch: %v after %d calls", err, so.CallCount())
	}
	st, _ := e.ledger.Status(ctx, "biz")
	if st.DeadKeys != 1 || st.State != RunDoneWithDead {
		t.Errorf("status = %+v", st)
	}
}

func TestAuthHeldThenDeadLettered(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	so := &fakeSO{fn: func(int, []string) (*erpsync.Result, error) {
		return nil, &erpsync.ExceptionError{Type: "SoSecurityException", Message: "Ticket expired", TicketRejected: true}
	}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) {
		c.Now = clock
		c.AuthHold = 7 * time.Minute
		c.AuthMaxHold = time.Hour
	})
	task := mustTask(t, customerBatch("auth", 0, []string{"A"}))
	ctx := context.Background()
	err := e.h.ProcessTask(ctx, task)
	var te *tasks.Error
	if !errors.As(err, &te) || te.Class != tasks.ClassAuth || te.Dead || te.RetryAfter != 7*time.Minute || tasks.IsFailure(err) {
		t.Fatalf("first auth failure: %v (%+v)", err, te)
	}
	if d := tasks.RetryDelay(quick, quick)(0, err, task); d != 7*time.Minute {
		t.Errorf("retry delay = %v, want the auth hold", d)
	}
	mu.Lock()
	now = now.Add(30 * time.Minute)
	mu.Unlock()
	if err := e.h.ProcessTask(ctx, task); errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("dead-lettered within AuthMaxHold: %v", err)
	}
	mu.Lock()
	now = now.Add(31 * time.Minute)
	mu.Unlock()
	err = e.h.ProcessTask(ctx, task)
	if !errors.Is(err, asynq.SkipRetry) || !strings.HasPrefix(err.Error(), "dead letter: auth failure: held 1h1m0s") {
		t.Fatalf("after AuthMaxHold: %v", err)
	}
	dls, _ := e.ledger.DeadLetters(ctx, "auth")
	if len(dls) != 1 || dls[0].Class != "auth" {
		t.Errorf("dead letters = %+v", dls)
	}
	if v := metricValue(t, e.reg, "erpresync_auth_failures_total", nil); v != 3 {
		t.Errorf("auth failures metric = %v, want 3", v)
	}
}

// TestOversizeBatchSplitBeforeCalling: an aggregated batch over MaxBatchSize is split, not
// sent and not refused.
func TestOversizeBatchSplitBeforeCalling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	b := customerBatch("big", 0, testKeys("K", tasks.MaxBatchSize+500))
	payload, _ := json.Marshal(b)
	if err := e.h.ProcessTask(ctx, asynq.NewTask(tasks.TypeResync, payload)); err != nil {
		t.Fatal(err)
	}
	if e.so.CallCount() != 0 {
		t.Errorf("%d calls, want none before the split", e.so.CallCount())
	}
	pending, err := e.insp.ListPendingTasks(tasks.DefaultQueue)
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending = %d tasks, %v; want 2 halves", len(pending), err)
	}
	for _, p := range pending {
		c, err := tasks.ParseBatch(p.Payload)
		if err != nil || len(c.Keys) != 750 || c.Parent != tasks.BatchID("big", 0) || c.Depth != 1 || p.ID != c.ID {
			t.Errorf("half %s: %d keys, %+v", p.ID, len(c.Keys), err)
		}
	}
	// Running the parent again (a re-run) re-enqueues nothing new and calls nothing.
	if err := e.h.ProcessTask(ctx, asynq.NewTask(tasks.TypeResync, payload)); err != nil || e.so.CallCount() != 0 {
		t.Errorf("re-run of a split batch: %v, %d calls", err, e.so.CallCount())
	}
	st, _ := e.ledger.Status(ctx, "big")
	if st.TotalKeys != tasks.MaxBatchSize+500 || st.PendingKeys != tasks.MaxBatchSize+500 {
		t.Errorf("status = %+v", st)
	}
}

func TestInvalidPayloadDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, func(c *tasks.HandlerConfig) { c.Metrics = nil })
	ctx := context.Background()
	payload, _ := json.Marshal(tasks.Batch{Run: "bad", ErpConnectionID: 3, ActorType: erpsync.ActorUnknown, Keys: []string{"A", "B"}})
	err := e.h.ProcessTask(ctx, asynq.NewTask(tasks.TypeResync, payload))
	if !errors.Is(err, asynq.SkipRetry) || tasks.Classify(err) != tasks.ClassPermanent {
		t.Fatalf("ProcessTask = %v", err)
	}
	st, _ := e.ledger.Status(ctx, "bad")
	if st.TotalKeys != 2 || st.DeadKeys != 2 || e.so.CallCount() != 0 {
		t.Errorf("status = %+v after %d calls", st, e.so.CallCount())
	}
	for _, p := range [][]byte{[]byte("{"), []byte(`{"run":"","keys":["a"]}`)} {
		if err := e.h.ProcessTask(ctx, asynq.NewTask(tasks.TypeResync, p)); !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("payload %s: %v", p, err)
		}
	}
	if err := e.h.ProcessTask(ctx, asynq.NewTask("other", nil)); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("unknown type: %v", err)
	}
}

// TestTrickleAggregated runs trickle tasks through asynq's grouping and NewAggregator: one
// call with the keys deduplicated.
func TestTrickleAggregated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	e.serve(nil, func(c *asynq.Config) {
		c.Queues = map[string]int{tasks.TrickleQueue: 1}
		c.GroupAggregator = tasks.NewAggregator(tasks.AggregatorConfig{})
		c.GroupGracePeriod = time.Second
		c.GroupMaxSize = tasks.DefaultBatchSize
	})
	for _, k := range []string{"A", "B", "A", "C", "B"} {
		task, err := tasks.NewTrickleTask(5, erpsync.ActorPerson, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	run := tasks.TrickleRun(time.Now(), 5, erpsync.ActorPerson)
	waitFor(t, "trickle run", 20*time.Second, func() (bool, error) {
		st, err := e.ledger.Status(context.Background(), run)
		return err == nil && st.PendingKeys == 0, err
	})
	calls := e.so.Calls()
	if len(calls) != 1 || strings.Join(calls[0], ",") != "A,B,C" {
		t.Errorf("calls = %v, want one with A,B,C", calls)
	}
	st, _ := e.ledger.Status(context.Background(), run)
	if st.TotalKeys != 3 || st.ResyncedKeys != 3 || st.Source != "trickle" || st.ActorType != erpsync.ActorPerson || st.ErpConnectionID != 5 {
		t.Errorf("status = %+v", st)
	}
}

func TestStrayTrickleProcessedAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	task, _ := tasks.NewTrickleTask(5, erpsync.ActorPerson, "P1")
	if err := e.h.ProcessTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	st, err := e.ledger.Status(context.Background(), tasks.TrickleRun(time.Now(), 5, erpsync.ActorPerson))
	if err != nil || st.ResyncedKeys != 1 {
		t.Errorf("status = %+v, %v", st, err)
	}
}

func TestTicketRefreshesMetric(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	e.cfg.Metrics.TicketRefreshes(func() int64 { return 4 })
	if v := metricValue(t, e.reg, "erpresync_ticket_refreshes_total", nil); v != 4 {
		t.Errorf("ticket refreshes = %v", v)
	}
}

// TestSplitNotEnqueuedForFinishedBatch: the batch was finished elsewhere while its call was
// in flight (asynq gave up on a timed-out last attempt and ReconcileArchived dead-lettered
// it), then SuperOffice refused it. The late refusal must not enqueue halves: their keys are
// already counted as dead, and counting them again would finish more keys than the run has.
func TestSplitNotEnqueuedForFinishedBatch(t *testing.T) {
	t.Parallel()
	so := &fakeSO{}
	e := newEnv(t, so, nil)
	ctx := context.Background()
	b := customerBatch("late", 0, []string{"A", "B"})
	id := e.enqueue(b)
	so.fn = func(call int, keys []string) (*erpsync.Result, error) {
		if call == 1 {
			if err := e.insp.ArchiveTask(tasks.DefaultQueue, id); err != nil {
				t.Error(err)
			}
			if n, err := e.ledger.ReconcileArchived(ctx, e.insp); err != nil || n != 1 {
				t.Errorf("ReconcileArchived = %d, %v", n, err)
			}
			return &erpsync.Result{IsOk: false, ErrorCode: "ERP_REJECTED"}, nil
		}
		return okResponse(keys), nil
	}
	e.h.ProcessTask(ctx, mustTask(t, b))
	pending, err := e.insp.ListPendingTasks(tasks.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 0 {
		t.Errorf("%d halves enqueued for a batch already dead", len(pending))
	}
	for _, p := range pending { // what a worker would do with them
		e.h.ProcessTask(ctx, asynq.NewTask(p.Type, p.Payload))
	}
	st, _ := e.ledger.Status(ctx, "late")
	if st.TotalKeys != 2 || st.DeadKeys != 2 || st.ResyncedKeys != 0 {
		t.Errorf("status = %+v; want the 2 keys dead, counted once", st)
	}
}

// refuseAll refuses every batch with code, as a broken ERP connector or a run of poison keys
// that all fail alike does.
func refuseAll(code string) func(int, []string) (*erpsync.Result, error) {
	return func(int, []string) (*erpsync.Result, error) {
		return &erpsync.Result{IsOk: false, ErrorCode: code, TechExplanation: "refused"}, nil
	}
}

// TestBreakerHoldNeverDeadLetters: batches held by an open breaker use no retries, and a
// batch held on its last attempt (which asynq would archive whatever the error) is relayed
// as fresh halves instead of being dead-lettered.
func TestBreakerHoldNeverDeadLetters(t *testing.T) {
	t.Parallel()
	// The fake is not behind the transport: its failures are what the handler sees of an
	// outage, and the open breaker turns them into holds.
	so := &fakeSO{fn: func(int, []string) (*erpsync.Result, error) {
		return nil, &erpsync.TransportError{Err: errors.New("connection refused")}
	}}
	e := newFlowEnv(t, so, &flow.Config{TenantFailures: 2, ProbeInitial: time.Hour}, nil)
	ctx := context.Background()
	fl := e.flow
	// Open the tenant's breaker as the transport would, after two failures in a row.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }))
	defer srv.Close()
	hc := &http.Client{Transport: fl.Transport(nil)}
	for range 2 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	e.serve(nil, nil)
	e.enqueue(customerBatch("held", 0, []string{"K1", "K2", "K3"}), asynq.MaxRetry(0))
	waitFor(t, "the relayed halves", 20*time.Second, func() (bool, error) {
		qi, err := e.insp.GetQueueInfo(tasks.DefaultQueue)
		return err == nil && qi.Scheduled == 2 && qi.Pending == 0 && qi.Active == 0, err
	})
	qi, _ := e.insp.GetQueueInfo(tasks.DefaultQueue)
	st, _ := e.ledger.Status(ctx, "held")
	if qi.Archived != 0 || st.DeadKeys != 0 || st.PendingKeys != 3 {
		t.Errorf("archived %d, status %+v: want nothing dead, all 3 keys pending", qi.Archived, st)
	}
}

// TestGuardReleasedByHalvesSucceeding: an outage trips the guard while the run's producer
// batches are split; when it ends, only halves are left. Their successes must count, or the
// guard stays tripped on the outage's old outcomes and holds the one poison half (failing
// with the same code) instead of isolating its key.
func TestGuardReleasedByHalvesSucceeding(t *testing.T) {
	t.Parallel()
	so := &fakeSO{fn: refuseAll("ERP_REJECTED")}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newFlowEnv(t, so, &flow.Config{ConnWindow: 4, ConnThreshold: 0.75, Now: clock}, nil)
	ctx := context.Background()
	var ts []*asynq.Task
	for i := range 4 {
		b := customerBatch("outage", i, []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)})
		e.enqueue(b)
		ts = append(ts, mustTask(t, b))
	}
	for i, task := range ts { // the outage: three splits, then the breaker opens
		err := e.h.ProcessTask(ctx, task)
		if tripped := errors.As(err, new(*flow.PausedError)); tripped != (i == 3) {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	mu.Lock() // the probe is due
	now = now.Add(flow.DefaultProbeInitial)
	mu.Unlock()
	so.mu.Lock() // the outage ends; a0 is a poison key refused with the same code
	so.fn = func(_ int, keys []string) (*erpsync.Result, error) {
		if slices.Contains(keys, "a0") {
			return &erpsync.Result{IsOk: false, ErrorCode: "ERP_REJECTED", TechExplanation: "a0 blocked"}, nil
		}
		return okResponse(keys), nil
	}
	so.mu.Unlock()
	if err := e.h.ProcessTask(ctx, ts[3]); err != nil {
		t.Fatalf("held batch after the outage: %v", err)
	}
	halves, err := e.insp.ListPendingTasks(tasks.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	var poison *asynq.Task
	for _, h := range halves {
		task := asynq.NewTask(h.Type, h.Payload)
		b, _ := tasks.ParseBatch(h.Payload)
		if slices.Contains(b.Keys, "a0") {
			poison = task
			continue
		}
		if err := e.h.ProcessTask(ctx, task); err != nil {
			t.Fatalf("half %v: %v", b.Keys, err)
		}
	}
	if poison == nil {
		t.Fatalf("no half with the poison key among %d pending", len(halves))
	}
	err = e.h.ProcessTask(ctx, poison)
	if errors.As(err, new(*flow.PausedError)) || tasks.Classify(err) != tasks.ClassBusiness {
		t.Errorf("poison half after the outage: %v; want a business failure, not a systemic hold", err)
	}
}

// TestStrayTrickleRunIsTheKeysDay: a trickle processed alone belongs to the run of the day
// it was handed over; a retry after midnight must not register it in the next day's run as
// well (the first run would wait for it for ever).
func TestStrayTrickleRunIsTheKeysDay(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	day := time.Date(2025, 3, 4, 23, 59, 0, 0, time.UTC)
	now := day
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	so := &fakeSO{}
	so.fn = func(call int, keys []string) (*erpsync.Result, error) {
		if call <= tasks.DefaultFastPolicy().MaxAttempts {
			return nil, &erpsync.TransportError{Err: errors.New("connection reset")}
		}
		return okResponse(keys), nil
	}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.Now = clock })
	ctx := context.Background()
	payload, _ := json.Marshal(tasks.Trickle{ErpConnectionID: 5, ActorType: erpsync.ActorPerson, Key: "P1", At: day})
	task := asynq.NewTask(tasks.TypeTrickle, payload)
	if err := e.h.ProcessTask(ctx, task); tasks.Classify(err) != tasks.ClassTransient {
		t.Fatalf("first attempt: %v", err)
	}
	mu.Lock()
	now = day.Add(2 * time.Minute) // past midnight
	mu.Unlock()
	if err := e.h.ProcessTask(ctx, task); err != nil {
		t.Fatalf("retry: %v", err)
	}
	st, err := e.ledger.Status(ctx, tasks.TrickleRun(day, 5, erpsync.ActorPerson))
	if err != nil || st.TotalKeys != 1 || st.ResyncedKeys != 1 || st.State != RunDone {
		t.Errorf("run of the key's day: %+v, %v", st, err)
	}
	if st, err := e.ledger.Status(ctx, tasks.TrickleRun(now, 5, erpsync.ActorPerson)); !errors.Is(err, ErrRunNotFound) {
		t.Errorf("the key is counted in the next day's run too: %+v, %v", st, err)
	}
}

// countHook counts the commands a Redis client sends.
type countHook struct {
	mu   sync.Mutex
	cmds []string
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.cmds = append(h.cmds, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.cmds = append(h.cmds, "pipeline")
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *countHook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.cmds
	h.cmds = nil
	return out
}

// TestHotPathRoundTrips: a registered batch that succeeds at once costs the handler two
// round trips to Redis: one script that registers it (a no-op) and reads its state, and one
// that records the success with the call.
func TestHotPathRoundTrips(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	hook := &countHook{}
	e.ledger.rdb.AddHook(hook)
	for i := range 3 {
		b := customerBatch("hot", i, []string{fmt.Sprintf("K%d", i)})
		e.enqueue(b)
		hook.take()
		if err := e.h.ProcessTask(ctx, mustTask(t, b)); err != nil {
			t.Fatal(err)
		}
		if cmds := hook.take(); i > 0 && len(cmds) != 2 { // the first one loads the scripts
			t.Errorf("batch %d: %d round trips %v, want 2", i, len(cmds), cmds)
		}
	}
	st, _ := e.ledger.Status(ctx, "hot")
	if st.ResyncedKeys != 3 || st.Calls != 3 || st.Batches != 3 {
		t.Errorf("status = %+v", st)
	}
}
