package flow

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// peekRateScript: KEYS the rate limit's key; ARGV emission interval, burst offset (seconds).
// It is redis_rate's GCRA arithmetic for a cost of one request, without taking the token:
// the seconds until one would be allowed (0: now). redis_rate keeps the theoretical arrival
// time under "rate:"+key in seconds since 2017-01-01 (its lua.go); TestReady checks that the
// two agree.
var peekRateScript = redis.NewScript(`
local tat = redis.call("GET", KEYS[1])
if not tat then return "0" end
local t = redis.call("TIME")
local now = (t[1] - 1483228800) + (t[2] / 1000000)
tat = math.max(tonumber(tat), now)
local wait = tat + tonumber(ARGV[1]) - tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
return tostring(wait)
`)

// Ready is how long until a request to the tenant could go out without waiting: zero now,
// else the longest of an open tenant breaker's wait for its probe, a cool-down
// (Retry-After) in force and the rate limit's next token. It only looks: it takes no token,
// slot or probe. The lanes' dispatcher asks it before it hands one of the tenant's batches
// to a worker, so that a tenant that would wait holds no worker slot. An error of Redis
// reads as ready: the request itself then waits or fails as always.
func (c *Control) Ready(ctx context.Context) time.Duration {
	wait := c.Blocked(ctx)
	if emission := c.emission(ctx); emission > 0 {
		s, err := peekRateScript.Run(ctx, c.rdb, []string{"rate:" + c.prefix},
			strconv.FormatFloat(emission, 'f', -1, 64), strconv.FormatFloat(emission*float64(c.limit.Burst), 'f', -1, 64)).Text()
		if err == nil {
			if secs, err := strconv.ParseFloat(s, 64); err == nil {
				wait = max(wait, time.Duration(secs*float64(time.Second)))
			}
		}
	}
	return max(wait, 0)
}

// Blocked is Ready without the rate limit: how long a pause, an open breaker or a cool-down
// keeps every request of the tenant back. A dispatcher that spaces the tenant's batches by
// Pace asks this instead of Ready: the token a batch handed over will take is not taken
// yet when the dispatcher looks, so peeking at the limit as well would space them twice.
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
	period := c.limit.Period
	if c.adapt != nil {
		if r := c.adapt.current(ctx); r > 0 && r < c.cfg.Rate {
			period = time.Duration(float64(time.Second) / r)
		}
	}
	return period.Seconds() / float64(c.limit.Rate)
}
