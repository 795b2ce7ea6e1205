package flow

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A breaker's state lives in Redis so that every worker sees the same one. sony/gobreaker/v2
// has a distributed breaker, but it does not fit: it probes at a fixed Timeout (we double the
// interval up to a cap), takes a distributed lock around every request (two extra round trips
// on the hot path, and its SharedDataStore has no context), and cannot tell operators since
// when it is open or when it probes next. The state machine here is two small Lua scripts:
// one round trip to ask, one to report.
//
//	{erpresync:flow:TENANT}:breaker:CONN  HASH  state (closed|open|half), since, next, interval,
//	                                            probe_until (unix ms), outcome, reason
//	{erpresync:flow:TENANT}:ring:CONN     LIST  the last outcomes while closed ("" = success)
//	erpresync:flow:breakers               SET   TENANT|CONN of every breaker that ever opened
//
// CONN is 0 for the tenant's breaker.

// Breaker states, as stored and as shown.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half-open"
)

const breakersKey = "erpresync:flow:breakers"

// allowScript: KEYS state; ARGV now ms, probe lease ms. Returns {0} when closed, {1, from}
// when this caller is the probe (from: the state it left), {2, since, next, reason} when
// paused.
var allowScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st or st == 'closed' then return {0} end
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'since', 'next', 'probe_until', 'reason')
local nxt = tonumber(h[2]) or 0
local pu = tonumber(h[3]) or 0
if (st == 'open' and now >= nxt) or (st == 'half' and now >= pu) then
  redis.call('HSET', KEYS[1], 'state', 'half', 'probe_until', now + tonumber(ARGV[2]))
  return {1, st}
end
if st == 'half' then nxt = pu end
return {2, h[1], tostring(nxt), h[4] or '', st}
`)

// recordScript: KEYS state, ring; ARGV outcome ("" success), counted (1/0), window,
// threshold, now ms, first probe interval ms, max interval ms, reason. Returns {to, from}
// when the state changed, else {}.
var recordScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
local out = ARGV[1]
local now = tonumber(ARGV[5])
if st == 'open' then return {} end
if st == 'half' then
  if out ~= '' and out == redis.call('HGET', KEYS[1], 'outcome') then
    local iv = math.min((tonumber(redis.call('HGET', KEYS[1], 'interval')) or 0) * 2, tonumber(ARGV[7]))
    redis.call('HSET', KEYS[1], 'state', 'open', 'interval', iv, 'next', now + iv)
    return {'open', 'half'}
  end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', now)
  return {'closed', 'half'}
end
if out ~= '' and ARGV[2] ~= '1' then return {} end
local w = tonumber(ARGV[3])
redis.call('LPUSH', KEYS[2], out)
redis.call('LTRIM', KEYS[2], 0, w - 1)
redis.call('PEXPIRE', KEYS[2], 86400000)
if out == '' then return {} end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
if #items < w then return {} end
local same = 0
for _, v in ipairs(items) do if v == out then same = same + 1 end end
if same / #items < tonumber(ARGV[4]) then return {} end
local iv = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'state', 'open', 'since', now, 'interval', iv, 'next', now + iv,
  'outcome', out, 'reason', ARGV[8])
redis.call('DEL', KEYS[2])
return {'open', 'closed'}
`)

// breaker is one circuit breaker in Redis: the tenant's (conn 0) or an ERP connection's.
type breaker struct {
	c         *Control
	conn      int
	state     string // key of the state hash
	ring      string // key of the outcome ring
	window    int
	threshold float64
}

func (c *Control) newBreaker(conn, window int, threshold float64) *breaker {
	p := c.prefix
	n := strconv.Itoa(conn)
	return &breaker{c: c, conn: conn, state: p + ":breaker:" + n, ring: p + ":ring:" + n, window: window, threshold: threshold}
}

// allow asks whether a request may go out. probe is true when it is the one probe of an open
// breaker; a *PausedError when it may not go out.
func (b *breaker) allow(ctx context.Context) (probe bool, err error) {
	now := b.c.now()
	r, err := allowScript.Run(ctx, b.c.rdb, []string{b.state}, now.UnixMilli(), b.c.cfg.ProbeLease.Milliseconds()).Slice()
	if err != nil {
		return false, fmt.Errorf("flow: breaker: %w", err)
	}
	switch code, _ := r[0].(int64); code {
	case 0:
		return false, nil
	case 1:
		from, _ := r[1].(string)
		b.c.transition(b.conn, stateName(from), StateHalfOpen, "")
		return true, nil
	}
	since, next := msTime(r[1]), msTime(r[2])
	reason, _ := r[3].(string)
	wait := next.Sub(now)
	if st, _ := r[4].(string); st == "half" {
		// Another worker probes: come back soon, the probe may close the breaker.
		wait = min(wait, b.c.cfg.ProbeInitial)
	}
	return false, &PausedError{Tenant: b.c.cfg.Tenant, ErpConnection: b.conn, Since: since, NextProbe: next, Reason: reason, RetryAfter: max(wait, time.Second)}
}

// record reports an outcome: "" for a success, anything else names a failure (failures
// with the same name count together). counted=false reports a failure that may only decide a
// probe, not open the breaker.
func (b *breaker) record(ctx context.Context, outcome string, counted bool, reason string) {
	cnt := "0"
	if counted {
		cnt = "1"
	}
	now := b.c.now()
	r, err := recordScript.Run(context.WithoutCancel(ctx), b.c.rdb, []string{b.state, b.ring},
		outcome, cnt, b.window, b.threshold, now.UnixMilli(),
		b.c.cfg.ProbeInitial.Milliseconds(), b.c.cfg.ProbeMax.Milliseconds(), reason).Slice()
	if err != nil {
		b.c.log.Warn().Err(err).Int("erp_connection", b.conn).Msg("flow: breaker: could not record an outcome")
		return
	}
	if len(r) == 2 {
		to, _ := r[0].(string)
		from, _ := r[1].(string)
		if to == "open" && from == "closed" {
			b.c.rdb.SAdd(context.WithoutCancel(ctx), breakersKey, b.c.cfg.Tenant+"|"+strconv.Itoa(b.conn))
		}
		b.c.transition(b.conn, stateName(from), stateName(to), reason)
	}
}

func stateName(s string) string {
	switch s {
	case "half":
		return StateHalfOpen
	case "open":
		return StateOpen
	}
	return StateClosed
}

func msTime(v any) time.Time {
	var n int64
	switch x := v.(type) {
	case string:
		n, _ = strconv.ParseInt(x, 10, 64)
	case int64:
		n = x
	}
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
