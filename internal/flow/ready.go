package flow

import (
	"context"
	"errors"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// Blocked is how long an open breaker or a cool-down (Retry-After) keeps every request of
// the tenant back; zero when none does. It only looks: it takes no slot or probe. The lanes'
// dispatcher asks it before it hands one of the tenant's batches to a worker, so that a
// tenant that would wait holds no worker slot; the rate limit is Pace's: a batch takes its
// token only when it calls, so peeking at the limit as well would space the batches twice.
// An error of Redis reads as not blocked: the request itself then waits or fails as always.
func (c *Control) Blocked(ctx context.Context) time.Duration {
	var wait time.Duration
	var pe *PausedError
	if err := c.Paused(ctx, 0); errors.As(err, &pe) {
		wait = max(wait, pe.RetryAfter)
	}
	if v, err := c.rdb.Get(ctx, c.cooldownKey()).Int64(); err == nil {
		wait = max(wait, time.Until(time.UnixMilli(v)))
	}
	return max(wait, 0)
}

// Pace is the time between two requests of the tenant at its rate limit now (the adaptive
// rate when that is lower); zero without a rate limit.
func (c *Control) Pace(ctx context.Context) time.Duration {
	return time.Duration(c.emission(ctx) * float64(time.Second))
}

// Tolerance is how early a request may come before its turn at the rate limit and still
// find a token: (burst - 1) paces. The lanes' dispatcher makes up that much of a late turn.
func (c *Control) Tolerance(ctx context.Context) time.Duration {
	if c.limiter == nil || c.limit.Burst <= 1 {
		return 0
	}
	return time.Duration(float64(c.limit.Burst-1) * c.emission(ctx) * float64(time.Second))
}

// emission is the rate limit's emission interval in seconds now; 0 without a limit.
func (c *Control) emission(ctx context.Context) float64 {
	if c.limiter == nil {
		return 0
	}
	l := c.limitNow(ctx)
	return l.Period.Seconds() / float64(l.Rate)
}

// limitNow is the rate limit in force: Config.Rate's, or the adaptive rate when throttling
// has lowered it.
func (c *Control) limitNow(ctx context.Context) redis_rate.Limit {
	limit := c.limit
	if c.adapt != nil {
		if r := c.adapt.current(ctx); r > 0 && r < c.cfg.Rate {
			limit.Period = time.Duration(float64(time.Second) / r)
		}
	}
	return limit
}
