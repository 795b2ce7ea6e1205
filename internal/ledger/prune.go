package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/tasks"
)

// DefaultLedgerRetention is how long a finished run stays in the ledger before Prune
// removes it, unless configured otherwise (LEDGER_RETENTION, `enqueue runs --prune
// --older-than`).
const DefaultLedgerRetention = 30 * 24 * time.Hour

// ParseRetention reads a retention period: a Go duration ("720h", "90m") or whole days
// ("30d"); "0" means keep for ever and returns 0. It is the one parser of LEDGER_RETENTION
// and of `--older-than`.
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n > 0 && n <= 100*365 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("retention %q: want a period such as 30d, 72h or 90m, or 0 to keep runs for ever", s)
}

// PruneOptions select what Prune removes.
type PruneOptions struct {
	// OlderThan is the retention period: a run is removed once it has had nothing pending,
	// and no activity, for longer than this. Required (positive).
	OlderThan time.Duration
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// Inspector, when not nil, deletes the removed runs' asynq tasks first: the archived
	// tasks of their dead letters, so that ReconcileArchived does not find them and record
	// them again, and every other task of their batches (completed ones, which asynq keeps
	// for their Retention), found by the batch IDs the ledger holds, in every queue. The
	// worker and `enqueue runs --prune` always pass one.
	Inspector *asynq.Inspector
}

// PrunedRun is a run Prune removed (or, in a dry run, would remove).
type PrunedRun struct {
	Run   string `json:"run"`
	State string `json:"state"`
	// TotalKeys, DeadLetters and ChangeItems are what the ledger held for the run: its keys,
	// the dead letters still listed (purged ones are gone already) and the change items.
	TotalKeys   int64     `json:"total_keys"`
	DeadLetters int64     `json:"dead_letters"`
	ChangeItems int64     `json:"change_items"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
}

// PruneResult reports what Prune removed.
type PruneResult struct {
	DryRun bool        `json:"dry_run"`
	Cutoff time.Time   `json:"cutoff"` // runs finished before this were removed
	Runs   []PrunedRun `json:"runs"`
	// Archived counts the asynq archived tasks deleted with the runs' dead letters.
	Archived int `json:"archived"`
	// Tasks counts the runs' other asynq tasks deleted (completed ones, mostly).
	Tasks int `json:"tasks"`
	// Stale counts run index entries whose run's keys were gone already (removed by a
	// concurrent Prune, or by hand).
	Stale int `json:"stale"`
}

// prunedMarkerTTL is how long the marker of a pruned run lives: longer than asynq keeps an
// archived task (90 days), so that ReconcileArchived, finding an archived task of a pruned
// run (a batch the ledger had recorded done or split), leaves it alone instead of recording
// it again as a run of its own.
const prunedMarkerTTL = 91 * 24 * time.Hour

// pruneScript: KEYS every key of one run (meta first), then its pruned marker; ARGV cutoff
// (unix ms), dry ("1" or "0"), now (unix ms), marker TTL (ms). It is the one rule of what may
// be removed: a run with nothing pending whose finished_at and last_activity are both before
// the cutoff. It returns 1 when the run qualifies (and, unless dry, its keys are unlinked and
// the marker set), 0 when it is kept, and -1 when the run has no metadata (its keys are gone,
// or only strays are left, which are unlinked too). UNLINK frees large values in a
// background thread, so the script does a fixed amount of work whatever the run's size.
var pruneScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'run', 'total', 'resynced', 'dead', 'finished_at', 'last_activity')
local verdict = 1
if not v[1] then
  verdict = -1
else
  local total = tonumber(v[2] or '0') or 0
  local done = (tonumber(v[3] or '0') or 0) + (tonumber(v[4] or '0') or 0)
  local fin = tonumber(v[5] or '0') or 0
  local last = tonumber(v[6] or '0') or 0
  local cutoff = tonumber(ARGV[1])
  if total <= 0 or done < total or fin == 0 or fin >= cutoff or last >= cutoff then return 0 end
end
if ARGV[2] == '0' then
  redis.call('UNLINK', unpack(KEYS, 1, #KEYS - 1))
  if verdict == 1 then redis.call('SET', KEYS[#KEYS], ARGV[3], 'PX', ARGV[4]) end
end
return verdict
`)

// prunePage is how many run index entries Prune reads per round trip, and how many dead
// letters per HSCAN step.
const prunePage = 100

// Prune removes the runs that finished longer than o.OlderThan ago, one run at a time, each
// with a short script that re-checks the rule (pruneScript) and unlinks the run's keys; then
// their entries in the run index. Every step is bounded (index pages, HSCAN pages of dead
// letters, one script per run over one Cluster slot), so Prune never blocks Redis for long
// and never sends a cross-slot command. Several Prunes at once (several workers) are safe:
// each removal is atomic and idempotent, and a run that became active again meanwhile (a
// requeue) is kept. Dead letters go with their run, which is only when the run is past the
// retention period: every dead letter was recorded before the run last finished.
//
// A run removed while a producer re-registers a batch of it at the same instant may lose its
// index entry; the producer's next RegisterBatch writes it again.
func (l *Ledger) Prune(ctx context.Context, o PruneOptions) (PruneResult, error) {
	if o.OlderThan <= 0 {
		return PruneResult{}, fmt.Errorf("ledger: prune: retention %s: want a positive period", o.OlderThan)
	}
	cutoff := l.now().Add(-o.OlderThan)
	res := PruneResult{DryRun: o.DryRun, Cutoff: cutoff.UTC()}
	// A run cannot finish before it starts: only runs started before the cutoff are read.
	for offset := int64(0); ; {
		names, err := l.rdb.ZRangeByScore(ctx, l.runsKey(), &redis.ZRangeBy{Min: "-inf", Max: "(" + strconv.FormatInt(ms(cutoff), 10),
			Offset: offset, Count: prunePage}).Result()
		if err != nil {
			return res, fmt.Errorf("ledger: prune: list runs: %w", err)
		}
		for _, run := range names {
			removed, err := l.pruneRun(ctx, run, cutoff, o, &res)
			if err != nil {
				return res, err
			}
			if !removed || o.DryRun {
				offset++ // still in the index
			}
		}
		if len(names) < prunePage {
			return res, nil
		}
	}
}

// pruneRun removes one run if it qualifies, adding it to res; it reports whether the run's
// index entry was removed (or, dry, would be).
func (l *Ledger) pruneRun(ctx context.Context, run string, cutoff time.Time, o PruneOptions, res *PruneResult) (bool, error) {
	if tasks.ValidateRunName(run) != nil {
		return false, nil // not ours to touch
	}
	k := l.keys(run)
	keys := append(k.all(), k.pruned)
	verdict, err := pruneScript.Run(ctx, l.rdb, keys, ms(cutoff), "1", ms(l.now()), prunedMarkerTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("ledger: prune %s: %w", run, err)
	}
	switch verdict {
	case 0:
		return false, nil
	case -1:
		res.Stale++
		if o.DryRun {
			return true, nil
		}
		if err := pruneScript.Run(ctx, l.rdb, keys, ms(cutoff), "0", ms(l.now()), prunedMarkerTTL.Milliseconds()).Err(); err != nil {
			return false, fmt.Errorf("ledger: prune %s: %w", run, err)
		}
		return true, l.unindex(ctx, run)
	}
	pr, err := l.pruneReport(ctx, run)
	if err != nil {
		return false, err
	}
	if o.DryRun {
		res.Runs = append(res.Runs, pr)
		return true, nil
	}
	if o.Inspector != nil && pr.DeadLetters > 0 {
		n, err := l.deleteRunArchived(ctx, o.Inspector, run)
		res.Archived += n
		if err != nil {
			return false, err
		}
	}
	if o.Inspector != nil {
		n, err := l.deleteRunTasks(ctx, o.Inspector, run)
		res.Tasks += n
		if err != nil {
			return false, err
		}
	}
	verdict, err = pruneScript.Run(ctx, l.rdb, keys, ms(cutoff), "0", ms(l.now()), prunedMarkerTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("ledger: prune %s: %w", run, err)
	}
	if verdict != 1 {
		return false, nil // active again (a requeue), or removed by another Prune meanwhile
	}
	res.Runs = append(res.Runs, pr)
	return true, l.unindex(ctx, run)
}

// unindex removes run from the run index, unless the run was registered again meanwhile.
func (l *Ledger) unindex(ctx context.Context, run string) error {
	if err := l.rdb.ZRem(ctx, l.runsKey(), run).Err(); err != nil {
		return fmt.Errorf("ledger: prune %s: run index: %w", run, err)
	}
	if n, err := l.rdb.Exists(ctx, l.keys(run).meta).Result(); err == nil && n == 1 {
		return l.index(ctx, run)
	}
	return nil
}

func (l *Ledger) pruneReport(ctx context.Context, run string) (PrunedRun, error) {
	k := l.keys(run)
	pipe := l.rdb.Pipeline()
	meta := pipe.HMGet(ctx, k.meta, "total", "resynced", "dead", "started_at", "finished_at")
	dead := pipe.HLen(ctx, k.dead)
	recs := pipe.HVals(ctx, k.records)
	if _, err := pipe.Exec(ctx); err != nil {
		return PrunedRun{}, fmt.Errorf("ledger: prune %s: %w", run, err)
	}
	v := meta.Val()
	num := func(i int) int64 { s, _ := v[i].(string); n, _ := strconv.ParseInt(s, 10, 64); return n }
	str := func(i int) string { s, _ := v[i].(string); return s }
	pr := PrunedRun{Run: run, State: RunDone, TotalKeys: num(0), DeadLetters: dead.Val(),
		StartedAt: fromMS(str(3)), FinishedAt: fromMS(str(4))}
	if num(2) > 0 {
		pr.State = RunDoneWithDead
	}
	for _, s := range recs.Val() {
		n, _ := strconv.ParseInt(s, 10, 64)
		pr.ChangeItems += n
	}
	return pr, nil
}

// scanHash calls page with the fields and values (field, value, field, value, ...) of the
// hash key of run, read in HSCAN steps of about prunePage fields, so that memory stays flat
// however large the hash; what names the hash in an error.
func (l *Ledger) scanHash(ctx context.Context, run, key, what string, page func(kv []string) error) error {
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, key, cursor, "", prunePage).Result()
		if err != nil {
			return fmt.Errorf("ledger: prune %s: %s: %w", run, what, err)
		}
		if err := page(kv); err != nil {
			return fmt.Errorf("ledger: prune %s: %w", run, err)
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// deleteRunArchived deletes the archived asynq tasks of run's dead letters.
func (l *Ledger) deleteRunArchived(ctx context.Context, insp *asynq.Inspector, run string) (int, error) {
	n := 0
	err := l.scanHash(ctx, run, l.keys(run).dead, "dead letters", func(kv []string) error {
		dls := make([]tasks.DeadLetter, 0, len(kv)/2)
		for i := 1; i < len(kv); i += 2 {
			var d tasks.DeadLetter
			if json.Unmarshal([]byte(kv[i]), &d) == nil {
				dls = append(dls, d)
			}
		}
		a, err := deleteArchived(insp, dls)
		n += a
		return err
	})
	return n, err
}

// deleteRunTasks deletes the asynq tasks of run's batches — every task ID the ledger has
// recorded for the run (producer batches, split halves, requeued batches) — from every
// queue. It reads the batch IDs in HSCAN steps, so that memory stays flat for a run of any
// size, and asks which of them asynq still holds with one pipeline of EXISTS per step:
// after the default retentions (a run pruned 30 days on, its tasks kept 7) there is
// usually none, and the step costs one round trip instead of one per batch and queue. A
// task being processed is left alone (asynq refuses to delete it, and it goes with its
// retention). It returns how many tasks it deleted.
func (l *Ledger) deleteRunTasks(ctx context.Context, insp *asynq.Inspector, run string) (int, error) {
	queues, err := insp.Queues()
	if err != nil {
		return 0, fmt.Errorf("ledger: prune %s: asynq queues: %w", run, err)
	}
	type task struct{ queue, id string }
	n := 0
	err = l.scanHash(ctx, run, l.keys(run).batches, "batches", func(kv []string) error {
		var candidates []task
		var exists []*redis.IntCmd
		pipe := l.rdb.Pipeline()
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == statePending {
				// A batch pending again (a requeue or resubmission raced this prune): its
				// task is live, and the re-check below keeps the run.
				continue
			}
			for _, q := range queues {
				candidates = append(candidates, task{q, kv[i]})
				exists = append(exists, pipe.Exists(ctx, asynqTaskKey(q, kv[i])))
			}
		}
		if len(candidates) == 0 {
			return nil
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("asynq tasks: %w", err)
		}
		for i, c := range candidates {
			if exists[i].Val() == 0 {
				continue
			}
			deleted, err := deleteTask(insp, c.queue, c.id)
			if err != nil {
				return err
			}
			if deleted {
				n++
			}
		}
		return nil
	})
	return n, err
}

// asynqTaskKey is the key of asynq's hash of task id in queue (asynq's internal/base.TaskKey;
// TestPruneLeavesNothingOfTheRun fails if asynq names it otherwise).
func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// deleteTask deletes the task id of queue, in whatever state but active; it reports
// whether there was one to delete.
func deleteTask(insp *asynq.Inspector, queue, id string) (bool, error) {
	err := insp.DeleteTask(queue, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return false, nil
	}
	// asynq refuses to delete an active task, with an error of no exported kind.
	if info, ierr := insp.GetTaskInfo(queue, id); ierr == nil && info.State == asynq.TaskStateActive {
		return false, nil
	}
	return false, fmt.Errorf("asynq: delete task %s of queue %s: %w", id, queue, err)
}
