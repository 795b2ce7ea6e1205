package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
)

func TestRegisterBatchIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	meta := RunMeta{Run: "reg", ErpConnectionID: 4, ActorType: erpsync.ActorSupplier, Source: "cli"}
	for i, want := range []bool{true, false, false} {
		added, err := e.ledger.RegisterBatch(ctx, meta, tasks.BatchID("reg", 0), 10)
		if err != nil || added != want {
			t.Fatalf("call %d: added %v, %v; want %v", i, added, err, want)
		}
	}
	if added, err := e.ledger.RegisterBatch(ctx, RunMeta{Run: "reg", ErpConnectionID: 99}, tasks.BatchID("reg", 1), 5); err != nil || !added {
		t.Fatalf("second batch: %v, %v", added, err)
	}
	st, err := e.ledger.Status(ctx, "reg")
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalKeys != 15 || st.PendingKeys != 15 || st.Batches != 2 || st.State != RunActive ||
		st.ErpConnectionID != 4 || st.ActorType != erpsync.ActorSupplier || st.Source != "cli" ||
		st.StartedAt.IsZero() || !st.FinishedAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
	if _, err := e.ledger.Status(ctx, "nope"); !errors.Is(err, ErrRunNotFound) {
		t.Errorf("Status(nope) = %v, want ErrRunNotFound", err)
	}
	for _, bad := range []struct {
		run, id string
		n       int
	}{{"", "x", 1}, {"a b", "x", 1}, {"ok", "", 1}, {"ok", "x", 0}} {
		if _, err := e.ledger.RegisterBatch(ctx, RunMeta{Run: bad.run}, bad.id, bad.n); err == nil {
			t.Errorf("RegisterBatch(%q, %q, %d) accepted", bad.run, bad.id, bad.n)
		}
	}
}

func TestRegisterBatchConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := e.ledger.RegisterBatch(ctx, RunMeta{Run: "conc", ErpConnectionID: 1, ActorType: erpsync.ActorCustomer}, "conc:b000000", 7)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				added++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st, _ := e.ledger.Status(ctx, "conc")
	if added != 1 || st.TotalKeys != 7 {
		t.Errorf("added %d times, total %d; want once, 7", added, st.TotalKeys)
	}
}

func TestRunsMostRecentFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, run := range []string{"first", "second", "third"} {
		e.ledger.now = func() time.Time { return base.Add(time.Duration(i) * time.Hour) }
		if _, err := e.ledger.RegisterBatch(ctx, RunMeta{Run: run, ErpConnectionID: 1, ActorType: erpsync.ActorCustomer}, run+":b000000", 1); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := e.ledger.Runs(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Run != "third" || runs[1].Run != "second" {
		t.Errorf("Runs(2) = %+v", runs)
	}
	all, _ := e.ledger.Runs(ctx, 0)
	if len(all) != 3 || !all[2].StartedAt.Equal(base) {
		t.Errorf("Runs(0) = %+v", all)
	}
}

func TestRunStatusJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{fn: func(_ int, keys []string) (*erpsync.Result, error) {
		r := okResponse(keys)
		r.Changes.Added = []erpsync.ChangedItem{{Table: "person", RecordID: 7}}
		r.Changes.Deleted = []erpsync.ChangedItem{{Table: "contact", RecordID: 8}}
		return r, nil
	}}, nil)
	ctx := context.Background()
	if err := e.h.ProcessTask(ctx, mustTask(t, customerBatch("json", 0, []string{"A"}))); err != nil {
		t.Fatal(err)
	}
	st, err := e.ledger.Status(ctx, "json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"run", "state", "total_keys", "resynced_keys", "dead_keys", "pending_keys", "records", "started_at", "finished_at", "actor_type", "erp_connection", "calls"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	rec := m["records"].(map[string]any)
	if rec["added"].(map[string]any)["person"] != 1.0 || rec["updated"].(map[string]any)["contact"] != 1.0 || rec["deleted"].(map[string]any)["contact"] != 1.0 {
		t.Errorf("records = %v", rec)
	}
	if m["actor_type"] != "Customer" || m["state"] != "done" {
		t.Errorf("JSON = %s", b)
	}
	var kinds []string
	e.ledger.Changes(ctx, "json", func(it tasks.ChangeItem) error { kinds = append(kinds, it.Kind+"/"+it.Table); return nil })
	if strings.Join(kinds, ",") != "added/person,updated/contact,deleted/contact" {
		t.Errorf("change order = %v", kinds)
	}
}

func TestChangesPagesAndStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	keys := testKeys("C", tasks.MaxBatchSize)
	for i := range 3 {
		b := customerBatch("pages", i, keys)
		if err := e.h.ProcessTask(ctx, mustTask(t, b)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	var prev tasks.ChangeItem
	err := e.ledger.Changes(ctx, "pages", func(it tasks.ChangeItem) error {
		if n > 0 && it.TaskID < prev.TaskID {
			return fmt.Errorf("out of order at %d", n)
		}
		prev = it
		n++
		return nil
	})
	if err != nil || n != 3*tasks.MaxBatchSize {
		t.Errorf("Changes: %d items, %v; want %d", n, err, 3*tasks.MaxBatchSize)
	}
	stop := errors.New("stop")
	n = 0
	err = e.ledger.Changes(ctx, "pages", func(tasks.ChangeItem) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Errorf("Changes did not stop: %v after %d", err, n)
	}
}

// TestReconcileArchived: a task archived without the handler (as asynq's recoverer does
// after kill -9 when the retries are used up) is recorded as dead, once.
func TestReconcileArchived(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	lost := e.enqueue(customerBatch("recon", 0, []string{"A", "B"}))
	if err := e.insp.ArchiveTask(tasks.DefaultQueue, lost); err != nil {
		t.Fatal(err)
	}
	// A batch the handler finished, archived anyway: must be left alone.
	doneBatch := customerBatch("recon", 1, []string{"C"})
	if err := e.h.ProcessTask(ctx, mustTask(t, doneBatch)); err != nil {
		t.Fatal(err)
	}
	done := e.enqueue(doneBatch)
	if err := e.insp.ArchiveTask(tasks.DefaultQueue, done); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 0} {
		n, err := e.ledger.ReconcileArchived(ctx, e.insp)
		if err != nil || n != want {
			t.Fatalf("ReconcileArchived #%d = %d, %v; want %d", i+1, n, err, want)
		}
	}
	st, _ := e.ledger.Status(ctx, "recon")
	if st.TotalKeys != 3 || st.DeadKeys != 2 || st.ResyncedKeys != 1 || st.State != RunDoneWithDead {
		t.Errorf("status = %+v", st)
	}
	dls, _ := e.ledger.DeadLetters(ctx, "recon")
	want := "dead letter: transient error, retries used up: archived by asynq with no dead-letter record (last error: none recorded) after 1 attempt (2 keys)"
	if len(dls) != 2 || dls[0].Reason != want || dls[0].BatchID != lost || dls[0].Queue != tasks.DefaultQueue {
		t.Errorf("dead letters = %+v", dls)
	}
	// A queue that does not exist is not an error.
	if n, err := e.ledger.ReconcileArchived(ctx, e.insp, "no-such-queue"); err != nil || n != 0 {
		t.Errorf("ReconcileArchived(no-such-queue) = %d, %v", n, err)
	}
}

// switchSO refuses keys until fixed, then accepts everything.
type switchSO struct {
	fakeSO
	mu    sync.Mutex
	fixed bool
}

func (s *switchSO) ForceResyncExternal(ctx context.Context, conn int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	s.mu.Lock()
	fixed := s.fixed
	s.mu.Unlock()
	if !fixed {
		for _, k := range keys {
			if strings.HasPrefix(k, "bad") {
				s.fakeSO.ForceResyncExternal(ctx, conn, actor, keys)
				return nil, &erpsync.KeyError{Index: 0, Key: k, Reason: "test"}
			}
		}
	}
	return s.fakeSO.ForceResyncExternal(ctx, conn, actor, keys)
}

func (s *switchSO) fix() {
	s.mu.Lock()
	s.fixed = true
	s.mu.Unlock()
}

// TestRequeue: dead keys go back to pending, are enqueued as fresh batches, and their
// archived tasks are removed; the filter picks by ErrorCode; the run finishes clean.
func TestRequeue(t *testing.T) {
	t.Parallel()
	so := &switchSO{}
	so.poison = map[string]bool{"poison": true}
	e := newEnv(t, &so.fakeSO, func(c *tasks.HandlerConfig) { c.Resyncer = so; c.BusinessRetries = -1 })
	e.serve(nil, nil)
	ctx := context.Background()
	e.enqueue(customerBatch("rq", 0, []string{"bad1", "bad2"}))
	e.enqueue(customerBatch("rq", 1, []string{"poison"}))
	e.enqueue(customerBatch("rq", 2, []string{"good"}))
	st := e.waitRunFinished("rq", 20*time.Second)
	if st.DeadKeys != 3 || st.ResyncedKeys != 1 {
		t.Fatalf("before requeue: %+v", st)
	}
	waitFor(t, "two archived tasks", 10*time.Second, func() (bool, error) {
		qi, err := e.insp.GetQueueInfo(tasks.DefaultQueue)
		return err == nil && qi.Archived == 2, err
	})

	if _, err := e.ledger.Requeue(ctx, e.client, e.insp, DeadFilter{}); err == nil {
		t.Error("Requeue without a run or All succeeded")
	}
	// A batch goes back to the queue it ran in: a caller's queue would send a run's keys to
	// other workers (the production queue for a demo run).
	if res, err := e.ledger.Requeue(ctx, e.client, e.insp, DeadFilter{Run: "rq"}, asynq.Queue("elsewhere")); err == nil || res.Keys != 0 {
		t.Errorf("Requeue with asynq.Queue = %+v, %v; want it refused", res, err)
	}
	so.fix()
	so.mu.Lock()
	so.poison = nil
	so.mu.Unlock()

	res, err := e.ledger.Requeue(ctx, e.client, e.insp, DeadFilter{Run: "rq", ErrorCode: "ERP_REJECTED"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 1 || len(res.Batches) != 1 || res.Archived != 1 {
		t.Errorf("Requeue(ERP_REJECTED) = %+v", res)
	}
	st = e.waitRunFinished("rq", 20*time.Second)
	if st.DeadKeys != 2 || st.ResyncedKeys != 2 || st.TotalKeys != 4 {
		t.Errorf("after first requeue: %+v", st)
	}

	res, err = e.ledger.Requeue(ctx, e.client, e.insp, DeadFilter{Run: "rq"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 2 || len(res.Batches) != 1 || res.Archived != 1 {
		t.Errorf("Requeue(rq) = %+v", res)
	}
	st = e.waitRunFinished("rq", 20*time.Second)
	if st.DeadKeys != 0 || st.ResyncedKeys != 4 || st.State != RunDone || st.FinishedAt.IsZero() {
		t.Errorf("after second requeue: %+v", st)
	}
	if dls, _ := e.ledger.DeadLetters(ctx, "rq"); len(dls) != 0 {
		t.Errorf("dead letters left: %+v", dls)
	}
	qi, _ := e.insp.GetQueueInfo(tasks.DefaultQueue)
	if qi.Archived != 0 {
		t.Errorf("%d archived tasks left", qi.Archived)
	}
	// Nothing left to requeue.
	if res, err := e.ledger.Requeue(ctx, e.client, e.insp, DeadFilter{All: true}); err != nil || res.Keys != 0 {
		t.Errorf("Requeue(All) = %+v, %v", res, err)
	}
}

// TestRequeueMovesToPending checks the ledger side without a worker: dead keys become
// pending at once, the run is active again, and the batch waits in asynq.
func TestRequeueMovesToPending(t *testing.T) {
	t.Parallel()
	so := &fakeSO{poison: map[string]bool{"P": true}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.BusinessRetries = -1 })
	ctx := context.Background()
	for i, k := range []string{"P", "P"} { // the same key dead in two batches
		err := e.h.ProcessTask(ctx, mustTask(t, customerBatch("pend", i, []string{k})))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	res, err := e.ledger.Requeue(ctx, e.client, nil, DeadFilter{Run: "pend", Class: "business"}, asynq.MaxRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 2 || len(res.Batches) != 2 {
		t.Errorf("Requeue = %+v; want 2 keys in 2 batches (a key never twice in one batch)", res)
	}
	st, _ := e.ledger.Status(ctx, "pend")
	if st.DeadKeys != 0 || st.PendingKeys != 2 || st.State != RunActive || !st.FinishedAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
	for _, id := range res.Batches {
		info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := tasks.ParseBatch(info.Payload)
		if err != nil || info.State != asynq.TaskStatePending || info.MaxRetry != 3 || b.Source != "requeue" || len(b.Keys) != 1 {
			t.Errorf("requeued task %s: %+v %+v %v", id, info, b, err)
		}
		// Registering the requeued batch again (the handler does) must not grow the total.
		if added, _ := e.ledger.RegisterBatch(ctx, RunMeta{Run: "pend"}, id, 1); added {
			t.Error("requeued batch counted twice")
		}
	}
	if _, err := e.ledger.Requeue(ctx, e.client, nil, DeadFilter{Run: "pend", Class: "bogus"}); err == nil {
		t.Error("bogus class accepted")
	}
}

func TestRequeueFinishesInterruptedOutbox(t *testing.T) {
	t.Parallel()
	so := &fakeSO{poison: map[string]bool{"P": true}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.BusinessRetries = -1 })
	ctx := context.Background()
	e.h.ProcessTask(ctx, mustTask(t, customerBatch("outbox", 0, []string{"P"})))
	dls, _ := e.ledger.DeadLetters(ctx, "outbox")
	// The move happens, then the process dies before enqueueing.
	if n, err := e.ledger.moveToOutbox(ctx, "outbox", dls); err != nil || n != 1 {
		t.Fatalf("moveToOutbox = %d, %v", n, err)
	}
	res, err := e.ledger.Requeue(ctx, e.client, nil, DeadFilter{Run: "outbox"})
	if err != nil || res.Keys != 0 || len(res.Batches) != 1 {
		t.Fatalf("Requeue = %+v, %v; want the outbox batch enqueued", res, err)
	}
	qi, _ := e.insp.GetQueueInfo(tasks.DefaultQueue)
	if qi.Pending != 1 {
		t.Errorf("%d pending tasks, want 1", qi.Pending)
	}
}

func TestPurgeDead(t *testing.T) {
	t.Parallel()
	so := &fakeSO{poison: map[string]bool{"P": true, "Q": true}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.BusinessRetries = -1 })
	ctx := context.Background()
	for i, k := range []string{"P", "Q"} {
		e.h.ProcessTask(ctx, mustTask(t, customerBatch("purge", i, []string{k})))
	}
	if _, err := e.ledger.PurgeDead(ctx, e.insp, DeadFilter{}); err == nil {
		t.Error("PurgeDead without a run or All succeeded")
	}
	res, err := e.ledger.PurgeDead(ctx, e.insp, DeadFilter{All: true, ErrorCode: "ERP_REJECTED"})
	if err != nil || res.Keys != 2 {
		t.Fatalf("PurgeDead = %+v, %v", res, err)
	}
	dls, _ := e.ledger.DeadLetters(ctx, "")
	st, _ := e.ledger.Status(ctx, "purge")
	if len(dls) != 0 || st.DeadKeys != 2 || st.State != RunDoneWithDead {
		t.Errorf("after purge: %d dead letters, status %+v", len(dls), st)
	}
}

func TestDeadLettersAllRuns(t *testing.T) {
	t.Parallel()
	so := &fakeSO{poison: map[string]bool{"P": true}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.BusinessRetries = -1 })
	ctx := context.Background()
	for _, run := range []string{"r1", "r2"} {
		e.h.ProcessTask(ctx, mustTask(t, customerBatch(run, 0, []string{"P"})))
	}
	all, err := e.ledger.DeadLetters(ctx, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("DeadLetters(\"\") = %+v, %v", all, err)
	}
	one, _ := e.ledger.DeadLetters(ctx, "r2")
	if len(one) != 1 || one[0].Run != "r2" {
		t.Errorf("DeadLetters(r2) = %+v", one)
	}
}

func TestSelectDeadByKey(t *testing.T) {
	t.Parallel()
	so := &fakeSO{poison: map[string]bool{"P": true, "Q": true}}
	e := newEnv(t, so, func(c *tasks.HandlerConfig) { c.BusinessRetries = -1 })
	ctx := context.Background()
	e.h.ProcessTask(ctx, mustTask(t, customerBatch("k1", 0, []string{"P"})))
	e.h.ProcessTask(ctx, mustTask(t, customerBatch("k2", 0, []string{"Q"})))
	e.h.ProcessTask(ctx, mustTask(t, customerBatch("k2", 1, []string{"P"})))
	tests := []struct {
		name string
		f    DeadFilter
		want []string // run/key
	}{
		{"key everywhere", DeadFilter{Key: "P", All: true}, []string{"k1/P", "k2/P"}},
		{"key in one run", DeadFilter{Key: "P", Run: "k2"}, []string{"k2/P"}},
		{"unknown key", DeadFilter{Key: "nope", All: true}, nil},
		{"every dead letter", DeadFilter{All: true}, []string{"k1/P", "k2/P", "k2/Q"}},
	}
	for _, tt := range tests {
		dls, err := e.ledger.SelectDead(ctx, tt.f)
		var got []string
		for _, d := range dls {
			got = append(got, d.Run+"/"+d.Key)
		}
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: SelectDead = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := e.ledger.SelectDead(ctx, DeadFilter{Key: "P"}); err == nil {
		t.Error("SelectDead without Run or All accepted")
	}
}

// TestRecordIntake: rejected keys are counted and listed (at most MaxRejected), a
// resubmission replaces them, and a run without keys is created and reported empty.
func TestRecordIntake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	meta := RunMeta{Run: "intake", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Source: "cli"}
	rej := make([]RejectedKey, MaxRejected+5)
	for i := range rej {
		rej[i] = RejectedKey{Source: "k.txt", Line: i + 1, Key: fmt.Sprint("K", i), Reason: "bad"}
	}
	for range 2 { // a resubmission replaces, never adds
		if err := e.ledger.RecordIntake(ctx, meta, int64(len(rej)+7), rej); err != nil {
			t.Fatal(err)
		}
	}
	st, err := e.ledger.Status(ctx, "intake")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != RunEmpty || st.TotalKeys != 0 || st.RejectedKeys != MaxRejected+12 || st.ActorType != erpsync.ActorCustomer ||
		st.FinishedAt.IsZero() || st.StartedAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
	got, err := e.ledger.Rejected(ctx, "intake")
	if err != nil || len(got) != MaxRejected || got[0] != rej[0] || got[MaxRejected-1] != rej[MaxRejected-1] {
		t.Fatalf("Rejected = %d entries, %v", len(got), err)
	}
	if runs, _ := e.ledger.Runs(ctx, 0); len(runs) != 1 || runs[0].Run != "intake" {
		t.Errorf("Runs = %+v", runs)
	}

	// A run with keys keeps its state; the rejected count is its own.
	meta.Run = "mixed"
	if _, err := e.ledger.RegisterBatch(ctx, meta, tasks.BatchID("mixed", 0), 2); err != nil {
		t.Fatal(err)
	}
	if err := e.ledger.RecordIntake(ctx, meta, 1, rej[:1]); err != nil {
		t.Fatal(err)
	}
	st, _ = e.ledger.Status(ctx, "mixed")
	if st.State != RunActive || st.TotalKeys != 2 || st.RejectedKeys != 1 || !st.FinishedAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
	if got, _ := e.ledger.Rejected(ctx, "none"); len(got) != 0 {
		t.Errorf("Rejected(none) = %+v", got)
	}
}

// TestReconcileEnqueuesLostHalves: the handler marked a batch split and died before its
// halves were enqueued, on the task's last attempt, so asynq archived the task instead of
// running it again. ReconcileArchived must enqueue the halves, or the batch's keys stay
// pending for ever; halves already resolved are not enqueued again.
func TestReconcileEnqueuesLostHalves(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	b := customerBatch("lostsplit", 0, []string{"A", "B", "C"})
	id := e.enqueue(b, asynq.MaxRetry(4))
	if applied, err := e.ledger.MarkSplit(ctx, "lostsplit", id, time.Now()); err != nil || applied != tasks.SplitMarked {
		t.Fatalf("markSplit = %v, %v", applied, err)
	}
	if err := e.insp.ArchiveTask(tasks.DefaultQueue, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ledger.ReconcileArchived(ctx, e.insp); err != nil {
		t.Fatal(err)
	}
	halves, err := e.insp.ListPendingTasks(tasks.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if len(halves) != 2 {
		t.Fatalf("%d halves pending after ReconcileArchived, want 2", len(halves))
	}
	var keys []string
	for _, h := range halves {
		c, err := tasks.ParseBatch(h.Payload)
		if err != nil || c.Parent != id || c.Depth != 1 || h.MaxRetry != 4 || (h.ID != tasks.ChildID(id, 0) && h.ID != tasks.ChildID(id, 1)) {
			t.Errorf("half %s: %+v, max retry %d, %v", h.ID, c, h.MaxRetry, err)
		}
		keys = append(keys, c.Keys...)
		if h.ID == tasks.ChildID(id, 0) { // one half runs; the other is lost again
			if err := e.h.ProcessTask(ctx, asynq.NewTask(h.Type, h.Payload)); err != nil {
				t.Fatal(err)
			}
			if err := e.insp.DeleteTask(tasks.DefaultQueue, h.ID); err != nil {
				t.Fatal(err)
			}
		} else if err := e.insp.DeleteTask(tasks.DefaultQueue, h.ID); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(keys)
	if strings.Join(keys, ",") != "A,B,C" {
		t.Errorf("halves carry %v, want A,B,C", keys)
	}
	if _, err := e.ledger.ReconcileArchived(ctx, e.insp); err != nil {
		t.Fatal(err)
	}
	again, _ := e.insp.ListPendingTasks(tasks.DefaultQueue)
	if len(again) != 1 || again[0].ID != tasks.ChildID(id, 1) {
		t.Fatalf("second pass enqueued %d tasks, want only the unresolved half", len(again))
	}
	if err := e.h.ProcessTask(ctx, asynq.NewTask(again[0].Type, again[0].Payload)); err != nil {
		t.Fatal(err)
	}
	st, _ := e.ledger.Status(ctx, "lostsplit")
	if st.TotalKeys != 3 || st.ResyncedKeys != 3 || st.State != RunDone {
		t.Errorf("status = %+v", st)
	}
}

// TestReconcileArchivedTrickle: a trickle task that reached the handler alone (no
// aggregator) and was archived without a record is dead-lettered in the run of its day.
func TestReconcileArchivedTrickle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	task, err := tasks.NewTrickleTask(5, erpsync.ActorPerson, "P1", asynq.Group("x"))
	if err != nil {
		t.Fatal(err)
	}
	var tr tasks.Trickle
	json.Unmarshal(task.Payload(), &tr)
	alone := asynq.NewTask(tasks.TypeTrickle, task.Payload(), asynq.Queue(tasks.DefaultQueue)) // no group: handled alone
	info, err := e.client.Enqueue(alone)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.insp.ArchiveTask(tasks.DefaultQueue, info.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ledger.ReconcileArchived(ctx, e.insp); err != nil || n != 1 {
		t.Fatalf("ReconcileArchived = %d, %v; want the trickle recorded", n, err)
	}
	run := tasks.TrickleRun(tr.At, 5, erpsync.ActorPerson)
	st, err := e.ledger.Status(ctx, run)
	if err != nil || st.TotalKeys != 1 || st.DeadKeys != 1 {
		t.Errorf("status of %s = %+v, %v", run, st, err)
	}
	dls, _ := e.ledger.DeadLetters(ctx, run)
	if len(dls) != 1 || dls[0].Key != "P1" || dls[0].BatchID != info.ID {
		t.Errorf("dead letters = %+v", dls)
	}
}

// TestOpenIntake: a run whose intake was opened and not sealed is never finished, though
// every batch it got is done: it is incomplete, without finished_at, and Prune keeps it.
// RecordIntake seals it, and it is done.
func TestOpenIntake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	meta := RunMeta{Run: "cut", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Source: "http"}
	if err := e.ledger.OpenIntake(ctx, meta); err != nil {
		t.Fatal(err)
	}
	if st, err := e.ledger.Status(ctx, "cut"); err != nil || st.State != RunActive || !st.Receiving {
		t.Fatalf("opened, no batch: %+v %v; want active, receiving", st, err)
	}
	id := tasks.BatchID("cut", 0)
	if _, err := e.ledger.RegisterBatch(ctx, meta, id, 2); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.ledger.Status(ctx, "cut"); st.State != RunActive || !st.Receiving {
		t.Fatalf("keys pending, intake open: %+v; want active, receiving", st)
	}
	if _, err := e.ledger.RecordSuccess(ctx, "cut", id, 2, 1, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	st, err := e.ledger.Status(ctx, "cut")
	if err != nil || st.State != RunActive || !st.Receiving || st.PendingKeys != 0 || !st.FinishedAt.IsZero() {
		t.Fatalf("every batch done, intake open and renewed: %+v %v; want active, receiving, not finished", st, err)
	}
	// Its producer gone: once the lease lapses the run reads as incomplete.
	lapsed := e.ledger.WithClock(func() time.Time { return time.Now().Add(IntakeLease + time.Second) })
	if st, err = lapsed.Status(ctx, "cut"); err != nil || st.State != RunIncomplete || st.Receiving || !st.FinishedAt.IsZero() {
		t.Fatalf("every batch done, intake lapsed: %+v %v; want incomplete, not finished", st, err)
	}
	// A renewal moves the lease on from the renewing producer's now.
	if err := lapsed.RenewIntake(ctx, "cut"); err != nil {
		t.Fatal(err)
	}
	if st, _ = lapsed.Status(ctx, "cut"); st.State != RunActive || !st.Receiving {
		t.Fatalf("renewed: %+v; want active, receiving", st)
	}
	later := e.ledger.WithClock(func() time.Time { return time.Now().Add(48 * time.Hour) })
	if st, _ = later.Status(ctx, "cut"); st.State != RunIncomplete {
		t.Fatalf("two days on: %+v; want incomplete", st)
	}
	if res, err := later.Prune(ctx, PruneOptions{OlderThan: time.Hour}); err != nil || len(res.Runs) != 0 {
		t.Fatalf("Prune removed an incomplete run: %+v %v", res, err)
	}
	if err := e.ledger.RecordIntake(ctx, meta, 0, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ = e.ledger.Status(ctx, "cut"); st.State != RunDone || st.FinishedAt.IsZero() {
		t.Fatalf("sealed: %+v; want done, finished", st)
	}
	// A late renewal of a sealed intake changes nothing.
	if err := e.ledger.RenewIntake(ctx, "cut"); err != nil {
		t.Fatal(err)
	}
	if st, _ = e.ledger.Status(ctx, "cut"); st.State != RunDone || st.Receiving {
		t.Fatalf("renewed after the seal: %+v; want done", st)
	}
}
