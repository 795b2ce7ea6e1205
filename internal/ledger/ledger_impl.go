package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/redis/go-redis/v9"
)

// Key names; the schema is documented on Ledger.
const (
	keyPrefix = "erpresync:"
	runsKey   = keyPrefix + "runs"
)

// Batch states in the batches hash; absent means none.
const (
	statePending = string(tasks.BatchPending)
	stateDone    = string(tasks.BatchDone)
	stateSplit   = string(tasks.BatchSplit)
	stateDead    = string(tasks.BatchDead)
)

type runKeys struct {
	meta, batches, records, changes, dead, business, auth, outbox, rejected string
	// systemic held the systemic guard's first holds in earlier versions; nothing writes
	// it any more, but a run of theirs is pruned with it.
	systemic string
	// pruned is the marker Prune leaves for prunedMarkerTTL; not one of the run's keys.
	pruned string
}

func keysFor(run string) runKeys {
	p := keyPrefix + "{" + run + "}:"
	return runKeys{
		meta: p + "meta", batches: p + "batches", records: p + "records", changes: p + "changes",
		dead: p + "dead", business: p + "business", auth: p + "auth", systemic: p + "systemic", outbox: p + "outbox",
		rejected: p + "rejected", pruned: p + "pruned",
	}
}

// all is every key of the run, meta first: what Prune removes. A new per-run key belongs
// in runKeys and here, or it outlives its run (TestPruneLeavesNothingOfTheRun checks).
func (k runKeys) all() []string {
	return []string{k.meta, k.batches, k.records, k.changes, k.dead, k.business, k.auth, k.systemic, k.outbox, k.rejected}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// luaTouch updates last_activity and finished_at: set when nothing is pending any more
// and no producer's intake is open (OpenIntake), cleared when something is.
const luaTouch = `
local function touch(meta, now)
  redis.call('HSET', meta, 'last_activity', now)
  local v = redis.call('HMGET', meta, 'total', 'resynced', 'dead')
  local total = tonumber(v[1] or '0') or 0
  local done = (tonumber(v[2] or '0') or 0) + (tonumber(v[3] or '0') or 0)
  if total > 0 and done >= total and redis.call('HEXISTS', meta, 'intake') == 0 then
    redis.call('HSETNX', meta, 'finished_at', now)
  else
    redis.call('HDEL', meta, 'finished_at')
  end
end
local function terminal(st)
  return st == 'done' or st == 'split' or st == 'dead'
end
`

// luaCreate creates a run's meta on its first write (RegisterBatch or RecordIntake); later
// calls change nothing.
const luaCreate = `
local function create(meta, run, now, conn, actor, source)
  if redis.call('HSETNX', meta, 'run', run) == 1 then
    redis.call('HSET', meta, 'started_at', now, 'erp_connection', conn, 'actor_type', actor, 'source', source)
  end
end
`

// registerScript: KEYS meta, batches; ARGV id, n, now, run, conn, actor, source. It returns
// {1, "pending"} when it registered the batch, else {0, the batch's state}, so that the
// handler learns the state in the same round trip.
var registerScript = redis.NewScript(luaTouch + luaCreate + `
if redis.call('HSETNX', KEYS[2], ARGV[1], 'pending') == 0 then
  return {0, redis.call('HGET', KEYS[2], ARGV[1])}
end
create(KEYS[1], ARGV[4], ARGV[3], ARGV[5], ARGV[6], ARGV[7])
redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'batches', 1)
touch(KEYS[1], ARGV[3])
return {1, 'pending'}
`)

// openScript: KEYS meta; ARGV run, now, conn, actor, source, lease end (unix ms). It marks
// the run's intake open until the lease ends (a run whose keys are still being submitted is
// not finished) and creates the run.
var openScript = redis.NewScript(luaCreate + `
create(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[1], 'intake', ARGV[6], 'last_activity', ARGV[2])
redis.call('HDEL', KEYS[1], 'finished_at')
return 1
`)

// renewScript: KEYS meta; ARGV lease end (unix ms). It moves an open intake's lease on.
var renewScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'intake') == 1 then redis.call('HSET', KEYS[1], 'intake', ARGV[1]) end
return 0
`)

// intakeScript: KEYS meta, rejected; ARGV run, now, conn, actor, source, count, rejected key
// JSON... It replaces the rejected count and list, seals the intake (OpenIntake), and dates
// the run finished if nothing is pending: at once for a run without keys.
var intakeScript = redis.NewScript(luaTouch + luaCreate + `
create(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
redis.call('HDEL', KEYS[1], 'intake')
redis.call('HSET', KEYS[1], 'rejected', ARGV[6])
if (tonumber(redis.call('HGET', KEYS[1], 'total') or '0') or 0) == 0 then
  redis.call('HSET', KEYS[1], 'last_activity', ARGV[2])
  redis.call('HSETNX', KEYS[1], 'finished_at', ARGV[2])
else
  touch(KEYS[1], ARGV[2])
end
redis.call('DEL', KEYS[2])
local i = 7
while i <= #ARGV do
  local last = math.min(i + 499, #ARGV)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, last))
  i = last + 1
end
return 1
`)

// successScript: KEYS meta, batches, records, changes; ARGV id, n, now, calls, nrec,
// (field, count)*nrec, then the batch's change items as one element (encodeChanges), or
// nothing when there are none. The calls that led to the answer are counted even
// when the batch was finished otherwise meanwhile: they were made.
var successScript = redis.NewScript(luaTouch + `
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'calls', ARGV[4]) end
if terminal(redis.call('HGET', KEYS[2], ARGV[1])) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'done')
redis.call('HINCRBY', KEYS[1], 'resynced', ARGV[2])
local i = 6
for j = 1, tonumber(ARGV[5]) do
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i+1])
  i = i + 2
end
if i <= #ARGV then redis.call('RPUSH', KEYS[4], ARGV[i]) end
touch(KEYS[1], ARGV[3])
return 1
`)

// splitScript: KEYS meta, batches; ARGV id, now. It returns "applied" when it marked the
// batch split, else the batch's finished state: "split" (a re-run; its halves may still need
// enqueueing), "done" or "dead" (its keys are counted; no halves may run).
var splitScript = redis.NewScript(luaTouch + `
local st = redis.call('HGET', KEYS[2], ARGV[1])
if terminal(st) then return st end
redis.call('HSET', KEYS[2], ARGV[1], 'split')
redis.call('HINCRBY', KEYS[1], 'splits', 1)
touch(KEYS[1], ARGV[2])
return 'applied'
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
	st, err := l.rdb.HGet(ctx, l.keys(run).batches, id).Result()
	if err == redis.Nil {
		return "", nil
	}
	return st, err
}

// DeadReason returns the recorded reason of a dead batch, read from the dead letter of one
// of its keys, or a generic sentence when that was requeued or purged.
func (l *Ledger) DeadReason(ctx context.Context, run, id, key string) string {
	v, err := l.rdb.HGet(ctx, l.keys(run).dead, deadField(id, key)).Result()
	if err == nil {
		var d tasks.DeadLetter
		if json.Unmarshal([]byte(v), &d) == nil && d.Reason != "" {
			return d.Reason
		}
	}
	return "dead letter: batch " + id + " was dead-lettered earlier"
}

// Claim is the handler's first step for a batch: for a producer's batch (no parent) it
// registers the batch like RegisterBatch, and it returns the batch's state (BatchNone for
// none) in the same round trip. The run index is written only when Claim registered the
// batch: otherwise the producer's RegisterBatch wrote it.
func (l *Ledger) Claim(ctx context.Context, b tasks.Batch, id string) (tasks.BatchState, error) {
	if b.Parent != "" {
		st, err := l.batchState(ctx, b.Run, id)
		return tasks.BatchState(st), err
	}
	meta := RunMeta{Run: b.Run, ErpConnectionID: b.ErpConnectionID, ActorType: b.ActorType, Source: b.Source}
	added, state, err := l.register(ctx, meta, id, len(b.Keys))
	if err != nil || !added {
		return tasks.BatchState(state), err
	}
	return tasks.BatchState(state), l.index(ctx, meta.Run)
}

// register runs registerScript; see RegisterBatch.
func (l *Ledger) register(ctx context.Context, meta RunMeta, batchID string, keys int) (added bool, state string, err error) {
	if err := tasks.ValidateBatchRun(meta.Run); err != nil {
		return false, "", err
	}
	if batchID == "" || keys <= 0 {
		return false, "", fmt.Errorf("ledger: register batch %q of run %s with %d keys: want an ID and at least one key", batchID, meta.Run, keys)
	}
	k := l.keys(meta.Run)
	r, err := registerScript.Run(ctx, l.rdb, []string{k.meta, k.batches},
		batchID, keys, ms(l.now()), meta.Run, meta.ErpConnectionID, meta.ActorType.String(), meta.Source).Slice()
	if err != nil {
		return false, "", fmt.Errorf("ledger: register batch %s: %w", batchID, err)
	}
	if len(r) != 2 {
		return false, "", fmt.Errorf("ledger: register batch %s: unexpected reply %v", batchID, r)
	}
	n, _ := r[0].(int64)
	state, _ = r[1].(string)
	return n == 1, state, nil
}

// index adds run to the run index. NX keeps the first start time.
func (l *Ledger) index(ctx context.Context, run string) error {
	if err := l.rdb.ZAddNX(ctx, l.runsKey(), redis.Z{Score: float64(ms(l.now())), Member: run}).Err(); err != nil {
		return fmt.Errorf("ledger: index run %s: %w", run, err)
	}
	return nil
}

// CountCalls adds n ForceResyncExternal calls to the run.
func (l *Ledger) CountCalls(ctx context.Context, run string, n int) error {
	return l.rdb.HIncrBy(ctx, l.keys(run).meta, "calls", int64(n)).Err()
}

// CountBusiness counts one business refusal of batch id and returns the count so far.
func (l *Ledger) CountBusiness(ctx context.Context, run, id string) (int, error) {
	n, err := l.rdb.HIncrBy(ctx, l.keys(run).business, id, 1).Result()
	return int(n), err
}

// HoldSince records now as the start of the batch's auth hold unless one is recorded, and
// returns the first.
func (l *Ledger) HoldSince(ctx context.Context, run, id string, now time.Time) (time.Time, error) {
	hash := l.keys(run).auth
	var get *redis.StringCmd
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, hash, id, ms(now))
		get = p.HGet(ctx, hash, id)
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	return fromMS(get.Val()), nil
}

// RecordSuccess records the batch done with its changes, and the calls made for it; false if
// it was finished already.
func (l *Ledger) RecordSuccess(ctx context.Context, run, id string, n, calls int, items []tasks.ChangeItem, now time.Time) (bool, error) {
	k := l.keys(run)
	counts := map[string]int64{}
	var order []string
	for _, it := range items {
		f := it.Kind + ":" + it.Table
		if _, ok := counts[f]; !ok {
			order = append(order, f)
		}
		counts[f]++
	}
	args := make([]any, 0, 6+2*len(order))
	args = append(args, id, n, ms(now), calls, len(order))
	for _, f := range order {
		args = append(args, f, counts[f])
	}
	blob, err := encodeChanges(id, now, items)
	if err != nil {
		return false, err
	}
	if blob != nil {
		args = append(args, blob)
	}
	r, err := successScript.Run(ctx, l.rdb, []string{k.meta, k.batches, k.records, k.changes}, args...).Int()
	return r == 1, err
}

// splitApplied is what splitScript returns when it marked the batch split.
const splitApplied = string(tasks.SplitMarked)

// MarkSplit marks the batch split unless it is finished; it returns tasks.SplitMarked or the
// finished state (BatchSplit, BatchDone, BatchDead).
func (l *Ledger) MarkSplit(ctx context.Context, run, id string, now time.Time) (tasks.BatchState, error) {
	k := l.keys(run)
	st, err := splitScript.Run(ctx, l.rdb, []string{k.meta, k.batches}, id, ms(now)).Text()
	return tasks.BatchState(st), err
}

func deadField(batchID, key string) string { return batchID + "|" + key }

// RecordDead records the batch's keys as dead letters; false if it was finished already.
func (l *Ledger) RecordDead(ctx context.Context, run, id string, dls []tasks.DeadLetter, now time.Time) (bool, error) {
	k := l.keys(run)
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
