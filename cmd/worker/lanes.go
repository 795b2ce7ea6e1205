package main

import (
	"context"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/tasks"
)

// lanesTaskCheck is how long an idle asynq processor sleeps before it looks for tasks again
// in a fleet with a tenants file: a fifth of asynq's default second. It costs each worker five
// dequeue scripts a second per served queue while idle.
const lanesTaskCheck = 200 * time.Millisecond

// newLanes makes the worker's dispatcher of the tenants' lanes (package internal/lanes):
// it feeds the bulk queues from every tenant's lane in turn, round-robin over the tenants that
// may call now, and keeps the queues short (twice this worker's slots), so a tenant's backlog
// never sits in front of another tenant's run and a tenant that is throttled, paused (its
// breaker open, or SuperOffice saying it is not running) or at its cap is skipped instead of
// taking a slot. Every worker runs one; they share their state
// in Redis. The implicit tenant's batches do not go through lanes.
// Run starts with the background loops (runLanes).
func (a *app) newLanes() error {
	f := a.deps.Tenants
	if f == nil {
		return nil
	}
	queues := make([]string, 0, len(a.cfg.Queues))
	for q := range a.cfg.Queues {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	q, err := lanes.New(lanes.Config{
		Redis:       a.rdb,
		Queues:      queues,
		LowWater:    2 * a.cfg.Concurrency,
		ValidTenant: tasks.ValidateTenantID,
		Known:       func(id string) bool { return f.get(id) != nil },
		// A tenant's rate limit spaces its batches (Spacing); Ready holds back the paused,
		// the cooling down and those whose breaker is open.
		Ready: func(ctx context.Context, id string) time.Duration {
			t := f.get(id)
			if t == nil {
				return 0
			}
			var wait time.Duration
			if t.State != nil { // SuperOffice says the tenant is not running
				wait = t.State.Ready(ctx)
			}
			if t.Flow != nil && wait == 0 {
				wait = t.Flow.Blocked(ctx)
			}
			return wait
		},
		Spacing: func(ctx context.Context, id string) time.Duration {
			if t := f.get(id); t != nil && t.Flow != nil {
				return t.Flow.Pace(ctx)
			}
			return 0
		},
		MakeUp: func(ctx context.Context, id string) time.Duration {
			if t := f.get(id); t != nil && t.Flow != nil {
				return t.Flow.Tolerance(ctx)
			}
			return 0
		},
		MaxInFlight: func(id string) int {
			if t := f.get(id); t != nil {
				return t.Spec.MaxConcurrency
			}
			return 0
		},
		OnError: func(err error) {
			// In a Redis outage the dispatcher's errors join the outage's one line.
			if !a.deps.RedisOutage.holdBack("lanes", err.Error()) {
				a.deps.Logger.Warn().Err(err).Msg("lanes")
			}
		},
	})
	if err != nil {
		return err
	}
	a.lanes = q
	f.setWaker(func(id string) {
		if err := q.Wake(context.Background(), id); err != nil {
			a.deps.Logger.Warn().Err(err).Str("tenant", id).Msg("lanes: wake")
		}
	})
	f.onChange(func() {
		for _, id := range f.ids() {
			f.wake(id) // a held lane of a tenant back in the file
		}
	})
	return nil
}

// runLanes runs the dispatcher until ctx ends.
func (a *app) runLanes(ctx context.Context) {
	if a.lanes == nil {
		return
	}
	a.goLoop(func() {
		if err := a.lanes.Run(ctx); err != nil && ctx.Err() == nil {
			a.deps.Logger.Error().Err(err).Msg("lanes: dispatcher stopped; tenants' batches wait in their lanes until the worker restarts")
		}
	})
}

// laneDone wraps tenant id's handler so that the end of each task (done, held or failed)
// frees its place among the tenant's dispatched batches (lanes.Config.MaxInFlight).
func (a *app) laneDone(id string, h asynq.Handler) asynq.Handler {
	if a.lanes == nil || id == "" {
		return h
	}
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := h.ProcessTask(ctx, t)
		if tid, ok := asynq.GetTaskID(ctx); ok {
			if derr := a.lanes.Done(context.WithoutCancel(ctx), id, tid); derr != nil {
				a.deps.Logger.Warn().Err(derr).Str("tenant", id).Msg("lanes: done")
			}
		}
		return err
	})
}
