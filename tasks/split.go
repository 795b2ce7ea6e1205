package tasks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
)

// Splitting a refused batch into halves, shared by the handler and by Ledger.reconcile,
// which re-enqueues halves a crash lost.

// split marks the batch split and enqueues its halves. A batch finished meanwhile (another
// run of the task, or ReconcileArchived after asynq gave up on a timed-out attempt) has its
// keys counted already: its halves must not run.
func (h *Handler) split(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch) error {
	state, err := h.ledger.MarkSplit(context.WithoutCancel(ctx), b.Run, tc.id, h.now().UTC())
	if err != nil {
		return fmt.Errorf("ledger: mark split: %w", err)
	}
	if state == SplitMarked {
		h.cfg.Metrics.split()
	}
	if fin, err := h.finished(ctx, log, tc, b, state); fin {
		log.Warn().Str("state", string(state)).Msg("batch finished meanwhile; its halves are not enqueued")
		return err
	}
	return h.enqueueChildren(ctx, tc, b)
}

// SplitKeys splits keys into two non-empty halves (the first one larger when odd).
func SplitKeys(keys []string) [2][]string {
	m := (len(keys) + 1) / 2
	return [2][]string{keys[:m], keys[m:]}
}

func (h *Handler) enqueueChildren(ctx context.Context, tc taskCtx, b Batch) error {
	hs, err := HalfTasks(b, tc.id, tc.queue, tc.maxRetry, h.cfg.ChildOptions)
	if err != nil {
		return err
	}
	_, err = EnqueueHalves(context.WithoutCancel(ctx), h.client, hs)
	return err
}

// Half is one half of a split batch, ready to enqueue.
type Half struct {
	ID   string
	Task *asynq.Task
}

// HalfTasks returns the halves of batch b, whose task ID is id: in queue, with the parent's
// retry budget (maxRetry; math.MaxInt leaves asynq's default), then opts.
func HalfTasks(b Batch, id, queue string, maxRetry int, opts []asynq.Option) ([]Half, error) {
	var out []Half
	for i, keys := range SplitKeys(b.Keys) {
		if len(keys) == 0 {
			continue
		}
		c := Batch{Tenant: b.Tenant, Run: b.Run, ErpConnectionID: b.ErpConnectionID, ActorType: b.ActorType, Keys: keys,
			Seq: b.Seq, Source: b.Source, Parent: id, Depth: b.Depth + 1}
		all := []asynq.Option{asynq.Queue(queue)}
		if maxRetry != math.MaxInt {
			all = append(all, asynq.MaxRetry(maxRetry))
		}
		task, err := NewResyncTaskID(c, ChildID(id, i), append(all, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("split: %w", err)
		}
		out = append(out, Half{ChildID(id, i), task})
	}
	return out, nil
}

// EnqueueHalves enqueues hs; a half already in asynq (ErrTaskIDConflict) is not enqueued
// twice. It returns how many it enqueued.
func EnqueueHalves(ctx context.Context, client *asynq.Client, hs []Half) (int, error) {
	n := 0
	for _, h := range hs {
		_, err := client.EnqueueContext(ctx, h.Task)
		switch {
		case err == nil:
			n++
		case !errors.Is(err, asynq.ErrTaskIDConflict):
			return n, fmt.Errorf("split: enqueue half %s: %w", h.ID, err)
		}
	}
	return n, nil
}

// relay hands a held batch on as fresh tasks when asynq would archive it (its last attempt):
// it is marked split and its halves are enqueued, due after wait, each with a full retry
// budget. A batch finished meanwhile is left as it is.
func (h *Handler) relay(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, wait time.Duration) error {
	state, err := h.ledger.MarkSplit(context.WithoutCancel(ctx), b.Run, tc.id, h.now().UTC())
	if err != nil {
		return fmt.Errorf("ledger: mark relayed: %w", err)
	}
	if fin, err := h.finished(ctx, log, tc, b, state); fin {
		return err
	}
	opts := append(append([]asynq.Option{}, h.cfg.ChildOptions...), asynq.ProcessIn(wait))
	hs, err := HalfTasks(b, tc.id, tc.queue, tc.maxRetry, opts)
	if err != nil {
		return err
	}
	_, err = EnqueueHalves(context.WithoutCancel(ctx), h.client, hs)
	return err
}
