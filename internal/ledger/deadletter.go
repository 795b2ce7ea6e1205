package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/tasks"
)

// DeadFilter selects dead letters for Requeue and PurgeDead. Run "" selects every run, but
// only with All set, so that a forgotten flag never acts on everything.
type DeadFilter struct {
	Run string
	// ErrorCode, when set, selects only dead letters with this ErrorCode.
	ErrorCode string
	// Class, when set, selects only dead letters of this class ("business", "permanent", ...).
	Class string
	// Key, when set, selects only dead letters of this ERP external key (exactly as handed over).
	Key string
	// All must be true when Run is "".
	All bool
}

func (f DeadFilter) validate() error {
	if f.Run == "" && !f.All {
		return errors.New("ledger: no run given; set All to act on the dead letters of every run")
	}
	if f.Class != "" {
		if _, err := tasks.ParseClass(f.Class); err != nil {
			return fmt.Errorf("ledger: dead letter filter: %w", err)
		}
	}
	return nil
}

func (f DeadFilter) match(d tasks.DeadLetter) bool {
	return (f.ErrorCode == "" || d.ErrorCode == f.ErrorCode) && (f.Class == "" || d.Class == f.Class) &&
		(f.Key == "" || d.Key == f.Key)
}

// SelectDead returns the dead letters f selects, oldest first: "what happened to ERP key X"
// is SelectDead(ctx, DeadFilter{Key: "X", All: true}).
func (l *Ledger) SelectDead(ctx context.Context, f DeadFilter) ([]tasks.DeadLetter, error) {
	runs, err := l.filterRuns(ctx, f)
	if err != nil {
		return nil, err
	}
	var out []tasks.DeadLetter
	for _, r := range runs {
		dls, err := l.selectDead(ctx, r, f)
		if err != nil {
			return nil, err
		}
		out = append(out, dls...)
	}
	sortDead(out)
	return out, nil
}

func (l *Ledger) filterRuns(ctx context.Context, f DeadFilter) ([]string, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if f.Run != "" {
		return []string{f.Run}, nil
	}
	return l.runNames(ctx, 0)
}

func (l *Ledger) selectDead(ctx context.Context, run string, f DeadFilter) ([]tasks.DeadLetter, error) {
	all, err := l.deadLetters(ctx, run)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, d := range all {
		if f.match(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// RequeueResult reports what Requeue did.
type RequeueResult struct {
	Keys     int      `json:"keys"`     // keys moved from dead back to pending
	Batches  []string `json:"batches"`  // task IDs of the batches enqueued
	Archived int      `json:"archived"` // asynq archived tasks deleted
}

// PurgeResult reports what PurgeDead did.
type PurgeResult struct {
	Keys     int `json:"keys"`     // dead letters removed from the ledger
	Archived int `json:"archived"` // asynq archived tasks deleted
}

// outboxEntry is a requeued batch waiting to be enqueued.
type outboxEntry struct {
	Batch tasks.Batch `json:"batch"`
	Queue string      `json:"queue,omitempty"`
}

// Requeue moves the dead letters selected by f back to pending and enqueues their keys as
// fresh batches of at most DefaultBatchSize keys, each in the queue its dead letter's batch
// ran in (DeadLetter.QueueName), with task IDs "RUN:r<nonce>.N", Source "requeue" and opts
// applied after the defaults of NewResyncTask; opts may not name a queue (asynq.Queue is
// refused), so that a run's keys never go to workers other than the run's own.
// The move is one Lua script per run (all or nothing, retried when a concurrent Requeue or
// PurgeDead got there first); the batches are written to the run's outbox in the same
// script and removed from it once enqueued, so a Requeue interrupted between the two is
// finished by the next Requeue of that run. When insp is not nil, the dead batches'
// archived asynq tasks are deleted.
func (l *Ledger) Requeue(ctx context.Context, client *asynq.Client, insp *asynq.Inspector, f DeadFilter, opts ...asynq.Option) (RequeueResult, error) {
	var res RequeueResult
	if client == nil {
		return res, errors.New("ledger: requeue needs an asynq client")
	}
	for _, o := range opts {
		if o.Type() == asynq.QueueOpt {
			return res, errors.New("ledger: requeue: asynq.Queue is not an option: a requeued batch goes back to the queue its dead letter ran in")
		}
	}
	runs, err := l.filterRuns(ctx, f)
	if err != nil {
		return res, err
	}
	for _, run := range runs {
		ids, err := l.flushOutbox(ctx, client, run, opts)
		res.Batches = append(res.Batches, ids...)
		if err != nil {
			return res, err
		}
		var moved []tasks.DeadLetter
		for try := 0; ; try++ {
			dls, err := l.selectDead(ctx, run, f)
			if err != nil {
				return res, err
			}
			if len(dls) == 0 {
				break
			}
			n, err := l.moveToOutbox(ctx, run, dls)
			if err != nil {
				return res, err
			}
			if n >= 0 {
				moved = dls
				res.Keys += n
				break
			}
			if try == 5 {
				return res, fmt.Errorf("ledger: requeue %s: dead letters keep changing under us; try again", run)
			}
		}
		ids, err = l.flushOutbox(ctx, client, run, opts)
		res.Batches = append(res.Batches, ids...)
		if err != nil {
			return res, err
		}
		n, err := deleteArchived(insp, moved)
		res.Archived += n
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// moveToOutbox runs requeueScript for dls; it returns -1 when a dead letter was gone.
func (l *Ledger) moveToOutbox(ctx context.Context, run string, dls []tasks.DeadLetter) (int, error) {
	k := l.keys(run)
	entries := packRequeue(l.tenant, run, dls)
	args := make([]any, 0, 2+len(dls)+2*len(entries))
	args = append(args, ms(l.now()), len(dls))
	for _, d := range dls {
		args = append(args, deadField(d.BatchID, d.Key))
	}
	for i, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			return 0, err
		}
		args = append(args, e.Batch.RunKey()+":r"+tasks.Nonce()+"."+fmt.Sprint(i), string(b))
	}
	n, err := requeueScript.Run(ctx, l.rdb, []string{k.meta, k.batches, k.dead, k.outbox}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("ledger: requeue %s: %w", run, err)
	}
	return n, nil
}

// packRequeue groups dead letters into batches of at most DefaultBatchSize keys per queue,
// connection and actor type, never putting one key twice in a batch.
func packRequeue(tenant, run string, dls []tasks.DeadLetter) []outboxEntry {
	type group struct {
		queue string
		conn  int
		actor erpsync.ActorType
	}
	var out []outboxEntry
	open := map[group][]int{} // indexes into out
	for _, d := range dls {
		g := group{d.QueueName(), d.ErpConnectionID, d.ActorType}
		placed := false
		for _, i := range open[g] {
			b := &out[i].Batch
			if len(b.Keys) >= tasks.DefaultBatchSize || contains(b.Keys, d.Key) {
				continue
			}
			b.Keys = append(b.Keys, d.Key)
			placed = true
			break
		}
		if !placed {
			out = append(out, outboxEntry{Queue: d.QueueName(), Batch: tasks.Batch{Tenant: tenant, Run: run, ErpConnectionID: d.ErpConnectionID,
				ActorType: d.ActorType, Keys: []string{d.Key}, Source: "requeue"}})
			open[g] = append(open[g], len(out)-1)
		}
	}
	return out
}

func contains(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// flushOutbox enqueues the run's requeued batches not yet enqueued and removes them from
// the outbox; a batch already in asynq (ErrTaskIDConflict) counts as enqueued.
func (l *Ledger) flushOutbox(ctx context.Context, client *asynq.Client, run string, opts []asynq.Option) ([]string, error) {
	k := l.keys(run).outbox
	entries, err := l.rdb.HGetAll(ctx, k).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: outbox of %s: %w", run, err)
	}
	var ids []string
	for id, v := range entries {
		var e outboxEntry
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return ids, fmt.Errorf("ledger: outbox entry %s: %w", id, err)
		}
		var all []asynq.Option
		if e.Queue != "" {
			all = append(all, asynq.Queue(e.Queue))
		}
		t, err := tasks.NewResyncTaskID(e.Batch, id, append(all, opts...)...)
		if err != nil {
			return ids, fmt.Errorf("ledger: requeue batch %s: %w", id, err)
		}
		if _, err := client.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return ids, fmt.Errorf("ledger: enqueue requeued batch %s (its keys are pending; requeue the run's dead letters again to retry: enqueue dead requeue): %w", id, err)
		}
		if err := l.rdb.HDel(ctx, k, id).Err(); err != nil {
			return ids, fmt.Errorf("ledger: outbox of %s: %w", run, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// deleteArchived deletes the archived asynq tasks of the dead letters' batches; tasks in
// another state or already gone are left alone.
func deleteArchived(insp *asynq.Inspector, dls []tasks.DeadLetter) (int, error) {
	if insp == nil {
		return 0, nil
	}
	type qid struct{ queue, id string }
	seen := map[qid]bool{}
	n := 0
	for _, d := range dls {
		k := qid{d.QueueName(), d.BatchID}
		if seen[k] {
			continue
		}
		seen[k] = true
		info, err := insp.GetTaskInfo(k.queue, k.id)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("asynq: task %s: %w", k.id, err)
		}
		if info.State != asynq.TaskStateArchived {
			continue
		}
		if err := insp.DeleteTask(k.queue, k.id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return n, fmt.Errorf("asynq: delete archived task %s: %w", k.id, err)
		}
		n++
	}
	return n, nil
}

// PurgeDead removes the dead letters selected by f from the ledger — the run's DeadKeys
// count stays, since those keys were never resynced — and, when insp is not nil, deletes
// the matching archived asynq tasks.
func (l *Ledger) PurgeDead(ctx context.Context, insp *asynq.Inspector, f DeadFilter) (PurgeResult, error) {
	var res PurgeResult
	runs, err := l.filterRuns(ctx, f)
	if err != nil {
		return res, err
	}
	for _, run := range runs {
		dls, err := l.selectDead(ctx, run, f)
		if err != nil || len(dls) == 0 {
			if err != nil {
				return res, err
			}
			continue
		}
		fields := make([]string, len(dls))
		for i, d := range dls {
			fields[i] = deadField(d.BatchID, d.Key)
		}
		n, err := l.rdb.HDel(ctx, l.keys(run).dead, fields...).Result()
		if err != nil {
			return res, fmt.Errorf("ledger: purge %s: %w", run, err)
		}
		res.Keys += int(n)
		a, err := deleteArchived(insp, dls)
		res.Archived += a
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// archivePage is how many archived tasks ReconcileArchived reads per call.
const archivePage = 500

// ReconcileArchived records as dead every archived TypeResync task (and TypeTrickle task
// handled alone) in queues (none: DefaultQueue) whose batch the ledger has not finished (not
// done, split or dead): the tasks asynq archived without the handler recording them — its
// recoverer archives a task whose lease expired after a crash (kill -9) when its retries are
// used up, and its processor archives a task that timed out on its last attempt. For an
// archived batch the ledger has marked split, it enqueues the halves that are neither in asynq
// nor finished in the ledger (the handler died between marking the split and enqueueing them,
// on the last attempt), with the parent's queue and retry budget. Idempotent per batch; the
// worker runs it periodically. It returns how many batches it dead-lettered or enqueued halves
// for.
func (l *Ledger) ReconcileArchived(ctx context.Context, insp *asynq.Inspector, queues ...string) (int, error) {
	if len(queues) == 0 {
		queues = []string{tasks.DefaultQueue}
	}
	client := asynq.NewClientFromRedisClient(l.rdb) // shares l.rdb; nothing to close
	total := 0
	for _, q := range queues {
		for page := 1; ; page++ {
			tasks, err := insp.ListArchivedTasks(q, asynq.PageSize(archivePage), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return total, fmt.Errorf("asynq: archived tasks of %s: %w", q, err)
			}
			for _, t := range tasks {
				n, err := l.reconcile(ctx, client, t)
				total += n
				if err != nil {
					return total, err
				}
			}
			if len(tasks) < archivePage {
				break
			}
		}
	}
	return total, nil
}

// BatchOf is the batch an asynq task (or a lane's job) of type typ with payload carries: a
// TypeResync batch, or the one-key batch of a TypeTrickle task handled alone (the trickle run
// of its day). ok is false when it carries nothing the ledger could record: another type, an
// unreadable payload, no run, no keys or a tenant that is none.
func BatchOf(typ string, payload []byte) (b tasks.Batch, ok bool) {
	switch typ {
	case tasks.TypeResync:
		if json.Unmarshal(payload, &b) != nil {
			return b, false
		}
	case tasks.TypeTrickle:
		var tr tasks.Trickle
		if json.Unmarshal(payload, &tr) != nil || tr.At.IsZero() {
			return b, false // no day to find its run by (NewTrickleTask always sets one)
		}
		b = tr.Batch(tr.At)
	default:
		return b, false
	}
	if tasks.ValidateBatchRun(b.Run) != nil || len(b.Keys) == 0 || b.Tenant != "" && tasks.ValidateTenantID(b.Tenant) != nil {
		return b, false
	}
	return b, true
}

func (l *Ledger) reconcile(ctx context.Context, client *asynq.Client, t *asynq.TaskInfo) (int, error) {
	b, ok := BatchOf(t.Type, t.Payload)
	if !ok {
		return 0, nil // nothing the ledger could record
	}
	l = l.Tenant(b.Tenant) // the batch's own tenant, whichever Ledger runs the reconciliation
	st, err := l.batchState(ctx, b.Run, t.ID)
	if err != nil {
		return 0, fmt.Errorf("ledger: batch state: %w", err)
	}
	switch st {
	case stateSplit:
		return l.reconcileSplit(ctx, client, t, b)
	case stateDone, stateDead:
		return 0, nil
	case "":
		// A batch of a run Prune removed: whatever the ledger had recorded went with it.
		if n, err := l.rdb.Exists(ctx, l.keys(b.Run).pruned).Result(); err != nil {
			return 0, fmt.Errorf("ledger: pruned marker: %w", err)
		} else if n == 1 {
			return 0, nil
		}
	}
	lastErr := t.LastErr
	if lastErr == "" {
		lastErr = "none recorded"
	}
	cause := fmt.Errorf("archived by asynq with no dead-letter record (last error: %s)", lastErr)
	attempts := t.Retried + 1
	at := t.LastFailedAt
	if at.IsZero() {
		at = l.now()
	}
	applied, err := l.deadBatch(ctx, b, t.ID, tasks.DeadLetter{Queue: t.Queue, Class: tasks.ClassTransient.String(),
		TechExplanation: erpsync.Truncate(lastErr, 1000), Reason: tasks.DeadReason(tasks.ClassTransient, cause, attempts, len(b.Keys)),
		Attempts: attempts, At: at.UTC()})
	if err != nil {
		return 0, fmt.Errorf("ledger: record archived batch %s: %w", t.ID, err)
	}
	if applied {
		return 1, nil
	}
	return 0, nil
}

// deadBatch records every key of batch b (task id) as a dead letter with the fields of like
// (its Queue, Class, ErrorCode, explanations, Reason, Attempts, At); a producer's batch (no
// parent) is registered first, so that a batch the ledger never saw counts in its run's total
// and the run ends visibly. False if the batch was finished already.
func (l *Ledger) deadBatch(ctx context.Context, b tasks.Batch, id string, like tasks.DeadLetter) (bool, error) {
	if b.Parent == "" {
		meta := RunMeta{Run: b.Run, ErpConnectionID: b.ErpConnectionID, ActorType: b.ActorType, Source: b.Source}
		if _, err := l.RegisterBatch(ctx, meta, id, len(b.Keys)); err != nil {
			return false, err
		}
	}
	dls := make([]tasks.DeadLetter, len(b.Keys))
	for i, k := range b.Keys {
		dls[i] = like
		dls[i].Run, dls[i].Key, dls[i].BatchID = b.Run, k, id
		dls[i].ErpConnectionID, dls[i].ActorType = b.ErpConnectionID, b.ActorType
	}
	return l.RecordDead(ctx, b.Run, id, dls, l.now())
}

// reconcileSplit enqueues the halves of the archived split batch b that the ledger has not
// finished; halves still in asynq are not enqueued twice. It returns 1 if it enqueued any.
func (l *Ledger) reconcileSplit(ctx context.Context, client *asynq.Client, t *asynq.TaskInfo, b tasks.Batch) (int, error) {
	hs, err := tasks.HalfTasks(b, t.ID, t.Queue, t.MaxRetry, nil)
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	states, err := l.rdb.HMGet(ctx, l.keys(b.Run).batches, ids...).Result()
	if err != nil {
		return 0, fmt.Errorf("ledger: halves of %s: %w", t.ID, err)
	}
	open := hs[:0]
	for i, h := range hs {
		if st, _ := states[i].(string); st != stateDone && st != stateSplit && st != stateDead {
			open = append(open, h)
		}
	}
	n, err := tasks.EnqueueHalves(ctx, client, open)
	if err != nil {
		return 0, fmt.Errorf("ledger: archived split batch %s: %w", t.ID, err)
	}
	return min(n, 1), nil
}
