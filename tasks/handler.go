package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/retry"
)

// Resyncer is what the handler needs of a transport; *soap.Client satisfies it. One call is
// one attempt: the client may refresh its ticket and retry once, nothing more.
type Resyncer interface {
	ForceResyncExternal(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error)
}

// Flow is what the handler needs of flow control; *flow.Control satisfies it. The limits,
// the cool-down and the tenant's breaker act on the HTTP requests below the transport; the
// handler feeds and consults the ERP connection's breaker, which alone needs the answer.
type Flow interface {
	// Admit asks whether a batch of conn may call (a *flow.PausedError when its breaker is
	// open) and returns ctx carrying the connection for the transport.
	Admit(ctx context.Context, conn int) (context.Context, error)
	// Outcome reports a batch's answer; counted=false for failures that must not open the
	// breaker (split halves, retried poison keys).
	Outcome(ctx context.Context, conn int, errorCode string, ok, counted bool)
	// Paused returns a *flow.PausedError when the tenant's or conn's breaker is open, else nil.
	Paused(ctx context.Context, conn int) error
}

// Handler defaults.
const (
	DefaultBusinessRetries = 3
	DefaultAuthHold        = 5 * time.Minute
	DefaultAuthMaxHold     = 24 * time.Hour
)

// HandlerConfig configures NewHandler. Zero fields take the documented defaults.
type HandlerConfig struct {
	// Tenant is the tenant whose batches this handler calls SuperOffice for ("" the implicit
	// tenant); Resyncer, Flow and Ledger must be that tenant's. A batch of another tenant is
	// held, never called (a Router hands each tenant's batches to its own handler).
	Tenant string
	// Resyncer calls SuperOffice. Required.
	Resyncer Resyncer
	// Ledger records batches (package internal/ledger). Required.
	Ledger Ledger
	// Redis is the asynq Redis the batches live in; the handler enqueues split halves
	// through it. Required.
	Redis redis.UniversalClient
	// FastPolicy is the in-process retry of transient errors. When its numeric fields are all
	// zero, DefaultFastPolicy()'s are used (an injected Clock or Rand is kept).
	// Its MaxElapsed must leave room for one call inside the task timeout; Do also stops
	// before a wait that would pass the task's deadline.
	FastPolicy retry.Policy
	// BusinessRetries is how often a single key that SuperOffice refused (IsOk=false) is
	// retried before it is dead-lettered. Zero: DefaultBusinessRetries (3); negative: none.
	// The delays come from RetryDelay's business policy.
	BusinessRetries int
	// Flow is the flow control: circuit breakers, whose holds use no retries and never
	// dead-letter. Nil: none (no breaker holds a systemic failure back; batches split).
	Flow Flow
	// AuthHold is the wait before a batch held for an auth failure is tried again. Zero:
	// DefaultAuthHold (5 min).
	AuthHold time.Duration
	// AuthMaxHold is how long a batch is held for auth failures, from its first one, before
	// its keys are dead-lettered. Zero: DefaultAuthMaxHold (24 h).
	AuthMaxHold time.Duration
	// AuthFix is what the AUTH FAILURE log line tells the operator to check, in the words of
	// the login that is configured, e.g. "check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD".
	// Empty: "check the SuperOffice login settings".
	AuthFix string
	// ChildOptions are added to split halves after the parent's queue and MaxRetry.
	ChildOptions []asynq.Option
	// Metrics records counters; nil records nothing.
	Metrics *Metrics
	// Logger receives one line per call and the warnings. Zero value: no logs.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *HandlerConfig) validate() error {
	if c.Resyncer == nil {
		return errors.New("tasks: HandlerConfig.Resyncer is nil (the SuperOffice client)")
	}
	if c.Ledger == nil {
		return errors.New("tasks: HandlerConfig.Ledger is nil")
	}
	if c.Redis == nil {
		return errors.New("tasks: HandlerConfig.Redis is nil")
	}
	return nil
}

// Handler processes TypeResync (and stray TypeTrickle) tasks; it is an asynq.Handler. Safe
// for concurrent use by asynq's workers.
type Handler struct {
	cfg    HandlerConfig
	ledger Ledger
	client *asynq.Client
	log    zerolog.Logger
	now    func() time.Time
}

// NewHandler checks cfg, applies defaults and returns a Handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if fp := cfg.FastPolicy; fp.Initial == 0 && fp.Max == 0 && fp.Multiplier == 0 && fp.RandomizationFactor == 0 &&
		fp.MaxElapsed == 0 && fp.MaxAttempts == 0 {
		d := DefaultFastPolicy()
		d.Clock, d.Rand = fp.Clock, fp.Rand // keep an injected clock
		cfg.FastPolicy = d
	}
	if cfg.BusinessRetries == 0 {
		cfg.BusinessRetries = DefaultBusinessRetries
	} else if cfg.BusinessRetries < 0 {
		cfg.BusinessRetries = 0
	}
	if cfg.AuthFix == "" {
		cfg.AuthFix = "check the SuperOffice login settings"
	}
	if cfg.AuthHold <= 0 {
		cfg.AuthHold = DefaultAuthHold
	}
	if cfg.AuthMaxHold <= 0 {
		cfg.AuthMaxHold = DefaultAuthMaxHold
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Handler{
		cfg:    cfg,
		ledger: cfg.Ledger,
		client: asynq.NewClientFromRedisClient(cfg.Redis),
		log:    cfg.Logger,
		now:    now,
	}, nil
}

// ProcessTask handles one task. See the package documentation for the flow.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	switch t.Type() {
	case TypeResync:
		return h.processResync(ctx, t)
	case TypeTrickle:
		return h.processTrickle(ctx, t)
	default:
		return fmt.Errorf("tasks: unknown task type %q: %w", t.Type(), asynq.SkipRetry)
	}
}

// taskCtx is what asynq tells the handler about the current attempt.
type taskCtx struct {
	id       string
	queue    string
	retried  int
	maxRetry int
}

// last reports whether this is the last attempt asynq will make: any error now archives.
func (tc taskCtx) last() bool { return tc.retried >= tc.maxRetry }

func taskInfo(ctx context.Context, t *asynq.Task, b Batch) taskCtx {
	tc := taskCtx{queue: DefaultQueue}
	if id, ok := asynq.GetTaskID(ctx); ok {
		tc.id = id
	} else if w := t.ResultWriter(); w != nil {
		tc.id = w.TaskID()
	} else if b.ID != "" {
		tc.id = b.ID
	} else {
		tc.id = BatchID(b.RunKey(), b.Seq)
	}
	if q, ok := asynq.GetQueueName(ctx); ok {
		tc.queue = q
	}
	tc.retried, _ = asynq.GetRetryCount(ctx)
	if n, ok := asynq.GetMaxRetry(ctx); ok {
		tc.maxRetry = n
	} else {
		tc.maxRetry = math.MaxInt
	}
	return tc
}

// processTrickle handles a TypeTrickle task that reached the handler without aggregation
// (the server has no GroupAggregator): as a one-key batch of the trickle run of the day the
// key was handed over (see trickleBatch).
func (h *Handler) processTrickle(ctx context.Context, t *asynq.Task) error {
	var tr Trickle
	if err := json.Unmarshal(t.Payload(), &tr); err != nil {
		return fmt.Errorf("tasks: unreadable trickle payload: %v: %w", err, asynq.SkipRetry)
	}
	b := tr.Batch(h.now())
	return h.process(ctx, t, b, b.Validate())
}

// Batch is the one-key batch of a trickle task processed alone. Its run is named after
// the day the key was handed over (now only when the payload has no time), so that every
// attempt, whatever the day, and the ledger's reconciliation count it in the same run.
func (tr Trickle) Batch(now time.Time) Batch {
	day := tr.At
	if day.IsZero() {
		day = now
	}
	return Batch{Tenant: tr.Tenant, Run: TrickleRun(day, tr.ErpConnectionID, tr.ActorType), ErpConnectionID: tr.ErpConnectionID,
		ActorType: tr.ActorType, Keys: []string{tr.Key}, Source: "trickle"}
}

func (h *Handler) processResync(ctx context.Context, t *asynq.Task) error {
	var b Batch
	if err := json.Unmarshal(t.Payload(), &b); err != nil {
		// Nothing to record: without a payload there is no run and no key.
		return fmt.Errorf("dead letter: unreadable payload: %v: %w", err, asynq.SkipRetry)
	}
	// A batch larger than MaxBatchSize (an aggregated group without GroupMaxSize) is split
	// before calling, not refused.
	return h.process(ctx, t, b, b.validate(math.MaxInt))
}

func (h *Handler) process(ctx context.Context, t *asynq.Task, b Batch, invalid error) error {
	tc := taskInfo(ctx, t, b)
	lc := h.log.With()
	if b.Tenant != "" {
		lc = lc.Str("tenant", b.Tenant)
	}
	log := lc.Str("task_id", tc.id).Str("run", b.Run).Int("erp_connection", b.ErpConnectionID).
		Str("actor_type", b.ActorType.String()).Int("keys", len(b.Keys)).Logger()
	if b.Tenant != h.cfg.Tenant {
		log.Error().Str("handler_tenant", h.cfg.Tenant).Msg("batch of another tenant reached this tenant's handler: held, not called")
		return &Error{Class: ClassThrottled, BatchID: tc.id, Keys: len(b.Keys), RetryAfter: UnknownTenantHold,
			Err: &flow.PausedError{Tenant: b.Tenant, Since: h.now(), NextProbe: h.now().Add(UnknownTenantHold),
				Reason: "batch reached the handler of another tenant", RetryAfter: UnknownTenantHold}}
	}

	if ValidateBatchRun(b.Run) != nil || len(b.Keys) == 0 {
		// No run to record in, or no keys to record: asynq's archive is the only trace.
		log.Error().Err(invalid).Msg("dead letter: malformed batch with no run or no keys")
		return &Error{Class: ClassPermanent, BatchID: tc.id, Keys: len(b.Keys), Dead: true, Err: invalid,
			msg: fmt.Sprintf("dead letter: permanent error: %v (nothing recorded in the ledger)", invalid)}
	}
	// One round trip: a producer's batch is registered (a no-op when the producer did, so a
	// batch enqueued without registration is still counted) and the batch's state is read.
	state, err := h.ledger.Claim(ctx, b, tc.id)
	if err != nil {
		return fmt.Errorf("ledger: batch state: %w", err)
	}
	if invalid != nil {
		return h.dead(ctx, log, tc, b, ClassPermanent, invalid, nil, tc.retried+1)
	}
	if state == BatchSplit {
		log.Info().Msg("batch already split; re-enqueueing its halves")
		return h.enqueueChildren(ctx, tc, b)
	}
	if fin, err := h.finished(ctx, log, tc, b, state); fin {
		return err
	}
	if len(b.Keys) > MaxBatchSize {
		log.Warn().Msg("batch larger than MaxBatchSize; splitting before calling")
		return h.split(ctx, log, tc, b)
	}

	// ctx carries what flow control's Admit gave the batch (the connection breaker's probe,
	// when this batch is it), so that the outcome reported below decides the probe.
	ctx, resp, calls, err := h.call(ctx, log, tc, b)
	if err == nil && resp.IsOk {
		return h.succeeded(ctx, log, t, tc, b, resp, calls)
	}
	// A success counts its calls in the same script that records it; every other outcome here.
	if calls > 0 {
		if cerr := h.ledger.CountCalls(context.WithoutCancel(ctx), b.Run, calls); cerr != nil {
			log.Warn().Err(cerr).Msg("ledger: count calls")
		}
	}
	if err != nil {
		return h.failed(ctx, log, tc, b, err)
	}
	return h.refused(ctx, log, tc, b, resp)
}

// finished handles a batch the ledger has already finished as done or dead, and reports
// whether it had; it returns the task's error then.
func (h *Handler) finished(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, state BatchState) (bool, error) {
	switch state {
	case BatchDone:
		log.Info().Msg("batch already done; not calling SuperOffice again")
		return true, nil
	case BatchDead:
		// A re-run after a crash, or an operator pressing "Run" on the archived task: the
		// keys stay dead; `enqueue dead requeue` is the way to try them again.
		reason := h.ledger.DeadReason(ctx, b.Run, tc.id, b.Keys[0])
		log.Info().Str("reason", reason).Msg("batch already dead-lettered; not calling SuperOffice again")
		return true, &Error{Class: ClassPermanent, BatchID: tc.id, Keys: len(b.Keys), Dead: true,
			Err: errors.New("batch already dead-lettered"),
			msg: reason + " [already in the ledger; requeue its dead letters to try again]"}
	}
	return false, nil
}

// call makes the ForceResyncExternal call, retrying transient errors in-process. It returns
// the batch's context as flow control admitted it, and the number of calls it made too; the
// caller counts them in the ledger.
func (h *Handler) call(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch) (context.Context, *erpsync.Result, int, error) {
	var resp *erpsync.Result
	if h.cfg.Flow != nil {
		var err error
		if ctx, err = h.cfg.Flow.Admit(ctx, b.ErpConnectionID); err != nil {
			return ctx, nil, 0, err
		}
	}
	p := h.cfg.FastPolicy
	p.OnRetry = func(attempt int, err error, wait time.Duration) {
		h.cfg.Metrics.retry(Classify(err), "fast")
		log.Warn().Err(err).Int("attempt", attempt).Int64("wait_ms", wait.Milliseconds()).Msg("transient error; retrying in-process")
	}
	attempt := 0
	err := p.Do(ctx, func(ctx context.Context) error {
		attempt++
		start := h.now()
		r, err := h.cfg.Resyncer.ForceResyncExternal(ctx, b.ErpConnectionID, b.ActorType, b.Keys)
		latency := h.now().Sub(start)
		if err == nil && r == nil {
			err = &erpsync.ProtocolError{Reason: "no response and no error"}
		}
		outcome := OutcomeOK
		switch {
		case err != nil:
			outcome = Classify(err).String()
		case !r.IsOk:
			outcome = ClassBusiness.String()
		}
		h.cfg.Metrics.call(outcome, latency)
		ev := log.Info()
		switch {
		case outcome == ClassAuth.String():
			ev = log.Error()
		case err != nil:
			ev = log.Warn().Err(err)
		case !r.IsOk:
			ev = log.Warn().Str("error_code", r.ErrorCode).Str("tech_explanation", erpsync.Truncate(r.TechExplanation, 300))
		}
		ev.Str("outcome", outcome).Int64("latency_ms", latency.Milliseconds()).Int("attempt", tc.retried+1).
			Int("try", attempt).Msg("ForceResyncExternal")
		resp = r
		return err
	}, func(err error) retry.Decision {
		return retry.Decision{Retry: Classify(err) == ClassTransient}
	})
	if err != nil {
		return ctx, nil, attempt, err
	}
	return ctx, resp, attempt, nil
}

func (h *Handler) succeeded(ctx context.Context, log zerolog.Logger, t *asynq.Task, tc taskCtx, b Batch, resp *erpsync.Result, calls int) error {
	// Every success feeds the connection's breaker, halves' too: when an outage ends at the
	// tail of a run only halves may be left, and their successes are what close it.
	if h.cfg.Flow != nil {
		h.cfg.Flow.Outcome(ctx, b.ErpConnectionID, "", true, true)
	}
	now := h.now().UTC()
	// The result goes first: if the worker dies between the two writes, the re-run calls
	// again and writes both; the other way round it would find the batch done and leave
	// the task without its result.
	if w := t.ResultWriter(); w != nil {
		data, err := json.Marshal(newResult(tc.id, b.Run, len(b.Keys), resp, now))
		if err == nil {
			_, err = w.Write(data)
		}
		if err != nil {
			log.Warn().Err(err).Msg("could not store the task result (the ledger still records it)")
		}
	}
	items := ChangeItems(b.Run, tc.id, resp.Changes, now)
	applied, err := h.ledger.RecordSuccess(context.WithoutCancel(ctx), b.Run, tc.id, len(b.Keys), calls, items, now)
	if err != nil {
		return fmt.Errorf("ledger: record success: %w", err)
	}
	if !applied {
		// Recorded by an earlier run, or the batch was finished otherwise meanwhile (e.g.
		// ReconcileArchived dead-lettered it after asynq gave up on a timed-out attempt).
		log.Warn().Msg("batch already finished in the ledger; this success is not counted again")
		return nil
	}
	h.cfg.Metrics.resynced(len(b.Keys), items)
	return nil
}

// ChangeItems flattens the Changes of one call (task taskID of run) into the items the ledger
// keeps, added, then updated, then deleted.
func ChangeItems(run, taskID string, c erpsync.Changes, at time.Time) []ChangeItem {
	items := make([]ChangeItem, 0, len(c.Added)+len(c.Updated)+len(c.Deleted))
	for _, l := range []struct {
		kind string
		in   []erpsync.ChangedItem
	}{{KindAdded, c.Added}, {KindUpdated, c.Updated}, {KindDeleted, c.Deleted}} {
		for _, it := range l.in {
			items = append(items, ChangeItem{Run: run, Table: it.Table, RecordID: it.RecordID, Kind: l.kind, TaskID: taskID, At: at})
		}
	}
	return items
}
