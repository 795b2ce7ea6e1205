package lanes

import "github.com/redis/go-redis/v9"

// One Lua script per state change. Each touches either one tenant's keys or the schedule's,
// never both, so every script stays in one Redis Cluster hash slot. The Go side orders the
// two halves so that no interleaving strands work (see dispatch.go).

// nowLua sets now to the Redis server's clock in microseconds.
const nowLua = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
`

// enqueueScript adds jobs to a lane. KEYS: lane, jobs, inflight. ARGV: id, encoded job, ...
// Returns the 1-based positions of jobs whose ID is queued, leased or in flight already.
var enqueueScript = redis.NewScript(`
local conflicts = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[2], id) == 1 or redis.call('ZSCORE', KEYS[3], id) then
    conflicts[#conflicts + 1] = (i + 1) / 2
  else
    redis.call('HSET', KEYS[2], id, ARGV[i + 1])
    redis.call('RPUSH', KEYS[1], id)
  end
end
return conflicts`)

// activateScript makes a tenant due now unless it is scheduled already, and wakes an idle
// dispatcher when it was not. KEYS: due, wake. ARGV: tenant.
var activateScript = redis.NewScript(nowLua + `
if redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, 7)
end
return 0`)

// pickScript takes the tenant that has waited longest among those due and puts it off by
// ARGV[1] µs (a lease on its turn: a dispatcher that dies while looking at it does not lose
// it). KEYS: due. Returns {1, tenant, µs it was due already}, or {0, µs until the next is
// due}, or {0, -1} if none.
var pickScript = redis.NewScript(nowLua + `
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return {0, -1} end
local at = tonumber(first[2])
if at > now then return {0, at - now} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), first[1])
return {1, first[1], now - at}`)

// scheduleScript sets when a tenant is looked at next: ARGV[2] µs from now. KEYS: due,
// wake. ARGV: tenant, delay, mode. With mode "wake" it only brings a tenant that is in the
// schedule forward, and wakes an idle dispatcher when it did.
var scheduleScript = redis.NewScript(nowLua + `
if ARGV[3] == 'wake' then
  if redis.call('ZADD', KEYS[1], 'XX', 'LT', 'CH', now + tonumber(ARGV[2]), ARGV[1]) == 1 then
    redis.call('LPUSH', KEYS[2], '1')
    redis.call('LTRIM', KEYS[2], 0, 7)
    return 1
  end
  return 0
end
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])`)

// takeScript leases a tenant's next job: first one whose lease ran out (its dispatcher
// died), else the lane's head. KEYS: lane, jobs, leased, inflight. ARGV: lease µs, in-flight
// lease µs, max in flight (0 = no cap). Returns {'job', id, encoded}, {'capped'}, or
// {'empty', µs until the earliest lease ends or -1}.
var takeScript = redis.NewScript(nowLua + `
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local max = tonumber(ARGV[3])
if max > 0 and redis.call('ZCARD', KEYS[4]) >= max then return {'capped'} end
local id, job
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1)
if #stale > 0 then
  id = stale[1]
  job = redis.call('HGET', KEYS[2], id)
  if not job then redis.call('ZREM', KEYS[3], id) end
end
while not job do
  id = redis.call('LPOP', KEYS[1])
  if not id then
    local next = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    if #next == 0 then return {'empty', -1} end
    return {'empty', math.max(tonumber(next[2]) - now, 0)}
  end
  job = redis.call('HGET', KEYS[2], id)
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), id)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), id)
return {'job', id, job}`)

// commitScript drops a job asynq has from the lane. KEYS: jobs, leased. ARGV: id.
var commitScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
return redis.call('ZREM', KEYS[2], ARGV[1])`)

// workScript reports whether a tenant has work: 0 when its lane is not empty, µs until its
// earliest lease ends when only leased jobs are left, -1 when it has none. KEYS: lane, leased.
var workScript = redis.NewScript(nowLua + `
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
local next = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #next == 0 then return -1 end
return math.max(tonumber(next[2]) - now, 0)`)

// armScript marks a tenant as waiting at its cap, then counts again: a Done between the take
// and the mark finds no mark, so the count decides. KEYS: inflight, capped. ARGV: max.
// Returns 1 when the tenant is under its cap after all (the mark is removed).
var armScript = redis.NewScript(nowLua + `
redis.call('SET', KEYS[2], '1')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0`)

// doneScript ends jobs' in-flight count. KEYS: inflight, capped. ARGV: ids. Returns 1 when
// the tenant was waiting at its cap (the mark is removed), so the caller wakes it.
var doneScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], unpack(ARGV))
return redis.call('DEL', KEYS[2])`)

// removeScript drops queued or leased jobs (their IDs left in the lane list are skipped when
// reached). KEYS: jobs, leased. ARGV: ids. Returns how many jobs were there.
var removeScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], unpack(ARGV))
return redis.call('HDEL', KEYS[1], unpack(ARGV))`)

// statsScript reads a tenant's counts. KEYS: jobs, leased, inflight. Returns {queued
// (including leased), leased, in flight}.
var statsScript = redis.NewScript(nowLua + `
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return {redis.call('HLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3])}`)
