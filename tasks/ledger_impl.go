package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key names; the schema is documented on Ledger.
const (
	keyPrefix = "erpresync:"
	runsKey   = keyPrefix + "runs"
)

// Batch states in the batches hash; absent means none.
const (
	statePending = "pending"
	stateDone    = "done"
	stateSplit   = "split"
	stateDead    = "dead"
)

type runKeys struct {
	meta, batches, records, changes, dead, business, auth, outbox string
}

func keysFor(run string) runKeys {
	p := keyPrefix + "{" + run + "}:"
	return runKeys{
		meta: p + "meta", batches: p + "batches", records: p + "records", changes: p + "changes",
		dead: p + "dead", business: p + "business", auth: p + "auth", outbox: p + "outbox",
	}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// luaTouch updates last_activity and finished_at: set when nothing is pending any more,
// cleared when something is.
const luaTouch = `
local function touch(meta, now)
  redis.call('HSET', meta, 'last_activity', now)
  local v = redis.call('HMGET', meta, 'total', 'resynced', 'dead')
  local total = tonumber(v[1] or '0') or 0
  local done = (tonumber(v[2] or '0') or 0) + (tonumber(v[3] or '0') or 0)
  if total > 0 and done >= total then
    redis.call('HSETNX', meta, 'finished_at', now)
  else
    redis.call('HDEL', meta, 'finished_at')
  end
end
local function terminal(st)
  return st == 'done' or st == 'split' or st == 'dead'
end
`

// registerScript: KEYS meta, batches; ARGV id, n, now, run, conn, actor, source.
var registerScript = redis.NewScript(luaTouch + `
if redis.call('HSETNX', KEYS[2], ARGV[1], 'pending') == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'run', ARGV[4]) == 1 then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[3], 'erp_connection', ARGV[5], 'actor_type', ARGV[6], 'source', ARGV[7])
end
redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'batches', 1)
touch(KEYS[1], ARGV[3])
return 1
`)

// successScript: KEYS meta, batches, records, changes; ARGV id, n, now, nrec,
// (field, count)*nrec, change item JSON...
var successScript = redis.NewScript(luaTouch + `
if terminal(redis.call('HGET', KEYS[2], ARGV[1])) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'done')
redis.call('HINCRBY', KEYS[1], 'resynced', ARGV[2])
local i = 5
for j = 1, tonumber(ARGV[4]) do
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i+1])
  i = i + 2
end
while i <= #ARGV do
  local last = math.min(i + 499, #ARGV)
  redis.call('RPUSH', KEYS[4], unpack(ARGV, i, last))
  i = last + 1
end
touch(KEYS[1], ARGV[3])
return 1
`)

// splitScript: KEYS meta, batches; ARGV id, now.
var splitScript = redis.NewScript(luaTouch + `
if terminal(redis.call('HGET', KEYS[2], ARGV[1])) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'split')
redis.call('HINCRBY', KEYS[1], 'splits', 1)
touch(KEYS[1], ARGV[2])
return 1
`)

// deadScript: KEYS meta, batches, dead; ARGV id, n, now, (field, json)*.
var deadScript = redis.NewScript(luaTouch + `
if terminal(redis.call('HGET', KEYS[2], ARGV[1])) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'dead')
redis.call('HINCRBY', KEYS[1], 'dead', ARGV[2])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i+1])
end
touch(KEYS[1], ARGV[3])
return 1
`)

// requeueScript: KEYS meta, batches, dead, outbox; ARGV now, nfields, fields..., then
// (batch id, payload)*. All or nothing: -1 if a field is gone (a concurrent requeue or purge).
var requeueScript = redis.NewScript(luaTouch + `
local nf = tonumber(ARGV[2])
for i = 3, 2 + nf do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then return -1 end
end
for i = 3, 2 + nf do
  redis.call('HDEL', KEYS[3], ARGV[i])
end
redis.call('HINCRBY', KEYS[1], 'dead', -nf)
for i = 3 + nf, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], 'pending')
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i+1])
end
touch(KEYS[1], ARGV[1])
return nf
`)

func (l *Ledger) batchState(ctx context.Context, run, id string) (string, error) {
	st, err := l.rdb.HGet(ctx, keysFor(run).batches, id).Result()
	if err == redis.Nil {
		return "", nil
	}
	return st, err
}

// deadReason returns the recorded reason of a dead batch, read from the dead letter of one
// of its keys, or a generic sentence when that was requeued or purged.
func (l *Ledger) deadReason(ctx context.Context, run, id, key string) string {
	v, err := l.rdb.HGet(ctx, keysFor(run).dead, deadField(id, key)).Result()
	if err == nil {
		var d DeadLetter
		if json.Unmarshal([]byte(v), &d) == nil && d.Reason != "" {
			return d.Reason
		}
	}
	return "dead letter: batch " + id + " was dead-lettered earlier"
}

func (l *Ledger) incrCalls(ctx context.Context, run string) error {
	return l.rdb.HIncrBy(ctx, keysFor(run).meta, "calls", 1).Err()
}

func (l *Ledger) incrBusiness(ctx context.Context, run, id string) (int, error) {
	n, err := l.rdb.HIncrBy(ctx, keysFor(run).business, id, 1).Result()
	return int(n), err
}

// authSince records now as the batch's first auth failure unless one is recorded, and
// returns the first.
func (l *Ledger) authSince(ctx context.Context, run, id string, now time.Time) (time.Time, error) {
	k := keysFor(run).auth
	if err := l.rdb.HSetNX(ctx, k, id, ms(now)).Err(); err != nil {
		return time.Time{}, err
	}
	v, err := l.rdb.HGet(ctx, k, id).Result()
	if err != nil {
		return time.Time{}, err
	}
	return fromMS(v), nil
}

func (l *Ledger) recordSuccess(ctx context.Context, run, id string, n int, items []ChangeItem, now time.Time) (bool, error) {
	k := keysFor(run)
	counts := map[string]int64{}
	var order []string
	for _, it := range items {
		f := it.Kind + ":" + it.Table
		if _, ok := counts[f]; !ok {
			order = append(order, f)
		}
		counts[f]++
	}
	args := make([]any, 0, 4+2*len(order)+len(items))
	args = append(args, id, n, ms(now), len(order))
	for _, f := range order {
		args = append(args, f, counts[f])
	}
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return false, err
		}
		args = append(args, string(b))
	}
	r, err := successScript.Run(ctx, l.rdb, []string{k.meta, k.batches, k.records, k.changes}, args...).Int()
	return r == 1, err
}

func (l *Ledger) markSplit(ctx context.Context, run, id string, _ []string, now time.Time) (bool, error) {
	k := keysFor(run)
	r, err := splitScript.Run(ctx, l.rdb, []string{k.meta, k.batches}, id, ms(now)).Int()
	return r == 1, err
}

func deadField(batchID, key string) string { return batchID + "|" + key }

func (l *Ledger) recordDead(ctx context.Context, run, id string, dls []DeadLetter, now time.Time) (bool, error) {
	k := keysFor(run)
	args := make([]any, 0, 3+2*len(dls))
	args = append(args, id, len(dls), ms(now))
	for _, d := range dls {
		b, err := json.Marshal(d)
		if err != nil {
			return false, err
		}
		args = append(args, deadField(d.BatchID, d.Key), string(b))
	}
	r, err := deadScript.Run(ctx, l.rdb, []string{k.meta, k.batches, k.dead}, args...).Int()
	return r == 1, err
}

func fmtErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("ledger: %s: %w", op, err)
}
