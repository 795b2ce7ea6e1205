package intake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

// Defaults of ProducerConfig and RunSpec.
const (
	// DefaultConcurrency is how many batches a Producer registers and enqueues at once.
	DefaultConcurrency = 8
	// DefaultProgressInterval is how often Submit reports progress.
	DefaultProgressInterval = 200 * time.Millisecond
	// DefaultOrigin is RunSpec.Origin's zero value.
	DefaultOrigin = "intake"
	// MaxReported is how many problems (invalid keys, duplicates) a Summary or a
	// ValidationError lists; the rest are only counted.
	MaxReported = 100
	// paramsTTL is how long a run's parameters are kept for the resubmission check.
	paramsTTL = 30 * 24 * time.Hour
	// batchTimeout bounds registering and enqueueing one batch, which go on when the
	// submission's context is cancelled.
	batchTimeout = 10 * time.Second
)

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	// Tenant is the SuperOffice tenant whose keys the Producer hands over
	// (tasks.ValidateTenantID); zero value: the implicit tenant of the SUPEROFFICE_* settings.
	// Its runs, batch IDs, trickle groups and ledger are the tenant's own: two tenants may
	// both have a run called "nightly". A tenant's batches wait in its lane (package
	// internal/lanes) until the workers' dispatcher gives the tenant its turn, so that one
	// tenant's backlog never delays another's run; the implicit tenant's go straight to asynq.
	Tenant string
	// Redis is the server that holds asynq's queues and the ledger. The Producer never closes
	// it. It may be nil for a Producer used only for dry runs.
	Redis redis.UniversalClient
	// Queue is the asynq queue for batches. Zero value: tasks.DefaultQueue.
	Queue string
	// TrickleQueue is the asynq queue for trickle keys (AddKey), which the worker serves
	// before the bulk queues. Zero value: tasks.TrickleQueue.
	TrickleQueue string
	// TaskOptions are applied to every task after the queue; e.g. asynq.MaxRetry(3).
	// asynq.TaskID, asynq.Queue and asynq.Group are refused: the producer sets them (batch
	// IDs, Queue, trickle groups), and a run's idempotence depends on them.
	TaskOptions []asynq.Option
	// Concurrency is how many batches are registered and enqueued at the same time, each
	// with its own Redis round trips. Zero value: DefaultConcurrency.
	Concurrency int
	// TempDir is where Submit copies a reader source (see Source). Zero value: os.TempDir().
	TempDir string
	// Progress, when set, is called about every ProgressInterval while Submit runs and once
	// more when it ends (Progress.Done). Calls never overlap; a slow callback delays only the
	// next report, never the submission.
	Progress func(Progress)
	// ProgressInterval is the time between Progress calls. Zero value: DefaultProgressInterval.
	ProgressInterval time.Duration
	// Now is the clock used to name runs. Zero value: time.Now.
	Now func() time.Time

	// hash replaces the key hash in tests (to force collisions).
	hash func([]byte) uint64
	// onBatch, when set (in tests), sees every batch formed, in order, before it is sent.
	onBatch func(seq int, keys []string)
	// renewEvery, when set (in tests), is how often a submission renews its run's open
	// intake; zero: ledger.IntakeLease/4.
	renewEvery time.Duration
}

func (c *ProducerConfig) validate() error {
	if c.Tenant != "" {
		if err := tasks.ValidateTenantID(c.Tenant); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("%w: concurrency %d: must not be negative", ErrConfig, c.Concurrency)
	}
	if c.ProgressInterval < 0 {
		return fmt.Errorf("%w: progress interval %s: must not be negative", ErrConfig, c.ProgressInterval)
	}
	if c.Queue != "" && strings.TrimSpace(c.Queue) == "" {
		return fmt.Errorf("%w: queue name %q is blank", ErrConfig, c.Queue)
	}
	for _, o := range c.TaskOptions {
		switch o.Type() {
		case asynq.TaskIDOpt, asynq.QueueOpt, asynq.GroupOpt:
			return fmt.Errorf("%w: task option %s: the producer sets it itself (batch ids, the queue, trickle groups)", ErrConfig, o)
		}
	}
	return nil
}

// RunSpec says what a submission is: which run, for which ERP connection and actor type,
// and how.
type RunSpec struct {
	// Run names the run. Zero value: a new name from NewRunName, reported in Summary.Run.
	// Submitting the same input under the same name again is safe: only batches not yet
	// enqueued are enqueued.
	Run string
	// ErpConnectionID is the ERP connection the keys belong to; must be positive.
	ErpConnectionID int
	// ActorType is the kind of ERP record the keys name; must not be Unknown.
	ActorType erpsync.ActorType
	// BatchSize is the number of keys per ForceResyncExternal call. Zero value:
	// tasks.DefaultBatchSize; at most tasks.MaxBatchSize. A resubmission must use the same.
	BatchSize int
	// Strict fails the whole submission, enqueuing nothing, if any key is invalid. Without
	// it invalid keys are skipped and reported in the Summary.
	Strict bool
	// DryRun validates, deduplicates and counts, but neither touches Redis nor enqueues.
	DryRun bool
	// AllowEmpty accepts an input without a valid key: Submit then records the empty run and
	// returns no error. Without it such an input is an error wrapping ErrNoKeys.
	AllowEmpty bool
	// Origin names the producer in the ledger (RunMeta.Source): "cli", "nightly", ...
	// Zero value: DefaultOrigin.
	Origin string
}

// Summary is the outcome of Submit. Read = Valid + Invalid; Valid = Keys + Duplicates.
type Summary struct {
	Run    string `json:"run"`
	Source string `json:"source"`
	DryRun bool   `json:"dry_run"`
	// Read counts records that hold a key (blank lines and the CSV header are not counted).
	Read int64 `json:"read"`
	// Valid counts keys that passed validation, duplicates included.
	Valid int64 `json:"valid"`
	// Invalid counts records skipped as invalid (a too long key, a character XML cannot
	// carry, invalid UTF-8, a CSV record without the key column).
	Invalid int64 `json:"invalid"`
	// Duplicates counts valid keys dropped because the run had already taken them.
	Duplicates int64 `json:"duplicates"`
	// Keys counts the distinct keys put in batches.
	Keys int64 `json:"keys"`
	// Batches counts the batches formed (the last one may be short).
	Batches int `json:"batches"`
	// BatchesEnqueued counts batches this call enqueued; BatchesPresent those already in
	// the queue (asynq.ErrTaskIDConflict) from an earlier submission of the same run.
	BatchesEnqueued int `json:"batches_enqueued"`
	BatchesPresent  int `json:"batches_present"`
	// KeysEnqueued counts the keys of the batches this call enqueued.
	KeysEnqueued int64 `json:"keys_enqueued"`
	// Problems lists the first MaxReported invalid and duplicate records in input order;
	// ProblemsOmitted counts the rest.
	Problems        []*KeyError `json:"problems"`
	ProblemsOmitted int64       `json:"problems_omitted"`
	// Elapsed is how long Submit took.
	Elapsed time.Duration `json:"elapsed_ns"`
	// DedupeBytes is the memory the duplicate check held at the end.
	DedupeBytes int `json:"dedupe_bytes"`
}

// MarshalJSON writes Problems as [] when there are none, so that readers of
// `enqueue --json` and of the intake API always find a list.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	if s.Problems == nil {
		s.Problems = []*KeyError{}
	}
	return json.Marshal(plain(s))
}

// Trickled is the answer to a trickle hand-over (`enqueue key --json`, the intake API's
// POST /v1/keys): how many keys, and the asynq queue and group they wait in.
type Trickled struct {
	Keys int `json:"keys"`
	// Run is the trickle run the keys join: the day's trickle-YYYY-MM-DD-CONNECTION-ACTOR.
	Run   string `json:"run"`
	Group string `json:"group"`
	Queue string `json:"queue"`
}

// Trickled is the answer to n keys of erpConnectionID and actor handed over with AddKey now.
func (p *Producer) Trickled(n, erpConnectionID int, actor erpsync.ActorType) Trickled {
	return Trickled{Keys: n, Run: tasks.TrickleRun(p.cfg.Now(), erpConnectionID, actor),
		Group: tasks.TenantGroupName(p.cfg.Tenant, erpConnectionID, actor), Queue: p.cfg.TrickleQueue}
}

// Progress is a snapshot of a running Submit, for progress bars.
type Progress struct {
	Run string
	// Phase is "validating" during strict mode's first pass, then "submitting".
	Phase string
	// Bytes is how far into the input the current phase has read; TotalBytes is its size.
	Bytes, TotalBytes int64
	// Read, Valid, Invalid and Duplicates count records as in Summary.
	Read, Valid, Invalid, Duplicates int64
	// Batches counts batches formed; BatchesEnqueued and BatchesPresent those done.
	Batches, BatchesEnqueued, BatchesPresent int64
	// KeysEnqueued counts the keys of the batches enqueued, as in Summary (not those of
	// batches already present).
	KeysEnqueued int64
	Elapsed      time.Duration
	// Done is set on the last call.
	Done bool
}

// Producer submits ERP external keys as resync batches: from files and readers (Submit) or
// one at a time (AddKey). A Producer is safe for concurrent use.
type Producer struct {
	cfg    ProducerConfig
	lanes  *lanes.Queue // a tenant's batches go here, not to asynq; nil for the implicit tenant
	client *asynq.Client
	insp   *asynq.Inspector // reads a batch already present, to compare its keys
	ledger *ledger.Ledger
	opts   []asynq.Option
}

// NewProducer returns a Producer. It does not contact Redis.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.ProgressInterval = cmp.Or(cfg.ProgressInterval, DefaultProgressInterval)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Queue = cmp.Or(cfg.Queue, tasks.DefaultQueue)
	cfg.TrickleQueue = cmp.Or(cfg.TrickleQueue, tasks.TrickleQueue)
	p := &Producer{cfg: cfg, opts: append([]asynq.Option{asynq.Queue(cfg.Queue)}, cfg.TaskOptions...)}
	// Options asynq or tasks would refuse fail here, not batch by batch in the middle of a run.
	probe := tasks.Batch{Run: "probe", ErpConnectionID: 1, ActorType: erpsync.ActorCustomer, Keys: []string{"probe"}}
	if _, err := tasks.NewResyncTask(probe, p.opts...); err != nil {
		return nil, fmt.Errorf("%w: TaskOptions: %w", ErrConfig, err)
	}
	if cfg.Redis != nil {
		p.client = asynq.NewClientFromRedisClient(cfg.Redis)
		p.insp = asynq.NewInspectorFromRedisClient(cfg.Redis)
		p.ledger = ledger.NewLedger(cfg.Redis).Tenant(cfg.Tenant)
		if cfg.Tenant != "" {
			var err error
			if p.lanes, err = lanes.New(lanes.Config{Redis: cfg.Redis, Queues: []string{cfg.Queue}, ValidTenant: tasks.ValidateTenantID}); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrConfig, err)
			}
		}
	}
	return p, nil
}

// NewRunName returns a fresh run name for t: "run-20261127-101500-ab12" (UTC, and four
// random hex digits).
func NewRunName(t time.Time) string {
	var b [2]byte
	rand.Read(b[:])
	return "run-" + t.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// ValidateRunName is tasks.ValidateBulkRunName wrapping ErrConfig: the check of a run name
// a producer gives (RunSpec.Run, `enqueue --run`, the intake API's PUT).
func ValidateRunName(name string) error {
	if err := tasks.ValidateBulkRunName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (p *Producer) checkSpec(spec *RunSpec) error {
	if spec.Run == "" {
		spec.Run = NewRunName(p.cfg.Now())
	}
	if err := ValidateRunName(spec.Run); err != nil {
		return err
	}
	if spec.ErpConnectionID <= 0 {
		return fmt.Errorf("%w: ERP connection id %d: must be a positive integer", ErrConfig, spec.ErpConnectionID)
	}
	if err := spec.ActorType.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	spec.BatchSize = cmp.Or(spec.BatchSize, tasks.DefaultBatchSize)
	if spec.BatchSize < 1 || spec.BatchSize > tasks.MaxBatchSize {
		return fmt.Errorf("%w: batch size %d: want 1 to %d", ErrConfig, spec.BatchSize, tasks.MaxBatchSize)
	}
	spec.Origin = cmp.Or(spec.Origin, DefaultOrigin)
	if !spec.DryRun && p.client == nil {
		return fmt.Errorf("%w: the producer has no Redis client; only dry runs are possible", ErrConfig)
	}
	return nil
}

// AddKey hands one key over for resync (trickle intake): it becomes a tasks.TypeTrickle
// task in the asynq group of its ERP connection and actor type, which the worker's
// aggregator merges with others into full batches. The key is used as given (not trimmed)
// and must pass erpsync.ValidateKey; the error then wraps a *erpsync.KeyError.
func (p *Producer) AddKey(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, key string) error {
	if p.client == nil {
		return fmt.Errorf("%w: the producer has no Redis client", ErrConfig)
	}
	t, err := tasks.NewTenantTrickleTask(p.cfg.Tenant, erpConnectionID, actor, key, append(p.opts[:len(p.opts):len(p.opts)], asynq.Queue(p.cfg.TrickleQueue))...)
	if err != nil {
		return err
	}
	if _, err := p.client.EnqueueContext(ctx, t); err != nil {
		return fmt.Errorf("enqueue trickle key: %w", err)
	}
	return nil
}

// Submit reads keys from src and enqueues them as batches of spec.BatchSize distinct keys
// in input order. Batch i gets the asynq task ID tasks.BatchID(run, i) and is registered in
// the ledger before it is enqueued, so submitting the same input under the same run again
// (after a crash, an error or a cancelled context) enqueues only the batches that are
// missing and never a key twice.
//
// Keys are streamed: memory holds a few batches and the duplicate check (about 16 MiB per
// million distinct keys), never the input. The returned Summary is filled as far as the
// submission got, also when err is not nil. In strict mode an invalid key gives a
// *ValidationError before anything is enqueued. A malformed CSV file stops the
// submission with an error naming the line. After a complete pass (not a dry run) the keys
// skipped as invalid are recorded in the run (the run ledger's RecordIntake); an input without a
// valid key is then an error wrapping ErrNoKeys unless spec.AllowEmpty, and its run is in
// the ledger with no keys (ledger.RunEmpty).
func (p *Producer) Submit(ctx context.Context, spec RunSpec, src Source) (sum Summary, err error) {
	start := time.Now()
	sum = Summary{Source: src.name(), DryRun: spec.DryRun}
	defer func() { sum.Elapsed = time.Since(start) }()
	if err := p.checkSpec(&spec); err != nil {
		return sum, err
	}
	sum.Run = spec.Run
	if err := src.Validate(); err != nil {
		return sum, err
	}
	f, cleanup, err := p.open(ctx, src)
	if err != nil {
		return sum, err
	}
	defer cleanup()
	st, err := f.Stat()
	if err != nil {
		return sum, err
	}
	s := &submission{
		p: p, spec: spec, src: src, f: f, name: src.name(), size: st.Size(), start: start,
	}
	if s.size > 0 { // an empty input has no CSV header to read and nothing to scan
		if s.ft, err = src.resolveFormat(f); err != nil {
			return sum, err
		}
		stop := s.reportProgress()
		err = s.run(ctx)
		stop()
		s.fill(&sum)
		if err != nil {
			return sum, fmt.Errorf("submit run %s: %w", spec.Run, err)
		}
	}
	if err := s.recordIntake(ctx); err != nil {
		return sum, fmt.Errorf("submit run %s: %w", spec.Run, err)
	}
	if sum.Keys == 0 && !spec.AllowEmpty {
		return sum, fmt.Errorf("submit run %s: %w", spec.Run, noKeysError(s.name, s.size, sum))
	}
	return sum, nil
}

// recordIntake records in the ledger, after a complete pass, the keys rejected as invalid and
// — for an input without a valid key — the run itself, so that it is visible as empty.
func (s *submission) recordIntake(ctx context.Context) error {
	if s.spec.DryRun {
		return nil
	}
	rej := make([]ledger.RejectedKey, len(s.rejected))
	for i, ke := range s.rejected {
		rej[i] = ledger.RejectedKey{Source: ke.File, Line: ke.Line, Key: ke.Key, Reason: ke.Reason}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	return s.p.ledger.RecordIntake(ctx, s.meta(), s.invalid.Load(), rej)
}

// meta is the run as the ledger creates it.
func (s *submission) meta() ledger.RunMeta {
	return ledger.RunMeta{Run: s.spec.Run, ErpConnectionID: s.spec.ErpConnectionID, ActorType: s.spec.ActorType, Source: s.spec.Origin}
}

// open returns the input as a file; a reader, or a path that is not a regular file (a
// pipe: `--file <(erp-export)`), is spooled to a temporary file first.
func (p *Producer) open(ctx context.Context, src Source) (*os.File, func(), error) {
	r := src.R
	if src.Path != "" {
		f, err := os.Open(src.Path)
		if err != nil {
			return nil, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		if fi.Mode().IsRegular() {
			return f, func() { f.Close() }, nil
		}
		defer f.Close()
		r = f
	}
	f, err := os.CreateTemp(p.cfg.TempDir, "erpresync-intake-*.keys")
	if err != nil {
		return nil, nil, fmt.Errorf("spool %s: %w", src.name(), err)
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("spool %s to %s: %w", src.name(), f.Name(), err)
	}
	return f, cleanup, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// runParams are what must not change between submissions of one run.
type runParams struct {
	ErpConnectionID int    `json:"erp_connection"`
	ActorType       string `json:"actor_type"`
	BatchSize       int    `json:"batch_size"`
	Format          string `json:"format"`
	// Queue matters because asynq task IDs are unique per queue only: in another queue every
	// batch would be enqueued again.
	Queue string `json:"queue"`
}

func paramsKey(run string) string { return "erpresync:intake:{" + run + "}:params" }

// checkParams records the run's parameters on its first submission and refuses a later one
// with different parameters.
func (p *Producer) checkParams(ctx context.Context, spec RunSpec, ft format) error {
	f := "lines"
	if ft.csv {
		f = "csv:" + strconv.Itoa(ft.column) + ":" + strconv.FormatBool(ft.header) + ":" + string(ft.comma)
	}
	want := runParams{ErpConnectionID: spec.ErpConnectionID, ActorType: spec.ActorType.String(), BatchSize: spec.BatchSize, Format: f, Queue: p.cfg.Queue}
	b, _ := json.Marshal(want)
	key := paramsKey(tasks.RunKey(p.cfg.Tenant, spec.Run))
	ok, err := p.cfg.Redis.SetNX(ctx, key, b, paramsTTL).Result()
	if err != nil {
		return fmt.Errorf("record run parameters: %w", err)
	}
	if ok {
		return nil
	}
	raw, err := p.cfg.Redis.Get(ctx, key).Bytes()
	if err != nil {
		return fmt.Errorf("read run parameters: %w", err)
	}
	var have runParams
	if err := json.Unmarshal(raw, &have); err != nil {
		return fmt.Errorf("read run parameters: %w", err)
	}
	if have.Queue == "" {
		have.Queue = want.Queue // recorded before the queue was
	}
	if have != want {
		return fmt.Errorf("%w: run %s was submitted with ERP connection %d, actor type %s, batch size %d, format %s, queue %s; this submission has %d, %s, %d, %s, %s (resubmit with the same settings or choose another run name)",
			ErrRunMismatch, spec.Run, have.ErpConnectionID, have.ActorType, have.BatchSize, have.Format, have.Queue,
			want.ErpConnectionID, want.ActorType, want.BatchSize, want.Format, want.Queue)
	}
	p.cfg.Redis.Expire(ctx, key, paramsTTL)
	return nil
}

// checkpointEvery is how many records lie between two remembered offsets.
const checkpointEvery = 64

type checkpoint struct {
	off  int64
	line int
}

// submission is the state of one Submit.
type submission struct {
	p     *Producer
	spec  RunSpec
	src   Source
	f     *os.File
	ft    format
	name  string
	size  int64
	start time.Time

	phase                      atomic.Value // string
	bytes                      atomic.Int64
	read, valid, invalid, dups atomic.Int64
	batches, enqueued, present atomic.Int64
	keysEnqueued               atomic.Int64

	problems        []*KeyError
	problemsOmitted int64
	// rejected are the first ledger.MaxRejected invalid keys, for the ledger.
	rejected    []*KeyError
	dedupeBytes int
}

func (s *submission) fill(sum *Summary) {
	sum.Read = s.read.Load()
	sum.Valid = s.valid.Load()
	sum.Invalid = s.invalid.Load()
	sum.Duplicates = s.dups.Load()
	sum.Keys = sum.Valid - sum.Duplicates
	sum.Batches = int(s.batches.Load())
	sum.BatchesEnqueued = int(s.enqueued.Load())
	sum.BatchesPresent = int(s.present.Load())
	sum.KeysEnqueued = s.keysEnqueued.Load()
	sum.Problems = s.problems
	sum.ProblemsOmitted = s.problemsOmitted
	sum.DedupeBytes = s.dedupeBytes
}

func (s *submission) snapshot(done bool) Progress {
	ph, _ := s.phase.Load().(string)
	return Progress{
		Run: s.spec.Run, Phase: ph, Bytes: s.bytes.Load(), TotalBytes: s.size,
		Read: s.read.Load(), Valid: s.valid.Load(), Invalid: s.invalid.Load(), Duplicates: s.dups.Load(),
		Batches: s.batches.Load(), BatchesEnqueued: s.enqueued.Load(), BatchesPresent: s.present.Load(),
		KeysEnqueued: s.keysEnqueued.Load(), Elapsed: time.Since(s.start), Done: done,
	}
}

// reportProgress calls the Progress callback periodically until the returned stop is
// called, which makes the final call.
func (s *submission) reportProgress() (stop func()) {
	fn := s.p.cfg.Progress
	if fn == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.p.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fn(s.snapshot(false))
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		fn(s.snapshot(true))
	}
}

func (s *submission) problem(ke *KeyError) {
	if len(s.problems) < MaxReported {
		s.problems = append(s.problems, ke)
	} else {
		s.problemsOmitted++
	}
}

// keyError validates key; it returns nil for a valid key.
func (s *submission) keyError(rec *record) *KeyError {
	var err error
	if rec.problem != nil {
		err = rec.problem
	} else {
		err = erpsync.ValidateKey(unsafe.String(unsafe.SliceData(rec.key), len(rec.key)))
	}
	if err == nil {
		return nil
	}
	reason := err.Error()
	var sk *erpsync.KeyError
	if errors.As(err, &sk) {
		reason = sk.Reason
	}
	return &KeyError{File: s.name, Line: rec.line, Key: erpsync.Truncate(string(rec.key), 40), Reason: reason, Err: err}
}

func (s *submission) run(ctx context.Context) error {
	hint := 0
	if s.spec.Strict {
		s.phase.Store("validating")
		n, err := s.validateAll(ctx)
		if err != nil {
			return err
		}
		hint = n
		s.read.Store(0)
		s.valid.Store(0)
		s.bytes.Store(0)
	} else {
		n, err := countLines(ctx, s.f)
		if err != nil {
			return err
		}
		hint = n
	}
	// Only now, so that a strict submission refused above leaves nothing in Redis.
	if !s.spec.DryRun {
		if err := s.p.checkParams(ctx, s.spec, s.ft); err != nil {
			return err
		}
		// Until recordIntake seals it, the run is not finished, whatever its batches do: a
		// submission cut off after some batches must not show as done.
		if err := s.p.ledger.OpenIntake(ctx, s.meta()); err != nil {
			return err
		}
		defer s.renewIntake(ctx)()
	}
	s.phase.Store("submitting")
	return s.submit(ctx, hint)
}

// renewIntake renews the run's open intake every IntakeLease/4 until the returned stop is
// called, so that the run reads as still being received (not incomplete) while this
// submission goes on, however long a pause between its batches. A renewal that fails is
// tried again at the next tick: a lapsed lease only shows the run as incomplete early.
func (s *submission) renewIntake(ctx context.Context) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cmp.Or(s.p.cfg.renewEvery, ledger.IntakeLease/4))
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = s.p.ledger.RenewIntake(ctx, s.spec.Run)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// countLines counts line breaks, as a size hint for the duplicate check.
func countLines(ctx context.Context, f *os.File) (int, error) {
	buf := make([]byte, 256<<10)
	n := 0
	for off := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		m, err := f.ReadAt(buf, off)
		n += bytes.Count(buf[:m], []byte{'\n'})
		off += int64(m)
		if err == io.EOF {
			return n + 1, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// validateAll is strict mode's first pass: it returns the number of valid keys, or a
// *ValidationError.
func (s *submission) validateAll(ctx context.Context) (int, error) {
	rr := newRecordReader(s.f, 0, 1, s.ft, 64<<10)
	var rec record
	var verr ValidationError
	for i := 0; ; i++ {
		if i&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			s.bytes.Store(rr.offset())
		}
		err := rr.next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", s.name, err)
		}
		if rec.blank {
			continue
		}
		s.read.Add(1)
		if ke := s.keyError(&rec); ke != nil {
			verr.Invalid++
			if len(verr.Errors) < MaxReported {
				verr.Errors = append(verr.Errors, ke)
			}
			continue
		}
		s.valid.Add(1)
	}
	if verr.Invalid > 0 {
		s.invalid.Store(int64(verr.Invalid))
		s.problems = verr.Errors
		s.problemsOmitted = int64(verr.Invalid - len(verr.Errors))
		return 0, &verr
	}
	return int(s.valid.Load()), nil
}

type job struct {
	seq  int
	keys []string
}

// submit is the pass that deduplicates, batches and enqueues.
func (s *submission) submit(ctx context.Context, hint int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan job, s.p.cfg.Concurrency*2)
	var (
		wg      sync.WaitGroup
		once    sync.Once
		werr    error
		skipped atomic.Bool
	)
	if !s.spec.DryRun {
		for range s.p.cfg.Concurrency {
			wg.Go(func() {
				for j := range jobs {
					if ctx.Err() != nil {
						skipped.Store(true)
						continue
					}
					if err := s.enqueue(ctx, j); err != nil {
						once.Do(func() { werr = err })
						cancel(err)
					}
				}
			})
		}
	}
	err := s.scan(ctx, hint, jobs)
	close(jobs)
	wg.Wait()
	switch {
	case werr != nil:
		return werr
	case err != nil:
		return err
	case skipped.Load():
		return ctxDone(ctx)
	}
	return nil
}

// scan reads the input, validates, deduplicates and sends full batches to jobs. It is one
// loop over every record, kept whole (about 100 lines): the checkpoints, the duplicate
// check's re-reads and the batching share its state (the record index, the first line of
// a duplicate, the open batch), and split apart they would pass that state back and forth
// on the path every key takes.
func (s *submission) scan(ctx context.Context, hint int, jobs chan<- job) error {
	rr := newRecordReader(s.f, 0, 1, s.ft, 64<<10)
	seen := newSeenSet(hint, s.p.cfg.hash)
	defer func() {
		s.dedupeBytes = seen.bytes()
		seen.release()
	}()
	var cps []checkpoint
	var vr verifier
	var rec record
	firstLine := 0
	seen.verify = func(r uint32, key []byte) (bool, error) {
		same, line, err := vr.matches(s, cps, r, key)
		if same {
			firstLine = line
		}
		return same, err
	}
	batch := make([]string, 0, s.spec.BatchSize)
	seq := 0
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		s.batches.Add(1)
		if s.p.cfg.onBatch != nil {
			s.p.cfg.onBatch(seq, append([]string(nil), batch...))
		}
		if s.spec.DryRun {
			seq++
			batch = batch[:0]
			return nil
		}
		select {
		case jobs <- job{seq: seq, keys: batch}:
		case <-ctx.Done():
			return ctxDone(ctx)
		}
		seq++
		batch = make([]string, 0, s.spec.BatchSize)
		return nil
	}
	for idx := 0; ; idx++ {
		if idx%checkpointEvery == 0 {
			if idx/checkpointEvery >= len(cps) {
				cps = append(cps, checkpoint{rr.offset(), rr.line()})
			}
			if err := ctx.Err(); err != nil {
				return ctxDone(ctx)
			}
			s.bytes.Store(rr.offset())
		}
		if idx > maxRecords {
			return fmt.Errorf("%s: more than %d records", s.name, maxRecords)
		}
		err := rr.next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if rec.blank {
			continue
		}
		s.read.Add(1)
		if ke := s.keyError(&rec); ke != nil {
			if s.spec.Strict {
				return fmt.Errorf("%w (the input changed after it was validated)", ke)
			}
			s.invalid.Add(1)
			s.problem(ke)
			if len(s.rejected) < ledger.MaxRejected {
				s.rejected = append(s.rejected, ke)
			}
			continue
		}
		s.valid.Add(1)
		dup, err := seen.take(rec.key, uint32(idx))
		if err != nil {
			return fmt.Errorf("%s: re-reading an earlier key: %w", s.name, err)
		}
		if dup {
			s.dups.Add(1)
			s.problem(&KeyError{File: s.name, Line: rec.line, Key: erpsync.Truncate(string(rec.key), 40),
				Reason: "duplicate of line " + strconv.Itoa(firstLine), Err: ErrDuplicate})
			continue
		}
		batch = append(batch, string(rec.key))
		if len(batch) == s.spec.BatchSize {
			if err := send(); err != nil {
				return err
			}
		}
	}
	s.bytes.Store(s.size)
	return send()
}

// verifier re-reads earlier records for the duplicate check.
type verifier struct {
	rec record
}

// matches reports whether record r holds key, and its line.
func (v *verifier) matches(s *submission, cps []checkpoint, r uint32, key []byte) (bool, int, error) {
	cp := cps[r/checkpointEvery]
	rr := newRecordReader(s.f, cp.off, cp.line, s.ft, 4<<10)
	for i := uint32(0); i <= r%checkpointEvery; i++ {
		if err := rr.next(&v.rec); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, 0, err
		}
	}
	return bytes.Equal(v.rec.key, key), v.rec.line, nil
}

// enqueue registers batch j in the ledger, then enqueues it. The task is built first, so
// that nothing can fail between the two but Redis; and once begun, both are done even if
// ctx is cancelled in between (Ctrl-C): registered alone, the batch would count keys in the
// run that nothing resyncs. batchTimeout bounds them for a Redis that does not answer.
func (s *submission) enqueue(ctx context.Context, j job) error {
	id := tasks.BatchID(tasks.RunKey(s.p.cfg.Tenant, s.spec.Run), j.seq)
	t, err := tasks.NewResyncTask(tasks.Batch{
		Tenant: s.p.cfg.Tenant, Run: s.spec.Run, ErpConnectionID: s.spec.ErpConnectionID, ActorType: s.spec.ActorType,
		Keys: j.keys, Seq: j.seq, Source: s.spec.Origin,
	}, s.p.opts...)
	if err != nil {
		return fmt.Errorf("batch %s: %w", id, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	if _, err := s.p.ledger.RegisterBatch(ctx, s.meta(), id, len(j.keys)); err != nil {
		return fmt.Errorf("register batch %s: %w", id, err)
	}
	err = s.p.send(ctx, t, id)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		if err := s.checkPresent(id, j.keys); err != nil {
			return err
		}
		s.present.Add(1)
	case err != nil:
		return fmt.Errorf("enqueue batch %s: %w", id, err)
	default:
		s.enqueued.Add(1)
		s.keysEnqueued.Add(int64(len(j.keys)))
	}
	return nil
}

// checkPresent makes sure that the batch already queued as id holds keys. Other keys mean
// that this input is not the one first submitted under the run; counting the batch as
// present would silently drop them. It costs a round trip per batch already present, so
// only resubmissions pay it. (asynq's Inspector takes no context.)
func (s *submission) checkPresent(id string, keys []string) error {
	payload, err := s.p.Present(id)
	if err != nil {
		return fmt.Errorf("read batch %s already present: %w", id, err)
	}
	if payload == nil {
		return nil // gone since the conflict (retention, or its dead letters were requeued)
	}
	var have tasks.Batch
	if err := json.Unmarshal(payload, &have); err != nil {
		return fmt.Errorf("read batch %s already present: %w", id, err)
	}
	if slices.Equal(have.Keys, keys) {
		return nil
	}
	var diff string
	for i := range min(len(have.Keys), len(keys)) {
		if have.Keys[i] != keys[i] {
			diff = fmt.Sprintf("key %d is %q there, %q in this input", i+1, erpsync.Truncate(have.Keys[i], 40), erpsync.Truncate(keys[i], 40))
			break
		}
	}
	if diff == "" {
		diff = fmt.Sprintf("it holds %d keys, this input %d", len(have.Keys), len(keys))
	}
	return fmt.Errorf("%w: batch %s already holds other keys (%s): this is not the input first submitted as run %s; submit it under a new run name",
		ErrRunMismatch, id, diff, s.spec.Run)
}

// send hands batch task t (task ID id) over: to asynq, or a tenant's to its lane. A batch
// already there is an error wrapping asynq.ErrTaskIDConflict either way.
func (p *Producer) send(ctx context.Context, t *asynq.Task, id string) error {
	if p.lanes == nil {
		_, err := p.client.EnqueueContext(ctx, t)
		return err
	}
	st := tasks.ResyncSettingsOf(p.opts...)
	return p.lanes.Enqueue(ctx, p.cfg.Tenant, lanes.Job{ID: id, Type: t.Type(), Payload: t.Payload(), Queue: st.Queue,
		MaxRetry: st.MaxRetry, Timeout: st.Timeout, Retention: st.Retention})
}

// Present is the payload of batch id (tasks.BatchID) that the Producer's tenant handed over
// to its queue — in asynq, or still waiting in the tenant's lane — or nil when it is in
// neither (not handed over, or done and gone).
func (p *Producer) Present(id string) ([]byte, error) {
	if p.insp == nil {
		return nil, fmt.Errorf("%w: the producer has no Redis client", ErrConfig)
	}
	info, err := p.insp.GetTaskInfo(p.cfg.Queue, id)
	switch {
	case err == nil:
		return info.Payload, nil
	case !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound):
		return nil, err
	case p.lanes == nil:
		return nil, nil
	}
	job, ok, err := p.lanes.Job(context.Background(), p.cfg.Tenant, id)
	if err != nil || !ok {
		return nil, err
	}
	return job.Payload, nil
}

// ctxDone is the error of a done ctx: its cause (a failed batch, the signal
// signal.NotifyContext received), still matching ctx.Err() (context.Canceled) with errors.Is.
func ctxDone(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if errors.Is(cause, err) {
		return cause
	}
	return fmt.Errorf("%w (%w)", err, cause)
}
