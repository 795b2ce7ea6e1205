package flow

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The adaptive rate (Config.Adaptive) is shared like the limit itself:
//
//	{erpresync:flow:TENANT}:adapt  HASH  rate (requests/s after the last decrease), at (unix ms)
//
// A throttling answer halves the rate in force (multiplicative decrease, not below
// Rate/MinAdaptiveShare); after that it grows back by Rate/AdaptiveRecovery per second
// (additive increase) up to Rate. Every worker reads it at most once a second.

// Adaptive rate constants.
const (
	MinAdaptiveShare = 20 // the rate never drops below Rate/20
	AdaptiveRecovery = 60 // from 0 back to Rate takes 60 s without throttling
)

// decreaseScript: KEYS adapt; ARGV now ms, max rate, step per s, floor. Halves the rate in
// force and returns it.
var decreaseScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'rate', 'at')
local now, top, step, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cur = top
if h[1] then cur = math.min(top, tonumber(h[1]) + step * (now - tonumber(h[2])) / 1000) end
local new = math.max(cur / 2, floor)
redis.call('HSET', KEYS[1], 'rate', tostring(new), 'at', now)
redis.call('PEXPIRE', KEYS[1], 3600000)
return tostring(new)
`)

type adaptive struct {
	c       *Control
	key     string
	step    float64
	floor   float64
	mu      sync.Mutex
	rate    float64 // after the last decrease
	at      time.Time
	fetched time.Time
}

func newAdaptive(c *Control) *adaptive {
	return &adaptive{c: c, key: c.prefix + ":adapt", step: c.cfg.Rate / AdaptiveRecovery, floor: c.cfg.Rate / MinAdaptiveShare}
}

// current returns the rate in force, reading Redis at most once a second.
func (a *adaptive) current(ctx context.Context) float64 {
	now := a.c.now()
	a.mu.Lock()
	stale := now.Sub(a.fetched) >= time.Second
	a.mu.Unlock()
	if stale {
		h, err := a.c.rdb.HMGet(ctx, a.key, "rate", "at").Result()
		if err == nil {
			a.mu.Lock()
			a.fetched = now
			a.rate, a.at = 0, time.Time{}
			if s, ok := h[0].(string); ok {
				a.rate, _ = strconv.ParseFloat(s, 64)
				a.at = msTime(h[1])
			}
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at.IsZero() {
		return a.c.cfg.Rate
	}
	return min(a.c.cfg.Rate, a.rate+a.step*now.Sub(a.at).Seconds())
}

// decrease halves the rate in force for every worker.
func (a *adaptive) decrease(ctx context.Context) {
	now := a.c.now()
	s, err := decreaseScript.Run(context.WithoutCancel(ctx), a.c.rdb, []string{a.key}, now.UnixMilli(), a.c.cfg.Rate, a.step, a.floor).Text()
	if err != nil {
		a.c.log.Warn().Err(err).Msg("flow: could not lower the adaptive rate")
		return
	}
	r, _ := strconv.ParseFloat(s, 64)
	a.mu.Lock()
	a.rate, a.at, a.fetched = r, now, now
	a.mu.Unlock()
	a.c.log.Info().Str("tenant", a.c.cfg.Tenant).Float64("rate", r).Msg("throttled: adaptive rate lowered for all workers")
}
