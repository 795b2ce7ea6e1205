package lanes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// chunk is the most jobs or IDs one script call carries (Lua's unpack has a limit, and a
// bounded call keeps Redis responsive to others); larger batches go as several calls in one
// pipeline.
const chunk = 500

// Queue is the tenants' lanes on one Redis: producers Enqueue, every worker Runs a
// dispatcher, handlers report Done, operators read Stats and Remove. Safe for concurrent use.
type Queue struct {
	cfg    Config
	client *asynq.Client
}

// New returns a Queue on cfg.Redis, or an error naming the Config field that is wrong.
// Close releases its asynq client (not cfg.Redis).
func New(cfg Config) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, client: asynq.NewClientFromRedisClient(cfg.Redis)}, nil
}

// Close releases the Queue's asynq client; cfg.Redis stays open.
func (q *Queue) Close() error { return q.client.Close() }

// Enqueue puts job in tenant's lane. A job whose ID is already in the lane, dispatched and
// not yet Done, or in asynq returns an error wrapping ErrConflict (and so
// asynq.ErrTaskIDConflict).
func (q *Queue) Enqueue(ctx context.Context, tenant string, job Job) error {
	conflicts, err := q.EnqueueMany(ctx, tenant, []Job{job})
	if err != nil {
		return err
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("%w: tenant %q, job %q", ErrConflict, tenant, job.ID)
	}
	return nil
}

// EnqueueMany puts jobs in tenant's lane, in order, in a few round trips whatever their
// number, and returns the IDs it left out because they are already there (see Enqueue). An
// invalid job fails the whole call before anything is stored. A call that fails midway
// (Redis unreachable) may have stored a prefix of the jobs; calling it again is safe.
func (q *Queue) EnqueueMany(ctx context.Context, tenant string, jobs []Job) (conflicts []string, err error) {
	if err := checkTenant(tenant, q.cfg.ValidTenant); err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 2*len(jobs))
	for i, j := range jobs {
		if err := j.check(q.cfg.Queues); err != nil {
			return nil, fmt.Errorf("lanes: jobs[%d]: %w", i, err)
		}
		enc, err := j.encode(q.cfg.Queues)
		if err != nil {
			return nil, fmt.Errorf("lanes: jobs[%d]: %w", i, err)
		}
		args = append(args, j.ID, enc)
	}
	inAsynq, err := q.inAsynq(ctx, jobs)
	if err != nil {
		return nil, err
	}
	conflicts, err = q.store(ctx, tenant, jobs, args, inAsynq)
	if err != nil {
		return conflicts, err
	}
	if err := activateScript.Run(ctx, q.cfg.Redis, []string{q.dueKey(), q.wakeKey()}, tenant).Err(); err != nil {
		return conflicts, fmt.Errorf("lanes: mark tenant %q due: %w", tenant, err)
	}
	return conflicts, nil
}

// inAsynq reports which jobs asynq holds already (by TaskID in their queue), in one pipeline.
func (q *Queue) inAsynq(ctx context.Context, jobs []Job) ([]bool, error) {
	pipe := q.cfg.Redis.Pipeline()
	cmds := make([]*redis.IntCmd, len(jobs))
	for i, j := range jobs {
		cmds[i] = pipe.Exists(ctx, asynqTaskKey(j.queue(q.cfg.Queues), j.ID))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("lanes: look for jobs in asynq: %w", err)
	}
	found := make([]bool, len(jobs))
	for i, c := range cmds {
		found[i] = c.Val() > 0
	}
	return found, nil
}

// store runs enqueueScript over the jobs asynq does not hold, in chunks in one pipeline,
// and returns the IDs of all conflicts.
func (q *Queue) store(ctx context.Context, tenant string, jobs []Job, args []any, inAsynq []bool) ([]string, error) {
	k := q.tenantKeys(tenant)
	var conflicts []string
	var idx []int // positions in jobs of the args sent
	var sent []any
	for i, j := range jobs {
		if inAsynq[i] {
			conflicts = append(conflicts, j.ID)
			continue
		}
		idx = append(idx, i)
		sent = append(sent, args[2*i], args[2*i+1])
	}
	pipe := q.cfg.Redis.Pipeline()
	var cmds []*redis.Cmd
	for lo := 0; lo < len(sent); lo += 2 * chunk {
		hi := min(lo+2*chunk, len(sent))
		// Eval, not Run: in a pipeline Run cannot fall back from EVALSHA on NOSCRIPT. The
		// script's text is small beside the chunk of jobs it carries.
		cmds = append(cmds, enqueueScript.Eval(ctx, pipe, []string{k.lane, k.jobs, k.inflight}, sent[lo:hi]...))
	}
	if len(cmds) == 0 {
		return conflicts, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return conflicts, fmt.Errorf("lanes: store jobs of tenant %q: %w", tenant, err)
	}
	for c, cmd := range cmds {
		pos, _ := cmd.Int64Slice()
		for _, p := range pos {
			conflicts = append(conflicts, jobs[idx[c*chunk+int(p)-1]].ID)
		}
	}
	return conflicts, nil
}

// Done ends ids' count against tenant's MaxInFlight; the handler calls it when a task ends,
// succeeded, dead-lettered or held for later. Unknown IDs are ignored. A tenant waiting at
// its cap is woken.
func (q *Queue) Done(ctx context.Context, tenant string, ids ...string) error {
	k := q.tenantKeys(tenant)
	woken := false
	for lo := 0; lo < len(ids); lo += chunk {
		args := toAny(ids[lo:min(lo+chunk, len(ids))])
		n, err := doneScript.Run(ctx, q.cfg.Redis, []string{k.inflight, k.capped}, args...).Int()
		if err != nil {
			return fmt.Errorf("lanes: done of tenant %q: %w", tenant, err)
		}
		woken = woken || n > 0
	}
	if woken {
		return q.Wake(ctx, tenant)
	}
	return nil
}

// Wake has tenant looked at now if it has work: after its flow control lets it go again
// (breaker closed, resumed), or it became known. A tenant without work is left alone.
func (q *Queue) Wake(ctx context.Context, tenant string) error {
	if err := scheduleScript.Run(ctx, q.cfg.Redis, []string{q.dueKey(), q.wakeKey()}, tenant, 0, "wake").Err(); err != nil {
		return fmt.Errorf("lanes: wake tenant %q: %w", tenant, err)
	}
	return nil
}

// Remove drops jobs from tenant's lane (prune, purge of chosen jobs) and returns how many
// were there. A job already handed to asynq is not touched: remove it there.
func (q *Queue) Remove(ctx context.Context, tenant string, ids ...string) (int, error) {
	k := q.tenantKeys(tenant)
	total := 0
	for lo := 0; lo < len(ids); lo += chunk {
		n, err := removeScript.Run(ctx, q.cfg.Redis, []string{k.jobs, k.leased}, toAny(ids[lo:min(lo+chunk, len(ids))])...).Int()
		if err != nil {
			return total, fmt.Errorf("lanes: remove jobs of tenant %q: %w", tenant, err)
		}
		total += n
	}
	return total, nil
}

// Purge drops every job waiting in tenant's lane (not those in asynq) and returns how many
// there were. Jobs in flight keep counting until Done or their lease ends.
func (q *Queue) Purge(ctx context.Context, tenant string) (int, error) {
	k := q.tenantKeys(tenant)
	var n *redis.IntCmd
	_, err := q.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.HLen(ctx, k.jobs)
		p.Del(ctx, k.lane, k.jobs, k.leased)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("lanes: purge tenant %q: %w", tenant, err)
	}
	return int(n.Val()), nil
}

// Stats are one tenant's counts.
type Stats struct {
	Queued   int // jobs in the lane, not yet in asynq (Leased included)
	Leased   int // of those, taken by a dispatcher that has not confirmed asynq has them
	InFlight int // jobs taken and not yet Done (the MaxInFlight count)
}

// Stats returns tenant's counts.
func (q *Queue) Stats(ctx context.Context, tenant string) (Stats, error) {
	k := q.tenantKeys(tenant)
	v, err := statsScript.Run(ctx, q.cfg.Redis, []string{k.jobs, k.leased, k.inflight}).Int64Slice()
	if err != nil || len(v) != 3 {
		return Stats{}, fmt.Errorf("lanes: stats of tenant %q: %w", tenant, errors.Join(err, errShape(len(v), 3)))
	}
	return Stats{Queued: int(v[0]), Leased: int(v[1]), InFlight: int(v[2])}, nil
}

// Len returns how many jobs wait in tenant's lane (Stats().Queued).
func (q *Queue) Len(ctx context.Context, tenant string) (int, error) {
	n, err := q.cfg.Redis.HLen(ctx, q.tenantKeys(tenant).jobs).Result()
	if err != nil {
		return 0, fmt.Errorf("lanes: length of tenant %q: %w", tenant, err)
	}
	return int(n), nil
}

// Due lists the tenants with work in their lanes and when each is looked at next (a time
// in the past: as soon as a dispatcher is free).
func (q *Queue) Due(ctx context.Context) (map[string]time.Time, error) {
	zs, err := q.cfg.Redis.ZRangeWithScores(ctx, q.dueKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("lanes: read schedule: %w", err)
	}
	out := make(map[string]time.Time, len(zs))
	for _, z := range zs {
		out[z.Member.(string)] = time.UnixMicro(int64(z.Score))
	}
	return out, nil
}

func errShape(got, want int) error {
	if got == want {
		return nil
	}
	return fmt.Errorf("script answered %d values, want %d", got, want)
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func micros(d time.Duration) int64 { return d.Microseconds() }

// Job returns the job id waiting in tenant's lane (queued or leased); ok is false when the
// lane does not hold it (never there, or handed to asynq already). A producer that finds its
// batch present reads it here to compare it with what it would have enqueued.
func (q *Queue) Job(ctx context.Context, tenant, id string) (job Job, ok bool, err error) {
	if err := checkTenant(tenant, q.cfg.ValidTenant); err != nil {
		return Job{}, false, err
	}
	enc, err := q.cfg.Redis.HGet(ctx, q.tenantKeys(tenant).jobs, id).Result()
	if errors.Is(err, redis.Nil) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("lanes: job %q of tenant %q: %w", id, tenant, err)
	}
	job, err = decodeJob(id, enc)
	return job, err == nil, err
}

// Jobs returns a page of the jobs waiting in tenant's lane (queued or leased), from cursor
// (0 to start), with about count per page (HSCAN), and the cursor of the next page (0: none
// left). A job waiting throughout the scan is returned at least once whatever is removed
// meanwhile, and memory stays bounded however long the lane: an operator's purge reads the
// jobs it records before it Removes them. A job that cannot be decoded is an error naming it.
func (q *Queue) Jobs(ctx context.Context, tenant string, cursor uint64, count int) (jobs []Job, next uint64, err error) {
	kv, next, err := q.cfg.Redis.HScan(ctx, q.tenantKeys(tenant).jobs, cursor, "*", int64(count)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("lanes: jobs of tenant %q: %w", tenant, err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		j, err := decodeJob(kv[i], kv[i+1])
		if err != nil {
			return jobs, next, err
		}
		jobs = append(jobs, j)
	}
	return jobs, next, nil
}
