package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
)

// Run states reported by RunStatus.State.
const (
	RunActive       = "active"         // keys still pending, or its producer still submitting (RunStatus.Receiving)
	RunDone         = "done"           // every key resynced
	RunDoneWithDead = "done_with_dead" // nothing pending, some keys dead-lettered
	RunEmpty        = "empty"          // the run received no keys: its input was empty or held only invalid keys
	// RunIncomplete: nothing is pending, but a producer's submission of the run never
	// completed (OpenIntake without RecordIntake) and its producer has not renewed the
	// intake for IntakeLease: it was cut off (a crash, Redis lost, Ctrl-C). Submitting the
	// same input under the run again completes it. Such a run is never finished: not
	// "done", and never pruned.
	RunIncomplete = "incomplete"
)

// ErrRunNotFound is returned by Status for a run the ledger has never seen.
var ErrRunNotFound = errors.New("run not found")

// RunMeta describes a run when its first batch is registered. Later registrations do not
// change it.
type RunMeta struct {
	Run             string
	ErpConnectionID int
	ActorType       erpsync.ActorType
	// Source names the producer ("cli", "trickle", ...); informational.
	Source string
}

// RunStatus is a run's progress. TotalKeys = ResyncedKeys + DeadKeys + PendingKeys.
type RunStatus struct {
	Run             string            `json:"run"`
	State           string            `json:"state"`
	ErpConnectionID int               `json:"erp_connection"`
	ActorType       erpsync.ActorType `json:"actor_type"`
	Source          string            `json:"source,omitempty"`
	TotalKeys       int64             `json:"total_keys"`
	ResyncedKeys    int64             `json:"resynced_keys"`
	DeadKeys        int64             `json:"dead_keys"`
	PendingKeys     int64             `json:"pending_keys"`
	// RejectedKeys counts input records the producer skipped as invalid (not in TotalKeys);
	// Ledger.Rejected lists the first MaxRejected of them.
	RejectedKeys int64 `json:"rejected_keys"`
	// Batches counts registered batches (splits not included).
	Batches int64 `json:"batches"`
	// Calls counts ForceResyncExternal calls made for the run, retries and splits included.
	Calls int64 `json:"calls"`
	// Records counts changed CRM rows: kind ("added", "updated", "deleted") → table → rows.
	Records      map[string]map[string]int64 `json:"records"`
	StartedAt    time.Time                   `json:"started_at"`
	LastActivity time.Time                   `json:"last_activity"`
	// FinishedAt is when PendingKeys last reached zero; zero while the run is active.
	FinishedAt time.Time `json:"finished_at"`
	// Receiving is true while a producer is submitting the run's input (its intake open and
	// renewed within IntakeLease): the run is RunActive even with nothing pending.
	Receiving bool `json:"receiving,omitempty"`
}

// IntakeLease is how long an open intake counts as still being received without word from
// its producer. A producer renews it every IntakeLease/4 while it submits (RenewIntake);
// once it lapses before RecordIntake seals the run, the run is RunIncomplete.
const IntakeLease = 2 * time.Minute

// Ledger is the record of truth for runs in Redis: per-batch state, key counters, records
// changed, Changes items and dead letters. asynq caps its archive (10,000 tasks, 90 days)
// and forgets completed tasks after their retention; the ledger keeps a run until Prune
// removes it (the worker prunes finished runs after LEDGER_RETENTION). A Ledger is safe for
// concurrent use.
//
// Every batch transition (pending → done | split | dead, and dead → pending on requeue) is
// one Lua script that checks the batch's state and updates the counters with it, so a
// re-run never double-counts. All keys of a run carry the hash tag {RUN} and live in one
// Redis Cluster slot:
//
//	erpresync:runs                 ZSET  run → started_at (unix ms); the only cross-run key,
//	                                     written apart from the scripts (ZADD NX)
//	erpresync:{RUN}:meta           HASH  run, erp_connection, actor_type, source, started_at,
//	                                     last_activity, finished_at (unix ms), total,
//	                                     resynced, dead, rejected, batches, calls, splits,
//	                                     intake (lease end, unix ms, from OpenIntake to RecordIntake)
//	erpresync:{RUN}:batches        HASH  batch ID → pending | done | split | dead
//	erpresync:{RUN}:records        HASH  "kind:table" → rows changed
//	erpresync:{RUN}:changes        LIST  one element per successful batch: its change items,
//	                                     compact (encodeChanges; JSON documents, one an item,
//	                                     from earlier versions), in the order recorded
//	erpresync:{RUN}:dead           HASH  "BATCH|KEY" → DeadLetter JSON
//	erpresync:{RUN}:business       HASH  batch ID → business failures so far
//	erpresync:{RUN}:auth           HASH  batch ID → first auth failure (unix ms)
//	erpresync:{RUN}:outbox         HASH  batch ID → requeued batch not yet enqueued
//	erpresync:{RUN}:rejected       LIST  RejectedKey JSON, the first MaxRejected, in input order
//	erpresync:{RUN}:pruned         STRING when Prune removed the run (unix ms); expires
//	                                     after asynq's archive horizon (prunedMarkerTTL)
//
// Pending keys are total − resynced − dead; finished_at is set when that reaches zero with
// the intake sealed, and cleared when a requeue makes keys pending again.
//
// A Ledger speaks for one tenant (Tenant): run names are the tenant's own, and its keys are
// those of tasks.RunKey(tenant, run), so "erpresync:{Cust12345/nightly}:meta"; the implicit
// tenant's are the keys above, unchanged. Each tenant has its run index,
// "erpresync:tenant:{TENANT}:runs" (the implicit tenant's is erpresync:runs), so listing,
// pruning and selecting dead letters of "every run" never reach another tenant's.
type Ledger struct {
	rdb    redis.UniversalClient
	now    func() time.Time
	tenant string
	inLane InLane // nil: no batch waits in a lane
}

// NewLedger returns a Ledger on rdb. The caller keeps ownership of rdb.
func NewLedger(rdb redis.UniversalClient) *Ledger {
	return &Ledger{rdb: rdb, now: time.Now}
}

// WithClock returns a Ledger on the same client that reads the time from now (nil:
// time.Now) for what it records and for Prune's cutoff: for tests and tools that need
// another clock. l is not changed.
func (l *Ledger) WithClock(now func() time.Time) *Ledger {
	if now == nil {
		now = time.Now
	}
	return &Ledger{rdb: l.rdb, now: now, tenant: l.tenant, inLane: l.inLane}
}

// Tenant returns the Ledger of tenant id on the same client and clock ("" is the implicit
// tenant). l is not changed.
func (l *Ledger) Tenant(id string) *Ledger {
	return &Ledger{rdb: l.rdb, now: l.now, tenant: id, inLane: l.inLane}
}

// InLane reports whether batch id of tenant waits in the tenant's lane (internal/lanes: a
// file tenant's batches wait there until the workers' dispatcher hands them to asynq).
type InLane func(ctx context.Context, tenant, id string) (bool, error)

// WithLanes returns a Ledger on the same client, clock and tenant whose Repair asks in
// whether a batch asynq does not hold waits in its tenant's lane: such a batch is queued,
// not lost. l is not changed.
func (l *Ledger) WithLanes(in InLane) *Ledger {
	return &Ledger{rdb: l.rdb, now: l.now, tenant: l.tenant, inLane: in}
}

// TenantID is the tenant l speaks for; "" is the implicit tenant.
func (l *Ledger) TenantID() string { return l.tenant }

// keys are the keys of l's tenant's run.
func (l *Ledger) keys(run string) runKeys { return keysFor(tasks.RunKey(l.tenant, run)) }

// runsKey is l's tenant's run index.
func (l *Ledger) runsKey() string {
	if l.tenant == "" {
		return runsKey
	}
	return keyPrefix + "tenant:{" + l.tenant + "}:runs"
}

// RegisterBatch records a producer's batch of keys under meta.Run before it is enqueued:
// the first call for a batchID adds keys to the run's total and returns added=true; later
// calls change nothing and return false. The first registration of a run creates it from
// meta. The handler registers every producer batch again when it starts (a no-op for a
// registered one), so a batch enqueued without registration is still counted — but only
// from then on, so a run's total is right up front only if producers register first.
func (l *Ledger) RegisterBatch(ctx context.Context, meta RunMeta, batchID string, keys int) (added bool, err error) {
	added, _, err = l.register(ctx, meta, batchID, keys)
	if err != nil {
		return false, err
	}
	// The run index lives outside the run's slot, so it is written apart from the script.
	// NX keeps the first start time; writing it on every call repairs a missed write.
	return added, l.index(ctx, meta.Run)
}

// MaxRejected is how many rejected keys the ledger lists per run (RecordIntake keeps the
// first ones in input order); the rest are only counted in RunStatus.RejectedKeys.
const MaxRejected = 1000

// RejectedKey is an input record a producer skipped as invalid, kept in the run so that the
// ERP team can fix it after the producer's stderr is gone.
type RejectedKey struct {
	Source string `json:"source"` // the input's name: a path, "stdin"
	Line   int    `json:"line"`   // 1-based line of the record
	Key    string `json:"key"`    // as read and trimmed, cut to 40 bytes
	Reason string `json:"reason"` // e.g. "longer than 254 characters (300)"
}

// OpenIntake marks the intake of meta.Run open, creating the run from meta if needed: a
// producer calls it before it registers the first batch of a submission, and RecordIntake
// seals it when the submission is complete. Until then the run is not finished whatever its
// batches do: it is RunActive while keys are pending or its producer renews the intake
// (RenewIntake, within IntakeLease), else RunIncomplete, so a submission cut off after some
// batches never shows as done (nor is pruned as done).
func (l *Ledger) OpenIntake(ctx context.Context, meta RunMeta) error {
	if err := tasks.ValidateBatchRun(meta.Run); err != nil {
		return err
	}
	now := l.now()
	if err := openScript.Run(ctx, l.rdb, []string{l.keys(meta.Run).meta}, meta.Run, ms(now), meta.ErpConnectionID, meta.ActorType.String(), meta.Source, ms(now.Add(IntakeLease))).Err(); err != nil {
		return fmt.Errorf("ledger: open intake of %s: %w", meta.Run, err)
	}
	return l.index(ctx, meta.Run)
}

// RenewIntake tells the ledger that the producer of run is still submitting: the open intake
// counts as received for another IntakeLease. It does nothing once the intake is sealed.
func (l *Ledger) RenewIntake(ctx context.Context, run string) error {
	if err := renewScript.Run(ctx, l.rdb, []string{l.keys(run).meta}, ms(l.now().Add(IntakeLease))).Err(); err != nil {
		return fmt.Errorf("ledger: renew intake of %s: %w", run, err)
	}
	return nil
}

// RecordIntake records the outcome of a producer's complete pass over a run's input: count
// records rejected as invalid, listed by rejected (only the first MaxRejected are kept). It
// replaces what an earlier submission of the run recorded — a resubmission reads the same
// input — and creates the run from meta when no batch did: a run that received no keys is
// then visible, with state RunEmpty. It seals the intake OpenIntake opened.
func (l *Ledger) RecordIntake(ctx context.Context, meta RunMeta, count int64, rejected []RejectedKey) error {
	if err := tasks.ValidateBatchRun(meta.Run); err != nil {
		return err
	}
	rejected = rejected[:min(len(rejected), MaxRejected)]
	k := l.keys(meta.Run)
	args := make([]any, 0, 6+len(rejected))
	args = append(args, meta.Run, ms(l.now()), meta.ErpConnectionID, meta.ActorType.String(), meta.Source, count)
	for _, r := range rejected {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		args = append(args, string(b))
	}
	if err := intakeScript.Run(ctx, l.rdb, []string{k.meta, k.rejected}, args...).Err(); err != nil {
		return fmt.Errorf("ledger: record intake of %s: %w", meta.Run, err)
	}
	return l.index(ctx, meta.Run)
}

// Rejected returns the rejected keys listed for run, in input order (at most MaxRejected;
// RunStatus.RejectedKeys counts them all).
func (l *Ledger) Rejected(ctx context.Context, run string) ([]RejectedKey, error) {
	vals, err := l.rdb.LRange(ctx, l.keys(run).rejected, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: rejected keys of %s: %w", run, err)
	}
	out := make([]RejectedKey, 0, len(vals))
	for _, v := range vals {
		var r RejectedKey
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, fmt.Errorf("ledger: rejected key of %s: %w", run, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Status returns a run's progress, or ErrRunNotFound.
func (l *Ledger) Status(ctx context.Context, run string) (RunStatus, error) {
	k := l.keys(run)
	pipe := l.rdb.Pipeline()
	metaCmd := pipe.HGetAll(ctx, k.meta)
	recCmd := pipe.HGetAll(ctx, k.records)
	if _, err := pipe.Exec(ctx); err != nil {
		return RunStatus{}, fmt.Errorf("ledger: status of %s: %w", run, err)
	}
	m := metaCmd.Val()
	if m["run"] == "" {
		return RunStatus{}, fmt.Errorf("%w: %s", ErrRunNotFound, run)
	}
	return l.statusOf(run, m, recCmd.Val()), nil
}

// statusOf is the status of run from its meta hash m and records hash rec (nil: no records
// read): the one place a run's counts and State are derived.
func (l *Ledger) statusOf(run string, m, rec map[string]string) RunStatus {
	num := func(f string) int64 { n, _ := strconv.ParseInt(m[f], 10, 64); return n }
	st := RunStatus{
		Run: run, Source: m["source"],
		TotalKeys: num("total"), ResyncedKeys: num("resynced"), DeadKeys: num("dead"), RejectedKeys: num("rejected"),
		Batches: num("batches"), Calls: num("calls"),
		Records:   map[string]map[string]int64{tasks.KindAdded: {}, tasks.KindUpdated: {}, tasks.KindDeleted: {}},
		StartedAt: fromMS(m["started_at"]), LastActivity: fromMS(m["last_activity"]), FinishedAt: fromMS(m["finished_at"]),
	}
	st.ErpConnectionID, _ = strconv.Atoi(m["erp_connection"])
	if a, err := erpsync.ParseActorType(m["actor_type"]); err == nil {
		st.ActorType = a
	}
	st.PendingKeys = max(st.TotalKeys-st.ResyncedKeys-st.DeadKeys, 0)
	for f, v := range rec {
		kind, table, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		if st.Records[kind] == nil {
			st.Records[kind] = map[string]int64{}
		}
		st.Records[kind][table] = n
	}
	st.Receiving = m["intake"] != "" && fromMS(m["intake"]).After(l.now())
	switch {
	case st.PendingKeys > 0 || st.Receiving:
		st.State = RunActive
	case m["intake"] != "":
		st.State = RunIncomplete
	case st.DeadKeys > 0:
		st.State = RunDoneWithDead
	case st.TotalKeys == 0:
		st.State = RunEmpty
	default:
		st.State = RunDone
	}
	return st
}

// Runs returns up to limit runs (limit <= 0: all), most recently started first.
func (l *Ledger) Runs(ctx context.Context, limit int) ([]RunStatus, error) {
	names, err := l.runNames(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]RunStatus, 0, len(names))
	for _, r := range names {
		st, err := l.Status(ctx, r)
		if errors.Is(err, ErrRunNotFound) {
			continue // indexed, but its keys were deleted
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (l *Ledger) runNames(ctx context.Context, limit int) ([]string, error) {
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit) - 1
	}
	names, err := l.rdb.ZRevRange(ctx, l.runsKey(), 0, stop).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: list runs: %w", err)
	}
	return names, nil
}

// DeadLetters returns the dead letters of run, oldest first; run "" returns those of
// every run.
func (l *Ledger) DeadLetters(ctx context.Context, run string) ([]tasks.DeadLetter, error) {
	runs := []string{run}
	if run == "" {
		var err error
		if runs, err = l.runNames(ctx, 0); err != nil {
			return nil, err
		}
	}
	var out []tasks.DeadLetter
	for _, r := range runs {
		dls, err := l.deadLetters(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, dls...)
	}
	sortDead(out)
	return out, nil
}

func sortDead(dls []tasks.DeadLetter) {
	sort.SliceStable(dls, func(i, j int) bool {
		a, b := dls[i], dls[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		if a.Run != b.Run {
			return a.Run < b.Run
		}
		if a.BatchID != b.BatchID {
			return a.BatchID < b.BatchID
		}
		return a.Key < b.Key
	})
}

func (l *Ledger) deadLetters(ctx context.Context, run string) ([]tasks.DeadLetter, error) {
	vals, err := l.rdb.HVals(ctx, l.keys(run).dead).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: dead letters of %s: %w", run, err)
	}
	out := make([]tasks.DeadLetter, 0, len(vals))
	for _, v := range vals {
		var d tasks.DeadLetter
		if err := json.Unmarshal([]byte(v), &d); err != nil {
			return nil, fmt.Errorf("ledger: dead letter of %s: %w", run, err)
		}
		out = append(out, d)
	}
	sortDead(out)
	return out, nil
}

// The ledger is what the handler records through.
var _ tasks.Ledger = (*Ledger)(nil)
