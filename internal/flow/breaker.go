package flow

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A breaker's state lives in Redis so that every worker sees the same one. sony/gobreaker/v2
// has a distributed breaker, but it does not fit: it probes at a fixed Timeout (we double the
// interval up to a cap), takes a distributed lock around every request (two extra round trips
// on the hot path, and its SharedDataStore has no context), and cannot tell operators since
// when it is open or when it probes next. The state machine here is two small Lua scripts:
// one to ask (a request asks twice: before its waits, to hold back early, and again right
// before it is sent, when the answer counts), one to report.
//
//	{erpresync:flow:TENANT}:breaker:CONN  HASH  state (closed|open|half), since, next, interval,
//	                                            probe_until (unix ms), probe (its token),
//	                                            outcome, reason
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

// gateScript: KEYS the breakers a request must pass, the one it may claim a probe of last;
// ARGV now ms, probe lease ms, claim (a new probe token, "" to look only), then per key the
// probe token the caller holds for it ("" none). A breaker lets the request pass when it is
// closed, or half-open with the caller's token as its probe. Returns {0} when every breaker
// lets it pass; {1, from} when the caller claimed the last one's probe (from: the state it
// left); {3} when that probe is due but the caller only looked; {2, i, since, next, reason,
// state} when breaker i holds the request back.
var gateScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local due
for i, k in ipairs(KEYS) do
  local h = redis.call('HMGET', k, 'state', 'since', 'next', 'probe_until', 'reason', 'probe')
  local st, held = h[1], ARGV[3 + i]
  if st and st ~= 'closed' and not (st == 'half' and held ~= '' and held == h[6]) then
    local nxt, pu = tonumber(h[3]) or 0, tonumber(h[4]) or 0
    if i == #KEYS and ((st == 'open' and now >= nxt) or (st == 'half' and now >= pu)) then
      due = st
    else
      if st == 'half' then nxt = pu end
      return {2, i, h[2] or '', tostring(nxt), h[5] or '', st}
    end
  end
end
if not due then return {0} end
if ARGV[3] == '' then return {3} end
redis.call('HSET', KEYS[#KEYS], 'state', 'half', 'probe_until', now + tonumber(ARGV[2]), 'probe', ARGV[3])
return {1, due}
`)

// recordScript: KEYS state, ring; ARGV outcome ("" success), counted (1/0), window,
// threshold, now ms, first probe interval ms, max interval ms, reason, probe (the token of
// the probe this answers; "" for a request that was no probe). Only the probe's answer
// decides a half-open breaker. Returns {to, from} when the state changed, else {}.
var recordScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
local out = ARGV[1]
local now = tonumber(ARGV[5])
if st == 'open' then return {} end
if st == 'half' then
  local tok = ARGV[9]
  if tok == '' or tok ~= redis.call('HGET', KEYS[1], 'probe') then return {} end
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

// gate asks the breakers bs, in order, whether a request may go out; only the last one's
// probe may be claimed, and only when claim is true. held[i] is the probe token the caller
// holds for bs[i] ("" none). It returns the token of the probe it claimed ("" none), or a
// *PausedError from the first breaker that holds the request back. Looking (claim false)
// lets a request whose probe is due go on: it claims the probe when it asks again.
func (c *Control) gate(ctx context.Context, bs []*breaker, held []string, claim bool) (probe string, err error) {
	now := c.now()
	keys := make([]string, len(bs))
	args := []any{now.UnixMilli(), c.cfg.ProbeLease.Milliseconds(), ""}
	if claim {
		args[2] = newToken()
	}
	for i, b := range bs {
		keys[i] = b.state
		args = append(args, held[i])
	}
	r, err := gateScript.Run(ctx, c.rdb, keys, args...).Slice()
	if err != nil {
		return "", fmt.Errorf("flow: breaker: %w", err)
	}
	switch code, _ := r[0].(int64); code {
	case 0, 3:
		return "", nil
	case 1:
		from, _ := r[1].(string)
		b := bs[len(bs)-1]
		c.transition(b.conn, stateName(from), StateHalfOpen, "")
		return args[2].(string), nil
	}
	i, _ := r[1].(int64)
	b := bs[i-1]
	since, next := msTime(r[2]), msTime(r[3])
	reason, _ := r[4].(string)
	wait := next.Sub(now)
	if st, _ := r[5].(string); st == "half" {
		// Another worker probes: come back soon, the probe may close the breaker.
		wait = min(wait, c.cfg.ProbeInitial)
	}
	return "", &PausedError{Tenant: c.cfg.Tenant, ErpConnection: b.conn, Since: since, NextProbe: next, Reason: reason, RetryAfter: max(wait, time.Second)}
}

// newToken names one probe.
func newToken() string { return strconv.FormatUint(rand.Uint64(), 36) }

// record reports an outcome: "" for a success, anything else names a failure (failures
// with the same name count together). counted=false reports a failure that may only decide a
// probe, not open the breaker.
// probe is the token of the probe the outcome answers: "" for a request that was not one.
func (b *breaker) record(ctx context.Context, outcome string, counted bool, reason, probe string) {
	cnt := "0"
	if counted {
		cnt = "1"
	}
	now := b.c.now()
	r, err := recordScript.Run(context.WithoutCancel(ctx), b.c.rdb, []string{b.state, b.ring},
		outcome, cnt, b.window, b.threshold, now.UnixMilli(),
		b.c.cfg.ProbeInitial.Milliseconds(), b.c.cfg.ProbeMax.Milliseconds(), reason, probe).Slice()
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
