package lanes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// maxTurn bounds how long a tenant's turn stays leased to a dispatcher that took it (see
// pickScript): one killed while looking at a tenant delays that tenant by at most this.
const maxTurn = 10 * time.Second

// settle bounds the bookkeeping after asynq accepted a job, which runs even when Run's
// context has just been cancelled, so a shutdown does not leave the job to its lease.
const settle = 5 * time.Second

// errBackoff is the first and longest pause after an error Run survives.
const (
	errBackoffMin = 100 * time.Millisecond
	errBackoffMax = 5 * time.Second
)

// Run dispatches jobs from the lanes into asynq until ctx ends, then returns nil. Every
// worker runs one; they cooperate through Redis. Errors (Redis or asynq unreachable) go to
// Config.OnError and Run pauses, 100 ms doubling up to 5 s, and goes on.
//
// Each round: while asynq's pending count (summed over Config.Queues) is under
// Config.LowWater, take the tenant due longest, and if it is known, ready and under its cap,
// hand its next job to asynq and put the tenant at the back of the line; otherwise put it
// off until it may go. With no tenant due, block on the wake-up list until the next is due
// (Config.MaxIdle at most).
func (q *Queue) Run(ctx context.Context) error {
	budget := 0
	backoff := errBackoffMin
	for ctx.Err() == nil {
		n, err := q.round(ctx, &budget)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			q.report(err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, errBackoffMax)
			budget = 0
			continue
		}
		backoff = errBackoffMin
		budget -= n
	}
	return nil
}

// round does one step of Run and returns how many jobs it handed to asynq. budget is how
// many more asynq may take before its pending counts are read again.
func (q *Queue) round(ctx context.Context, budget *int) (int, error) {
	if *budget <= 0 {
		pending, err := q.pending(ctx)
		if err != nil {
			return 0, err
		}
		if *budget = q.cfg.LowWater - pending; *budget <= 0 {
			sleep(ctx, q.cfg.PollInterval)
			return 0, nil
		}
	}
	tenant, late, wait, err := q.pick(ctx)
	if err != nil {
		return 0, err
	}
	if wait != 0 {
		*budget = 0 // asynq will have moved on by the time there is work again
		return 0, q.idle(ctx, wait)
	}
	return q.turn(ctx, tenant, late)
}

// pending sums asynq's pending lists of the queues the dispatcher feeds, in one round trip.
func (q *Queue) pending(ctx context.Context) (int, error) {
	pipe := q.cfg.Redis.Pipeline()
	cmds := make([]*redis.IntCmd, len(q.cfg.Queues))
	for i, name := range q.cfg.Queues {
		cmds[i] = pipe.LLen(ctx, asynqPendingKey(name))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("lanes: read asynq pending counts: %w", err)
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n, nil
}

// pick takes the turn of the tenant due longest, and says how late the turn is. With none
// due it returns wait: how long until the next is due, or -1 when no tenant has work.
func (q *Queue) pick(ctx context.Context) (tenant string, late, wait time.Duration, err error) {
	turn := min(q.cfg.Lease, maxTurn)
	v, err := pickScript.Run(ctx, q.cfg.Redis, []string{q.dueKey()}, micros(turn)).Slice()
	if err != nil || len(v) < 2 {
		return "", 0, 0, fmt.Errorf("lanes: pick a tenant: %w", errors.Join(err, errShape(len(v), 2)))
	}
	if v[0].(int64) == 1 {
		if len(v) > 2 {
			late = time.Duration(v[2].(int64)) * time.Microsecond
		}
		return v[1].(string), late, 0, nil
	}
	us := v[1].(int64)
	if us < 0 {
		return "", 0, -1, nil
	}
	return "", 0, max(time.Duration(us)*time.Microsecond, time.Microsecond), nil
}

// idle waits until wait has passed (-1: MaxIdle), or an Enqueue wakes it, or ctx ends.
// go-redis's blocking pop counts whole seconds, so a shorter wait is a plain sleep. go-redis
// does not interrupt a blocking pop when its context ends, so the pop runs on its own and
// idle returns at once when ctx ends; the pop ends by its timeout.
func (q *Queue) idle(ctx context.Context, wait time.Duration) error {
	if wait < 0 || wait > q.cfg.MaxIdle {
		wait = q.cfg.MaxIdle
	}
	if wait < time.Second {
		sleep(ctx, wait)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- q.cfg.Redis.BLPop(ctx, wait.Truncate(time.Second), q.wakeKey()).Err() }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		if err != nil && !errors.Is(err, redis.Nil) && ctx.Err() == nil {
			return fmt.Errorf("lanes: wait for work: %w", err)
		}
		return nil
	}
}

// turn looks at tenant, whose turn pick gave this dispatcher: hands its next job to asynq
// when it may go and reschedules it. It returns how many jobs it handed over (0 or 1).
func (q *Queue) turn(ctx context.Context, tenant string, late time.Duration) (int, error) {
	began := time.Now()
	if q.cfg.Known != nil && !q.cfg.Known(tenant) {
		return 0, q.hold(ctx, tenant)
	}
	if q.cfg.Ready != nil {
		if d := q.cfg.Ready(ctx, tenant); d > 0 {
			return 0, q.schedule(ctx, tenant, d)
		}
	}
	limit := 0
	if q.cfg.MaxInFlight != nil {
		limit = max(q.cfg.MaxInFlight(tenant), 0)
	}
	k := q.tenantKeys(tenant)
	v, err := takeScript.Run(ctx, q.cfg.Redis, []string{k.lane, k.jobs, k.leased, k.inflight},
		micros(q.cfg.Lease), micros(q.cfg.InFlightLease), limit).Slice()
	if err != nil || len(v) == 0 {
		return 0, fmt.Errorf("lanes: take a job of tenant %q: %w", tenant, errors.Join(err, errShape(len(v), 1)))
	}
	switch v[0].(string) {
	case "capped":
		return 0, q.atCap(ctx, tenant, limit)
	case "empty":
		return 0, q.drained(ctx, tenant, v[1].(int64))
	}
	return q.handOver(ctx, tenant, v[1].(string), v[2].(string), began, late)
}

// handOver enqueues a leased job into asynq, then drops it from the lane and puts the
// tenant at the back of the line (for a spaced tenant, Spacing after the turn began). asynq's ErrTaskIDConflict means asynq has it already (a
// dispatcher before this one enqueued it and died, or a producer's duplicate).
func (q *Queue) handOver(ctx context.Context, tenant, id, enc string, began time.Time, late time.Duration) (int, error) {
	job, err := decodeJob(id, enc)
	if err != nil {
		// Left leased: taken again after every lease and reported each time, never lost.
		return 0, errors.Join(err, q.schedule(ctx, tenant, 0))
	}
	task, opts := job.task(q.cfg.Lease)
	if _, err := q.client.EnqueueContext(ctx, task, opts...); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		// Left leased, so taken again after the lease; the tenant keeps its place in line.
		return 0, errors.Join(fmt.Errorf("lanes: hand job %q of tenant %q to asynq: %w", id, tenant, err), q.schedule(ctx, tenant, 0))
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settle)
	defer cancel()
	k := q.tenantKeys(tenant)
	if err := commitScript.Run(sctx, q.cfg.Redis, []string{k.jobs, k.leased}, id).Err(); err != nil {
		return 1, fmt.Errorf("lanes: job %q of tenant %q is in asynq, but stays leased in the lane: %w", id, tenant, err)
	}
	var next time.Duration
	if q.cfg.Spacing != nil {
		// Spaced from the turn's start, less the part of its lateness MakeUp allows.
		var credit time.Duration
		if q.cfg.MakeUp != nil {
			credit = min(late, q.cfg.MakeUp(sctx, tenant))
		}
		next = max(q.cfg.Spacing(sctx, tenant)-time.Since(began)-credit, 0)
	}
	return 1, q.schedule(sctx, tenant, next)
}

// atCap puts off a tenant at its cap until Done wakes it (CapRecheck at most, for in-flight
// leases that end without Done). The mark is set after the tenant is put off and the count
// read again after the mark, so a Done in between cannot be missed.
func (q *Queue) atCap(ctx context.Context, tenant string, limit int) error {
	if err := q.schedule(ctx, tenant, q.cfg.CapRecheck); err != nil {
		return err
	}
	k := q.tenantKeys(tenant)
	free, err := armScript.Run(ctx, q.cfg.Redis, []string{k.inflight, k.capped}, limit).Int()
	if err != nil {
		return fmt.Errorf("lanes: mark tenant %q at its cap: %w", tenant, err)
	}
	if free == 1 {
		return q.schedule(ctx, tenant, 0)
	}
	return nil
}

// hold puts off an unknown tenant by HoldRecheck while its lane has jobs; one without jobs
// (purged) leaves the schedule.
func (q *Queue) hold(ctx context.Context, tenant string) error {
	k := q.tenantKeys(tenant)
	n, err := q.cfg.Redis.HLen(ctx, k.jobs).Result()
	if err != nil {
		return fmt.Errorf("lanes: look at tenant %q's lane: %w", tenant, err)
	}
	if n == 0 {
		return q.drained(ctx, tenant, -1)
	}
	return q.schedule(ctx, tenant, q.cfg.HoldRecheck)
}

// drained handles a tenant whose take found nothing. With jobs still leased (leaseUS >= 0
// µs until the first lease ends) it looks again then. Otherwise the tenant leaves the
// schedule, and the lane is read again afterwards: an Enqueue that stored jobs before that
// read is seen here, and one after it finds the tenant gone and adds it back itself.
func (q *Queue) drained(ctx context.Context, tenant string, leaseUS int64) error {
	if leaseUS >= 0 {
		return q.schedule(ctx, tenant, time.Duration(leaseUS)*time.Microsecond)
	}
	if err := q.cfg.Redis.ZRem(ctx, q.dueKey(), tenant).Err(); err != nil {
		return fmt.Errorf("lanes: drop tenant %q from the schedule: %w", tenant, err)
	}
	k := q.tenantKeys(tenant)
	us, err := workScript.Run(ctx, q.cfg.Redis, []string{k.lane, k.leased}).Int64()
	if err != nil {
		return fmt.Errorf("lanes: look at tenant %q's lane: %w", tenant, err)
	}
	if us >= 0 {
		return q.schedule(ctx, tenant, time.Duration(us)*time.Microsecond)
	}
	return nil
}

// schedule sets when tenant is looked at next: d from now (0: at the back of the line).
func (q *Queue) schedule(ctx context.Context, tenant string, d time.Duration) error {
	if err := scheduleScript.Run(ctx, q.cfg.Redis, []string{q.dueKey(), q.wakeKey()}, tenant, micros(d), "set").Err(); err != nil {
		return fmt.Errorf("lanes: schedule tenant %q: %w", tenant, err)
	}
	return nil
}

func (q *Queue) report(err error) {
	if q.cfg.OnError != nil {
		q.cfg.OnError(err)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
