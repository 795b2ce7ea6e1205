package nightly

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

// TypeNightly is the task the scheduler fires for an entry; its payload is the Entry as JSON.
const TypeNightly = "erpresync:nightly"

// Defaults of the TypeNightly task, overridable by Register's options.
const (
	// DefaultMaxRetry retries a failed nightly task (for example a source the ERP export has
	// not written yet) a few times with asynq's backoff, not all night.
	DefaultMaxRetry = 3
	// DefaultTimeout bounds one submission; ten million keys take well under a minute.
	DefaultTimeout = time.Hour
)

// Outcomes, the "outcome" label of erpresync_nightly_runs_total.
const (
	OutcomeSubmitted     = "submitted"      // the source was submitted
	OutcomeOverlap       = "overlap"        // skipped: the previous run of the entry is still active
	OutcomeSourceMissing = "source_missing" // error: no file matches the source
	OutcomeSourceEmpty   = "source_empty"   // error: the file holds no valid key
	OutcomeFailed        = "failed"         // error: reading, validation, Redis
)

// Errors the handler returns (wrapped, with the entry and the path).
var (
	// ErrSourceMissing means no file matches the entry's source.
	ErrSourceMissing = errors.New("nightly source missing")
	// ErrSourceEmpty means the source file is empty or holds no valid key; the error wraps
	// intake.ErrNoKeys too. Nothing was enqueued (an empty key list would make SuperOffice
	// resync everything); the run is in the ledger with state ledger.RunEmpty.
	ErrSourceEmpty = errors.New("nightly source empty")
)

// Scheduler is what Register needs of an *asynq.Scheduler.
type Scheduler interface {
	Register(cronspec string, task *asynq.Task, opts ...asynq.Option) (entryID string, err error)
}

// Register adds one scheduler entry per configured Entry, each firing a TypeNightly task
// with the defaults Queue(tasks.DefaultQueue), MaxRetry(DefaultMaxRetry) and
// Timeout(DefaultTimeout); opts override them. It returns the scheduler's entry IDs, in
// order. The worker calls it before starting the scheduler and serves TypeNightly with a
// Handler.
func Register(s Scheduler, cfg Config, opts ...asynq.Option) ([]string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range cfg.Entries {
		payload, err := json.Marshal(e)
		if err != nil {
			return ids, fmt.Errorf("nightly %s: %w", e.Name, err)
		}
		all := append([]asynq.Option{
			asynq.Queue(tasks.DefaultQueue), asynq.MaxRetry(DefaultMaxRetry), asynq.Timeout(DefaultTimeout),
		}, opts...)
		id, err := s.Register(e.Cron, asynq.NewTask(TypeNightly, payload, all...))
		if err != nil {
			return ids, fmt.Errorf("nightly %s: cron %q: %w", e.Name, e.Cron, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Metrics are the nightly collectors. A nil *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	// Runs counts handled TypeNightly tasks by entry and outcome (see the Outcome constants).
	Runs *prometheus.CounterVec
	// Keys counts keys enqueued by entry (a resubmission counts only what it added).
	Keys *prometheus.CounterVec
	// LastSubmitted is the Unix time of the entry's last successful submission.
	LastSubmitted *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_nightly_runs_total",
			Help: "Nightly resync tasks handled, by entry and outcome (submitted, overlap, source_missing, source_empty, failed).",
		}, []string{"entry", "outcome"}),
		Keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_nightly_keys_total",
			Help: "Keys enqueued by nightly resyncs, by entry.",
		}, []string{"entry"}),
		LastSubmitted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "erpresync_nightly_last_submitted_timestamp_seconds",
			Help: "Unix time of the entry's last successful nightly submission.",
		}, []string{"entry"}),
	}
	if reg != nil {
		reg.MustRegister(m.Runs, m.Keys, m.LastSubmitted)
	}
	return m
}

func (m *Metrics) outcome(entry, outcome string) {
	if m != nil {
		m.Runs.WithLabelValues(entry, outcome).Inc()
	}
}

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// Producer submits the source files of the implicit tenant's entries. Required unless
	// Producers is set.
	Producer *intake.Producer
	// Producers returns the producer of a tenant's entries (nil when the tenant is not
	// configured: the firing fails and asynq retries it). Nil: only the implicit tenant's
	// entries can be submitted.
	Producers func(tenant string) *intake.Producer
	// Redis holds the ledger and each entry's last run name. Required; not closed.
	Redis redis.UniversalClient
	// Logger receives one line per task. Zero value: no logs.
	Logger zerolog.Logger
	// Metrics, when set, counts outcomes.
	Metrics *Metrics
	// Now is the clock that dates runs. Zero value: time.Now.
	Now func() time.Time
	// Location is the time zone of the date in run names. Zero value: UTC.
	Location *time.Location
}

// Handler handles TypeNightly tasks. It is safe for concurrent use.
type Handler struct {
	cfg    HandlerConfig
	ledger *ledger.Ledger
}

// NewHandler returns a Handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Producer == nil && cfg.Producers == nil {
		return nil, fmt.Errorf("%w: handler needs a Producer", ErrConfig)
	}
	if cfg.Redis == nil {
		return nil, fmt.Errorf("%w: handler needs a Redis client", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	return &Handler{cfg: cfg, ledger: ledger.NewLedger(cfg.Redis)}, nil
}

// RunName is the run of entry name on day t: "nightly-customers-2026-11-27".
func RunName(name string, t time.Time) string {
	return "nightly-" + name + "-" + t.Format("2006-01-02")
}

func lastRunKey(e Entry) string { return "erpresync:nightly:" + e.key() + ":last" }

// producer is the producer of e's tenant, or nil.
func (h *Handler) producer(e Entry) *intake.Producer {
	if h.cfg.Producers != nil {
		return h.cfg.Producers(e.Tenant)
	}
	if e.Tenant == "" {
		return h.cfg.Producer
	}
	return nil
}

// taskRunKey holds the run a nightly task's first attempt named, for its retries.
func taskRunKey(taskID string) string { return "erpresync:nightly:task:" + taskID + ":run" }

// taskRunTTL is how long a task's run name is kept: longer than asynq retries a task.
const taskRunTTL = 7 * 24 * time.Hour

// runOf names the run task e submits: after the day its first attempt ran (asynq keeps the
// task ID across retries), so that a retry after midnight resubmits that run instead of
// starting the next day's with the same file.
func (h *Handler) runOf(ctx context.Context, e Entry) (string, error) {
	run := RunName(e.Name, h.cfg.Now().In(h.cfg.Location))
	id, ok := asynq.GetTaskID(ctx)
	if !ok {
		return run, nil // called outside asynq
	}
	first, err := h.cfg.Redis.SetNX(ctx, taskRunKey(id), run, taskRunTTL).Result()
	if err != nil || first {
		return run, err
	}
	return h.cfg.Redis.Get(ctx, taskRunKey(id)).Result()
}

// ProcessTask submits the entry's source as today's run, unless the entry's previous run
// is still active (then it logs, counts an overlap and returns nil: no retry, no error). A
// missing or empty source is an error (logged, counted, retried by asynq up to MaxRetry);
// nothing is enqueued for it. Today's run may be submitted again — after a crash, a retry
// or a second scheduler firing — because intake enqueues only what is missing. "Today" is
// the day of the task's first attempt: a retry after midnight keeps its run.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var e Entry
	if err := json.Unmarshal(t.Payload(), &e); err != nil {
		return fmt.Errorf("nightly payload: %v: %w", err, asynq.SkipRetry)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("nightly payload: %w: %w", err, asynq.SkipRetry)
	}
	m := h.cfg.Metrics
	run, err := h.runOf(ctx, e)
	if err != nil {
		m.outcome(e.Name, OutcomeFailed)
		return fmt.Errorf("nightly %s: name the run: %w", e.Name, err)
	}
	lc := h.cfg.Logger.With()
	if e.Tenant != "" {
		lc = lc.Str("tenant", e.Tenant)
	}
	log := lc.Str("nightly", e.Name).Str("run", run).Int("erp_connection", e.ErpConnection).Logger()
	producer := h.producer(e)
	if producer == nil {
		log.Error().Msg("nightly: the entry's tenant is not configured on this worker; nothing enqueued")
		m.outcome(e.Name, OutcomeFailed)
		return fmt.Errorf("nightly %s: tenant %q is not configured on this worker", e.Name, e.Tenant)
	}

	if busy, err := h.previousActive(ctx, e, run, log); err != nil || busy {
		if err != nil {
			m.outcome(e.Name, OutcomeFailed)
		} else {
			m.outcome(e.Name, OutcomeOverlap)
		}
		return err
	}

	path, err := resolve(e.Source)
	if err != nil {
		log.Error().Err(err).Str("source", e.Source).Msg("nightly: source missing; nothing enqueued")
		m.outcome(e.Name, OutcomeSourceMissing)
		return fmt.Errorf("nightly %s: %w", e.Name, err)
	}
	if err := h.cfg.Redis.Set(ctx, lastRunKey(e), run, 0).Err(); err != nil {
		m.outcome(e.Name, OutcomeFailed)
		return fmt.Errorf("nightly %s: record run: %w", e.Name, err)
	}
	spec := intake.RunSpec{Run: run, ErpConnectionID: e.ErpConnection, ActorType: e.ActorType,
		BatchSize: e.BatchSize, Strict: e.Strict, Origin: "nightly"}
	// intake's rule decides what an empty source is, as for `enqueue`; the run is recorded
	// as empty in the ledger (`enqueue status` shows it) and nothing is enqueued.
	sum, err := producer.Submit(ctx, spec, e.source(path))
	if errors.Is(err, intake.ErrNoKeys) {
		log.Error().Err(err).Str("source", path).Int64("invalid", sum.Invalid).Msg("nightly: source holds no valid key; nothing enqueued")
		m.outcome(e.Name, OutcomeSourceEmpty)
		return fmt.Errorf("nightly %s: %w: %w", e.Name, ErrSourceEmpty, err)
	}
	if err != nil {
		log.Error().Err(err).Str("source", path).Msg("nightly: submission failed")
		m.outcome(e.Name, OutcomeFailed)
		return fmt.Errorf("nightly %s: %w", e.Name, err)
	}
	log.Info().Str("source", path).Int64("keys", sum.Keys).Int64("invalid", sum.Invalid).Int64("duplicates", sum.Duplicates).
		Int("batches_enqueued", sum.BatchesEnqueued).Int("batches_present", sum.BatchesPresent).
		Dur("elapsed", sum.Elapsed).Msg("nightly: submitted")
	for _, p := range sum.Problems {
		log.Warn().Str("problem", p.Error()).Msg("nightly: key skipped")
	}
	if m != nil {
		m.outcome(e.Name, OutcomeSubmitted)
		m.Keys.WithLabelValues(e.Name).Add(float64(sum.KeysEnqueued))
		m.LastSubmitted.WithLabelValues(e.Name).Set(float64(h.cfg.Now().Unix()))
	}
	return nil
}

// previousActive reports whether the run e submitted before run is still active (logged: a
// new run would overlap it).
func (h *Handler) previousActive(ctx context.Context, e Entry, run string, log zerolog.Logger) (bool, error) {
	last, err := h.cfg.Redis.Get(ctx, lastRunKey(e)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("nightly %s: read last run: %w", e.Name, err)
	}
	if last == "" || last == run {
		return false, nil
	}
	st, err := h.ledger.Tenant(e.Tenant).Status(ctx, last)
	switch {
	case errors.Is(err, ledger.ErrRunNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("nightly %s: status of %s: %w", e.Name, last, err)
	case st.State == ledger.RunActive:
		log.Warn().Str("previous_run", last).Int64("pending_keys", st.PendingKeys).
			Msg("nightly: previous run still active; not starting a new one")
		return true, nil
	}
	return false, nil
}

// resolve returns the file the source names: the path itself, or the most recently
// modified match of a glob (ties: the last in lexical order).
func resolve(source string) (string, error) {
	matches, err := filepath.Glob(source)
	if err != nil {
		return "", fmt.Errorf("source %q: %w", source, err)
	}
	var best string
	var bestMod time.Time
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if best == "" || !fi.ModTime().Before(bestMod) {
			best, bestMod = m, fi.ModTime()
		}
	}
	if best == "" {
		return "", fmt.Errorf("source %q: %w: no file matches", source, ErrSourceMissing)
	}
	return best, nil
}
