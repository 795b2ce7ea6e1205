package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
)

// Task type names.
const (
	// TypeResync is one batch of external keys: one ForceResyncExternal call.
	TypeResync = "erpresync:resync"
	// TypeTrickle is one key handed over alone; asynq groups trickle tasks per ERP
	// connection and actor type (GroupName) and NewAggregator merges a group into one
	// TypeResync batch.
	TypeTrickle = "erpresync:trickle"
)

// Batch sizes, in keys.
const (
	// DefaultBatchSize is the batch size producers should use when they have no reason to
	// choose another.
	DefaultBatchSize = 100
	// MaxBatchSize is the largest batch NewResyncTask accepts.
	MaxBatchSize = 1000
	// MaxKeyLength is the longest external key in characters (ErpExternalKey.ErpKey is
	// String(254)).
	MaxKeyLength = erpsync.MaxKeyLength
)

// Task defaults applied by NewResyncTask and NewTrickleTask; options passed by the caller
// override them.
const (
	// DefaultQueue is the asynq queue for resync tasks of bulk runs.
	DefaultQueue = "erpresync"
	// TrickleQueue is the asynq queue for trickle keys and the batches aggregated from
	// them; the worker serves it strictly before the bulk queues, so a trickled key never
	// waits behind a backlog.
	TrickleQueue = "erpresync-trickle"
	// DefaultMaxRetry is asynq's retry budget per batch. It counts transient failures,
	// business failures and lease expiries (a worker killed with -9 costs one retry when
	// asynq's recoverer finds the task ~60-120 s later); throttling and auth holds do not
	// count (IsFailure). With DefaultAsynqPolicy() 12 retries span about three and a half hours
	// (30 s, 1, 2, 4, 8, 16 min, then 30 min six times), enough to ride out a maintenance
	// window; business retries are bounded separately (HandlerConfig.BusinessRetries).
	DefaultMaxRetry = 12
	// DefaultTimeout is the task timeout. asynq stores whole seconds (anything under 1 s
	// silently becomes its 30-minute default), so NewResyncTask rejects it. It must hold the
	// fast retry layer's budget (DefaultFastPolicy().MaxElapsed, 30 s) plus one call.
	DefaultTimeout = 3 * time.Minute
	// DefaultRetention is how long asynq keeps a completed task and its result (shown by
	// asynqmon). The ledger keeps the record of truth regardless.
	DefaultRetention = 7 * 24 * time.Hour
)

// Batch is the payload of a TypeResync task. The asynq task ID is the batch ID (see BatchID);
// the ledger keys everything by it.
type Batch struct {
	// Tenant is the SuperOffice tenant the keys belong to (ValidateTenantID); empty for the
	// implicit tenant of the SUPEROFFICE_* settings, as in every batch written before tenants
	// existed.
	Tenant string `json:"tenant,omitempty"`
	// Run names the run the batch belongs to; it groups batches in the ledger. Required:
	// see ValidateRunName.
	Run string `json:"run"`
	// ErpConnectionID is the ERP connection the keys belong to. Must be positive.
	ErpConnectionID int `json:"erp_connection"`
	// ActorType is the kind of ERP record the keys name; Unknown is rejected.
	ActorType erpsync.ActorType `json:"actor_type"`
	// Keys are the external keys, 1..MaxBatchSize, each valid for erpsync.ValidateKey (not
	// blank, at most MaxKeyLength characters, XML-safe), no duplicates.
	Keys []string `json:"keys"`
	// Seq is the producer's sequence number of the batch in its run (0-based); BatchID(Run,
	// Seq) is its default task ID.
	Seq int `json:"seq"`
	// Source says who produced the batch ("cli", "trickle", "requeue", ...); informational.
	Source string `json:"source,omitempty"`
	// Parent is the batch ID this batch was split from; empty for a producer's batch.
	// A child's keys were counted in the run's total with its parent, so the handler
	// does not register it again.
	Parent string `json:"parent,omitempty"`
	// Depth is how many splits led to this batch (0 for a producer's batch).
	Depth int `json:"depth,omitempty"`
	// ID is the batch ID the task was created with (set by NewResyncTask). The handler
	// uses asynq's task ID when it has one, and ID only when called outside asynq.
	ID string `json:"id,omitempty"`
}

// ErrInvalidBatch is wrapped by every validation error of NewResyncTask.
var ErrInvalidBatch = errors.New("invalid batch")

// BatchID is the deterministic asynq task ID of the seq-th batch (0-based) of a run:
// "RUN:b000042". Enqueuing the same batch twice therefore fails with
// asynq.ErrTaskIDConflict instead of calling SuperOffice twice.
func BatchID(run string, seq int) string {
	return run + ":b" + fmt.Sprintf("%06d", seq)
}

// RunKey is the ledger's name of the batch's run: RunKey(b.Tenant, b.Run).
func (b Batch) RunKey() string { return RunKey(b.Tenant, b.Run) }

// childID is the task ID of half i (0 or 1) of a split batch.
func ChildID(parent string, i int) string { return parent + "." + strconv.Itoa(i) }

// Validate reports the first problem with b, wrapping ErrInvalidBatch.
func (b Batch) Validate() error { return b.validate(MaxBatchSize) }

func (b Batch) validate(maxKeys int) error {
	if err := ValidateBatchRun(b.Run); err != nil {
		return err
	}
	if b.Tenant != "" {
		if err := ValidateTenantID(b.Tenant); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidBatch, err)
		}
	}
	if b.ErpConnectionID <= 0 {
		return fmt.Errorf("%w: erp connection id %d: must be positive", ErrInvalidBatch, b.ErpConnectionID)
	}
	if err := b.ActorType.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	if len(b.Keys) == 0 {
		return fmt.Errorf("%w: no keys (an empty key list would resync every key of the connection)", ErrInvalidBatch)
	}
	if len(b.Keys) > maxKeys {
		return fmt.Errorf("%w: %d keys: at most %d per batch", ErrInvalidBatch, len(b.Keys), maxKeys)
	}
	seen := make(map[string]struct{}, len(b.Keys))
	for i, k := range b.Keys {
		if err := erpsync.ValidateKey(k); err != nil {
			return fmt.Errorf("%w: key %d: %w", ErrInvalidBatch, i, err)
		}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%w: key %q appears twice", ErrInvalidBatch, k)
		}
		seen[k] = struct{}{}
	}
	if b.Seq < 0 {
		return fmt.Errorf("%w: seq %d: must not be negative", ErrInvalidBatch, b.Seq)
	}
	return nil
}

// MaxRunName is the longest run name, in bytes.
const MaxRunName = 100

// ValidateRunName reports whether name can name a run: 1 to MaxRunName bytes of letters,
// digits and "-_.:". It is the one check of a run name; producers, the handler and the
// ledger all call it.
func ValidateRunName(name string) error {
	if name == "" {
		return errors.New("run name is empty")
	}
	if len(name) > MaxRunName {
		return fmt.Errorf("run name is %d bytes long: at most %d", len(name), MaxRunName)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)
		if !ok {
			return fmt.Errorf("run name %q: character %q at byte %d: only letters, digits and -_.: are allowed", name, r, i)
		}
	}
	return nil
}

// ValidateBulkRunName is ValidateRunName for the run a producer names (intake.Submit, the
// CLI's --run, the intake API's PUT): it also refuses names beginning with TricklePrefix,
// which belong to the trickle runs the aggregator names, one a day, ERP connection and actor
// type. Reading such a run (status, dead letters) takes ValidateRunName.
func ValidateBulkRunName(name string) error {
	if err := ValidateRunName(name); err != nil {
		return err
	}
	if strings.HasPrefix(name, TricklePrefix) {
		return fmt.Errorf("run name %q: names beginning with %q are reserved for trickle intake (`enqueue key`, POST /v1/keys): choose another name", name, TricklePrefix)
	}
	return nil
}

// ValidateBatchRun is ValidateRunName for a batch's run: its error wraps ErrInvalidBatch.
func ValidateBatchRun(run string) error {
	if err := ValidateRunName(run); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	return nil
}

// NewResyncTask validates b and returns its TypeResync task with the default options
// Queue(DefaultQueue), MaxRetry(DefaultMaxRetry), Timeout(DefaultTimeout),
// Retention(DefaultRetention) and TaskID(BatchID(b.RunKey(), b.Seq)); opts override them. A
// Timeout option under one second is rejected (asynq would silently turn it into 30 min).
func NewResyncTask(b Batch, opts ...asynq.Option) (*asynq.Task, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return NewResyncTaskID(b, BatchID(b.RunKey(), b.Seq), opts...)
}

// NewResyncTaskID is NewResyncTask for a batch whose task ID is id (a split half, a requeued
// batch), without validating b's keys.
func NewResyncTaskID(b Batch, id string, opts ...asynq.Option) (*asynq.Task, error) {
	b.ID = id
	for _, o := range opts {
		if o.Type() == asynq.TimeoutOpt {
			if d, _ := o.Value().(time.Duration); d > 0 && d < time.Second {
				return nil, fmt.Errorf("%w: task timeout %s: asynq keeps whole seconds; use at least 1s", ErrInvalidBatch, d)
			}
		}
	}
	payload, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	all := append(append(resyncDefaults(), asynq.TaskID(id)), opts...)
	return asynq.NewTask(TypeResync, payload, all...), nil
}

// resyncDefaults are the options every TypeResync task starts with.
func resyncDefaults() []asynq.Option {
	return []asynq.Option{asynq.Queue(DefaultQueue), asynq.MaxRetry(DefaultMaxRetry), asynq.Timeout(DefaultTimeout), asynq.Retention(DefaultRetention)}
}

// ResyncSettings are the queue, retry budget, timeout and retention of a TypeResync task.
type ResyncSettings struct {
	Queue              string
	MaxRetry           int
	Timeout, Retention time.Duration
}

// ResyncSettingsOf is what NewResyncTask's defaults and then opts make of a batch's task:
// what a producer that hands its batches to the tenants' lanes (which enqueue them into
// asynq in turn) passes on.
func ResyncSettingsOf(opts ...asynq.Option) ResyncSettings {
	var s ResyncSettings
	for _, o := range append(resyncDefaults(), opts...) {
		switch v := o.Value().(type) {
		case string:
			if o.Type() == asynq.QueueOpt {
				s.Queue = v
			}
		case int:
			if o.Type() == asynq.MaxRetryOpt {
				s.MaxRetry = v
			}
		case time.Duration:
			switch o.Type() {
			case asynq.TimeoutOpt:
				s.Timeout = v
			case asynq.RetentionOpt:
				s.Retention = v
			}
		}
	}
	return s
}

// ParseBatch decodes a TypeResync payload and validates it.
func ParseBatch(payload []byte) (Batch, error) {
	var b Batch
	if err := json.Unmarshal(payload, &b); err != nil {
		return Batch{}, fmt.Errorf("%w: decode payload: %w", ErrInvalidBatch, err)
	}
	if err := b.Validate(); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// Trickle is the payload of a TypeTrickle task.
type Trickle struct {
	// Tenant is as Batch.Tenant.
	Tenant          string            `json:"tenant,omitempty"`
	ErpConnectionID int               `json:"erp_connection"`
	ActorType       erpsync.ActorType `json:"actor_type"`
	Key             string            `json:"key"`
	// At is when the key was handed over: the aggregator keeps a group's keys in this order,
	// and a trickle handled alone (no aggregator) belongs to the trickle run of its day (UTC).
	At time.Time `json:"at"`
}

// GroupName is the asynq group of the implicit tenant's trickle tasks for one ERP connection
// and actor type: "erpresync:3:Customer".
func GroupName(erpConnectionID int, actor erpsync.ActorType) string {
	return TenantGroupName("", erpConnectionID, actor)
}

// TenantGroupName is the asynq group of tenant's trickle tasks for one ERP connection and
// actor type: "erpresync:Cust12345:3:Customer" (GroupName's for the implicit tenant), so two
// tenants' keys of connection 3 never meet in one batch.
func TenantGroupName(tenant string, erpConnectionID int, actor erpsync.ActorType) string {
	g := "erpresync:"
	if tenant != "" {
		g += tenant + ":"
	}
	return g + strconv.Itoa(erpConnectionID) + ":" + actor.String()
}

// NewTrickleTask returns a TypeTrickle task for one key, in group GroupName(conn, actor),
// with the default options Queue(TrickleQueue), MaxRetry(DefaultMaxRetry),
// Timeout(DefaultTimeout) and Retention(0) (the aggregated batch keeps the result). opts
// override the defaults, but not the group: a group holds the keys of one connection and
// actor type, and the aggregator drops a key of another. The worker must run an
// asynq.Server with GroupAggregator set to NewAggregator.
func NewTrickleTask(erpConnectionID int, actor erpsync.ActorType, key string, opts ...asynq.Option) (*asynq.Task, error) {
	return NewTenantTrickleTask("", erpConnectionID, actor, key, opts...)
}

// NewTenantTrickleTask is NewTrickleTask for a key of tenant ("" the implicit tenant), in
// group TenantGroupName(tenant, conn, actor).
func NewTenantTrickleTask(tenant string, erpConnectionID int, actor erpsync.ActorType, key string, opts ...asynq.Option) (*asynq.Task, error) {
	if tenant != "" {
		if err := ValidateTenantID(tenant); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidBatch, err)
		}
	}
	if erpConnectionID <= 0 {
		return nil, fmt.Errorf("%w: erp connection id %d: must be positive", ErrInvalidBatch, erpConnectionID)
	}
	if err := actor.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	if err := erpsync.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("%w: trickle key: %w", ErrInvalidBatch, err)
	}
	payload, err := json.Marshal(Trickle{Tenant: tenant, ErpConnectionID: erpConnectionID, ActorType: actor, Key: key, At: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("encode trickle: %w", err)
	}
	all := append([]asynq.Option{
		asynq.Queue(TrickleQueue),
		asynq.MaxRetry(DefaultMaxRetry),
		asynq.Timeout(DefaultTimeout),
	}, opts...)
	all = append(all, asynq.Group(TenantGroupName(tenant, erpConnectionID, actor)))
	return asynq.NewTask(TypeTrickle, payload, all...), nil
}
