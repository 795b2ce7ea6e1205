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
	state, err := h.ledger.markSplit(context.WithoutCancel(ctx), b.Run, tc.id, h.now().UTC())
	if err != nil {
		return fmt.Errorf("ledger: mark split: %w", err)
	}
	if state == splitApplied {
		h.cfg.Metrics.split()
	}
	if fin, err := h.finished(ctx, log, tc, b, state); fin {
		log.Warn().Str("state", state).Msg("batch finished meanwhile; its halves are not enqueued")
		return err
	}
	return h.enqueueChildren(ctx, tc, b)
}

// halves splits keys into two non-empty halves (the first one larger when odd).
func halves(keys []string) [2][]string {
	m := (len(keys) + 1) / 2
	return [2][]string{keys[:m], keys[m:]}
}

func (h *Handler) enqueueChildren(ctx context.Context, tc taskCtx, b Batch) error {
	hs, err := halfTasks(b, tc.id, tc.queue, tc.maxRetry, h.cfg.ChildOptions)
	if err != nil {
		return err
	}
	_, err = enqueueHalves(context.WithoutCancel(ctx), h.client, hs)
	return err
}

// half is one half of a split batch, ready to enqueue.
type half struct {
	id   string
	task *asynq.Task
}

// halfTasks returns the halves of batch b, whose task ID is id: in queue, with the parent's
// retry budget (maxRetry; math.MaxInt leaves asynq's default), then opts.
func halfTasks(b Batch, id, queue string, maxRetry int, opts []asynq.Option) ([]half, error) {
	var out []half
	for i, keys := range halves(b.Keys) {
		if len(keys) == 0 {
			continue
		}
		c := Batch{Run: b.Run, ErpConnectionID: b.ErpConnectionID, ActorType: b.ActorType, Keys: keys,
			Seq: b.Seq, Source: b.Source, Parent: id, Depth: b.Depth + 1}
		all := []asynq.Option{asynq.Queue(queue)}
		if maxRetry != math.MaxInt {
			all = append(all, asynq.MaxRetry(maxRetry))
		}
		task, err := newResyncTask(c, childID(id, i), append(all, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("split: %w", err)
		}
		out = append(out, half{childID(id, i), task})
	}
	return out, nil
}

// enqueueHalves enqueues hs; a half already in asynq (ErrTaskIDConflict) is not enqueued
// twice. It returns how many it enqueued.
func enqueueHalves(ctx context.Context, client *asynq.Client, hs []half) (int, error) {
	n := 0
	for _, h := range hs {
		_, err := client.EnqueueContext(ctx, h.task)
		switch {
		case err == nil:
			n++
		case !errors.Is(err, asynq.ErrTaskIDConflict):
			return n, fmt.Errorf("split: enqueue half %s: %w", h.id, err)
		}
	}
	return n, nil
}

// relay hands a held batch on as fresh tasks when asynq would archive it (its last attempt):
// it is marked split and its halves are enqueued, due after wait, each with a full retry
// budget. A batch finished meanwhile is left as it is.
func (h *Handler) relay(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, wait time.Duration) error {
	state, err := h.ledger.markSplit(context.WithoutCancel(ctx), b.Run, tc.id, h.now().UTC())
	if err != nil {
		return fmt.Errorf("ledger: mark relayed: %w", err)
	}
	if fin, err := h.finished(ctx, log, tc, b, state); fin {
		return err
	}
	opts := append(append([]asynq.Option{}, h.cfg.ChildOptions...), asynq.ProcessIn(wait))
	hs, err := halfTasks(b, tc.id, tc.queue, tc.maxRetry, opts)
	if err != nil {
		return err
	}
	_, err = enqueueHalves(context.WithoutCancel(ctx), h.client, hs)
	return err
}
