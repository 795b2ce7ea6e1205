package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/retry"
)

// Resyncer is what the handler needs of a SOAP client; *soap.Client satisfies it. One call is
// one attempt: the client may refresh its ticket and retry once, nothing more.
type Resyncer interface {
	ForceResyncExternal(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error)
}

// Handler defaults.
const (
	DefaultBusinessRetries   = 3
	DefaultSystemicWindow    = 20
	DefaultSystemicThreshold = 0.9
	DefaultSystemicHold      = time.Minute
	DefaultSystemicMaxHold   = 24 * time.Hour
	DefaultAuthHold          = 5 * time.Minute
	DefaultAuthMaxHold       = 24 * time.Hour
)

// HandlerConfig configures NewHandler. Zero fields take the documented defaults.
type HandlerConfig struct {
	// Resyncer calls SuperOffice. Required.
	Resyncer Resyncer
	// Ledger records batches. Required. The handler enqueues split halves through the
	// ledger's Redis client.
	Ledger *Ledger
	// FastPolicy is the in-process retry of transient errors. When its numeric fields are all
	// zero, DefaultFastPolicy's are used (an injected Clock or Rand is kept).
	// Its MaxElapsed must leave room for one call inside the task timeout; Do also stops
	// before a wait that would pass the task's deadline.
	FastPolicy retry.Policy
	// BusinessRetries is how often a single key that SuperOffice refused (IsOk=false) is
	// retried before it is dead-lettered. Zero: DefaultBusinessRetries (3); negative: none.
	// The delays come from RetryDelay's business policy.
	BusinessRetries int
	// SystemicWindow is how many recent calls per ERP connection and actor type the systemic
	// guard looks at. Zero: DefaultSystemicWindow (20); negative turns the guard off.
	SystemicWindow int
	// SystemicThreshold is the share of the window that must have failed with one ErrorCode
	// for the guard to hold batches instead of splitting them. Zero:
	// DefaultSystemicThreshold (0.9).
	SystemicThreshold float64
	// SystemicHold is the least wait before a held batch is tried again. Zero:
	// DefaultSystemicHold (1 min).
	SystemicHold time.Duration
	// SystemicMaxHold is how long a batch is held by the systemic guard, from its first hold,
	// before its keys are dead-lettered (a hold uses up no retries, so without it a failure
	// that never ends, or poison keys that all fail alike, would hold batches for ever). Zero:
	// DefaultSystemicMaxHold (24 h).
	SystemicMaxHold time.Duration
	// AuthHold is the wait before a batch held for an auth failure is tried again. Zero:
	// DefaultAuthHold (5 min).
	AuthHold time.Duration
	// AuthMaxHold is how long a batch is held for auth failures, from its first one, before
	// its keys are dead-lettered. Zero: DefaultAuthMaxHold (24 h).
	AuthMaxHold time.Duration
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
	if c.SystemicThreshold < 0 || c.SystemicThreshold > 1 {
		return fmt.Errorf("tasks: HandlerConfig.SystemicThreshold %v: want a share in (0, 1]", c.SystemicThreshold)
	}
	return nil
}

// Handler processes TypeResync (and stray TypeTrickle) tasks; it is an asynq.Handler. Safe
// for concurrent use by asynq's workers.
type Handler struct {
	cfg    HandlerConfig
	ledger *Ledger
	client *asynq.Client
	guard  *guard
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
		d := DefaultFastPolicy
		d.Clock, d.Rand = fp.Clock, fp.Rand // keep an injected clock
		cfg.FastPolicy = d
	}
	if cfg.BusinessRetries == 0 {
		cfg.BusinessRetries = DefaultBusinessRetries
	} else if cfg.BusinessRetries < 0 {
		cfg.BusinessRetries = 0
	}
	if cfg.SystemicWindow == 0 {
		cfg.SystemicWindow = DefaultSystemicWindow
	}
	if cfg.SystemicThreshold == 0 {
		cfg.SystemicThreshold = DefaultSystemicThreshold
	}
	if cfg.SystemicHold <= 0 {
		cfg.SystemicHold = DefaultSystemicHold
	}
	if cfg.SystemicMaxHold <= 0 {
		cfg.SystemicMaxHold = DefaultSystemicMaxHold
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
		client: asynq.NewClientFromRedisClient(cfg.Ledger.rdb),
		guard:  newGuard(cfg.SystemicWindow, cfg.SystemicThreshold),
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
		tc.id = BatchID(b.Run, b.Seq)
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
	b := trickleBatch(tr, h.now())
	return h.process(ctx, t, b, b.Validate())
}

// trickleBatch is the one-key batch of a trickle task processed alone. Its run is named after
// the day the key was handed over (now only when the payload has no time), so that every
// attempt, whatever the day, and ReconcileArchived count it in the same run.
func trickleBatch(tr Trickle, now time.Time) Batch {
	day := tr.At
	if day.IsZero() {
		day = now
	}
	return Batch{Run: TrickleRun(day, tr.ErpConnectionID, tr.ActorType), ErpConnectionID: tr.ErpConnectionID,
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
	log := h.log.With().Str("task_id", tc.id).Str("run", b.Run).Int("erp_connection", b.ErpConnectionID).
		Str("actor_type", b.ActorType.String()).Int("keys", len(b.Keys)).Logger()

	if validateRun(b.Run) != nil || len(b.Keys) == 0 {
		// No run to record in, or no keys to record: asynq's archive is the only trace.
		log.Error().Err(invalid).Msg("dead letter: malformed batch with no run or no keys")
		return &Error{Class: ClassPermanent, BatchID: tc.id, Keys: len(b.Keys), Dead: true, Err: invalid,
			msg: fmt.Sprintf("dead letter: permanent error: %v (nothing recorded in the ledger)", invalid)}
	}
	// One round trip: a producer's batch is registered (a no-op when the producer did, so a
	// batch enqueued without registration is still counted) and the batch's state is read.
	state, err := h.ledger.claim(ctx, b, tc.id)
	if err != nil {
		return fmt.Errorf("ledger: batch state: %w", err)
	}
	if invalid != nil {
		return h.dead(ctx, log, tc, b, ClassPermanent, invalid, nil, tc.retried+1)
	}
	if state == stateSplit {
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

	resp, calls, err := h.call(ctx, log, tc, b)
	if err == nil && resp.IsOk {
		return h.succeeded(ctx, log, t, tc, b, resp, calls)
	}
	// A success counts its calls in the same script that records it; every other outcome here.
	if calls > 0 {
		if cerr := h.ledger.incrCalls(context.WithoutCancel(ctx), b.Run, calls); cerr != nil {
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
func (h *Handler) finished(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, state string) (bool, error) {
	switch state {
	case stateDone:
		log.Info().Msg("batch already done; not calling SuperOffice again")
		return true, nil
	case stateDead:
		// A re-run after a crash, or an operator pressing "Run" on the archived task: the
		// keys stay dead; `enqueue dead requeue` is the way to try them again.
		reason := h.ledger.deadReason(ctx, b.Run, tc.id, b.Keys[0])
		log.Info().Str("reason", reason).Msg("batch already dead-lettered; not calling SuperOffice again")
		return true, &Error{Class: ClassPermanent, BatchID: tc.id, Keys: len(b.Keys), Dead: true,
			Err: errors.New("batch already dead-lettered"),
			msg: reason + " [already in the ledger; requeue its dead letters to try again]"}
	}
	return false, nil
}

// call makes the ForceResyncExternal call, retrying transient errors in-process. It returns
// the number of calls it made too; the caller counts them in the ledger.
func (h *Handler) call(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch) (*erpsync.Result, int, error) {
	var resp *erpsync.Result
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
		return nil, attempt, err
	}
	return resp, attempt, nil
}

// result is what the handler stores with the task (asynqmon shows it).
type result struct {
	BatchID  string          `json:"batch_id"`
	Run      string          `json:"run"`
	Keys     int             `json:"keys"`
	Response *erpsync.Result `json:"response"`
	At       time.Time       `json:"at"`
}

func (h *Handler) succeeded(ctx context.Context, log zerolog.Logger, t *asynq.Task, tc taskCtx, b Batch, resp *erpsync.Result, calls int) error {
	// Every success feeds the guard, halves' too: when an outage ends at the tail of a run
	// only halves may be left, and their successes are what releases the guard.
	h.guard.record(b.ErpConnectionID, b.ActorType, "")
	now := h.now().UTC()
	// The result goes first: if the worker dies between the two writes, the re-run calls
	// again and writes both; the other way round it would find the batch done and leave
	// the task without its result.
	if w := t.ResultWriter(); w != nil {
		data, err := json.Marshal(result{BatchID: tc.id, Run: b.Run, Keys: len(b.Keys), Response: resp, At: now})
		if err == nil {
			_, err = w.Write(data)
		}
		if err != nil {
			log.Warn().Err(err).Msg("could not store the task result (the ledger still records it)")
		}
	}
	items := changeItems(b.Run, tc.id, resp.Changes, now)
	applied, err := h.ledger.recordSuccess(context.WithoutCancel(ctx), b.Run, tc.id, len(b.Keys), calls, items, now)
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

func changeItems(run, taskID string, c erpsync.Changes, at time.Time) []ChangeItem {
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

// refused handles IsOk=false.
func (h *Handler) refused(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, resp *erpsync.Result) error {
	be := &BusinessError{ErrorCode: resp.ErrorCode, TechExplanation: resp.TechExplanation,
		UserExplanation: resp.UserExplanation, Status: resp.Status}
	// Only producer batches (depth 0) feed the guard their failures: the halves of a split
	// and the retries of a single poison key fail by design, and at the tail of a run they
	// are all that is left; counting them would mistake a few poison keys for a systemic
	// failure and hold their batches back. Every batch consults it, so that halves split
	// before the guard tripped are held too instead of fanning out.
	var share float64
	var n int
	if b.Depth == 0 {
		share, n = h.guard.record(b.ErpConnectionID, b.ActorType, errorCodeKey(resp.ErrorCode))
	} else {
		share, n = h.guard.share(b.ErpConnectionID, b.ActorType, errorCodeKey(resp.ErrorCode))
	}
	if h.guard.tripped(share, n) {
		h.cfg.Metrics.systemicHold()
		err := fmt.Errorf("%w: %.0f%% of the last %d calls for connection %d %s failed with %q: %w",
			ErrSystemic, share*100, n, b.ErpConnectionID, b.ActorType, resp.ErrorCode, be)
		log.Error().Str("error_code", resp.ErrorCode).Float64("share", share).
			Msg("SYSTEMIC FAILURE: nearly all calls for this ERP connection and actor type fail alike; holding batches back instead of splitting")
		if tc.last() {
			return h.dead(ctx, log, tc, b, ClassThrottled, err, be, tc.retried+1)
		}
		// A hold uses up no retries; SystemicMaxHold bounds it, so that a failure nobody
		// fixes, or poison keys that all fail alike, end in visible dead letters.
		since, lerr := h.ledger.holdSince(context.WithoutCancel(ctx), keysFor(b.Run).systemic, tc.id, h.now())
		if lerr != nil {
			return fmt.Errorf("ledger: systemic hold: %w", lerr)
		}
		if held := h.now().Sub(since); held >= h.cfg.SystemicMaxHold {
			return h.dead(ctx, log, tc, b, ClassThrottled, fmt.Errorf("%w (%s): %w", errSystemicMaxHold, held.Round(time.Second), err), be, tc.retried+1)
		}
		h.cfg.Metrics.retry(ClassThrottled, "asynq")
		return &Error{Class: ClassThrottled, BatchID: tc.id, Keys: len(b.Keys), RetryAfter: h.cfg.SystemicHold, Err: err}
	}
	if len(b.Keys) > 1 {
		log.Info().Str("error_code", resp.ErrorCode).Msg("batch refused; splitting to isolate the poison keys")
		return h.split(ctx, log, tc, b)
	}
	n, err := h.ledger.incrBusiness(context.WithoutCancel(ctx), b.Run, tc.id)
	if err != nil {
		return fmt.Errorf("ledger: count business failure: %w", err)
	}
	if n > h.cfg.BusinessRetries || tc.last() {
		return h.dead(ctx, log, tc, b, ClassBusiness, be, be, n)
	}
	h.cfg.Metrics.retry(ClassBusiness, "asynq")
	return &Error{Class: ClassBusiness, BatchID: tc.id, Keys: 1, Attempt: n, Err: be,
		msg: fmt.Sprintf("%v (attempt %d of %d)", be, n, h.cfg.BusinessRetries+1)}
}

// errSystemicMaxHold is wrapped by the cause of a dead letter that the systemic guard held
// for SystemicMaxHold.
var errSystemicMaxHold = errors.New("held by the systemic guard for longer than SystemicMaxHold")

// errorCodeKey turns an ErrorCode into a guard outcome that differs from success ("").
func errorCodeKey(code string) string { return "!" + code }

// failed handles an error from the call (after the fast retries).
func (h *Handler) failed(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(ctxErr, context.DeadlineExceeded) {
		// Shutdown or cancellation: asynq puts the task back; it is not the batch's fault.
		return err
	}
	class := Classify(err)
	switch {
	case class == ClassPermanent:
		return h.dead(ctx, log, tc, b, class, err, nil, tc.retried+1)
	case tc.last():
		return h.dead(ctx, log, tc, b, class, err, nil, tc.retried+1)
	case class == ClassAuth:
		// Auth failures are a configuration outage (wrong client secret, revoked system
		// user, app not granted ErpSync): every batch fails alike, and dead-lettering them
		// all would turn a five-minute fix into a mass requeue. So the batch is held: asynq
		// retries it every AuthHold without using up its retries (IsFailure), and the error
		// log and erpresync_auth_failures_total say what to fix. It is not held forever:
		// after AuthMaxHold from its first auth failure the batch is dead-lettered, so a
		// credential nobody fixes ends in visible dead letters, not an endless loop.
		since, lerr := h.ledger.holdSince(context.WithoutCancel(ctx), keysFor(b.Run).auth, tc.id, h.now())
		if lerr != nil {
			return fmt.Errorf("ledger: auth hold: %w", lerr)
		}
		held := h.now().Sub(since)
		if held >= h.cfg.AuthMaxHold {
			return h.dead(ctx, log, tc, b, class, fmt.Errorf("held %s for auth failures: %w", held.Round(time.Second), err), nil, tc.retried+1)
		}
		log.Error().Err(err).Dur("held", held).
			Msg("AUTH FAILURE: SuperOffice refused our credentials; check the SuperOffice client secret / system user token / ticket settings (SUPEROFFICE_*); batch held, not dead-lettered")
		h.cfg.Metrics.retry(class, "asynq")
		return &Error{Class: ClassAuth, BatchID: tc.id, Keys: len(b.Keys), RetryAfter: h.cfg.AuthHold, Err: err}
	default:
		h.cfg.Metrics.retry(class, "asynq")
		return &Error{Class: class, BatchID: tc.id, Keys: len(b.Keys), RetryAfter: RetryAfter(err), Err: err}
	}
}

// dead records every key of the batch as a dead letter and returns the SkipRetry error
// whose message asynqmon shows in the Archived tab.
func (h *Handler) dead(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, class Class, cause error, be *BusinessError, attempts int) error {
	reason := deadReason(class, cause, attempts, len(b.Keys))
	now := h.now().UTC()
	dls := make([]DeadLetter, len(b.Keys))
	for i, k := range b.Keys {
		dls[i] = DeadLetter{Run: b.Run, Key: k, BatchID: tc.id, Queue: tc.queue, ErpConnectionID: b.ErpConnectionID,
			ActorType: b.ActorType, Class: class.String(), Reason: reason, Attempts: attempts, At: now}
		if be != nil {
			dls[i].ErrorCode, dls[i].TechExplanation, dls[i].UserExplanation = be.ErrorCode, be.TechExplanation, be.UserExplanation
		} else {
			dls[i].TechExplanation = erpsync.Truncate(cause.Error(), 1000)
		}
	}
	applied, err := h.ledger.recordDead(context.WithoutCancel(ctx), b.Run, tc.id, dls, now)
	if err != nil {
		// Not SkipRetry: asynq retries (or archives on the last attempt, and
		// ReconcileArchived records it then).
		return fmt.Errorf("ledger: record dead letters (%s): %w", reason, err)
	}
	if applied {
		h.cfg.Metrics.dead(class, len(b.Keys))
		log.Error().Str("class", class.String()).Int("attempts", attempts).Str("reason", reason).Msg("dead letter")
	}
	return &Error{Class: class, BatchID: tc.id, Keys: len(b.Keys), Dead: true, Err: cause, msg: reason}
}

// deadReason is the sentence a person reads in asynqmon and in the ledger, e.g.
// "dead letter: business failure ERP_REJECTED: customer blocked after 4 attempts (1 key)".
func deadReason(class Class, cause error, attempts, keys int) string {
	var what string
	switch class {
	case ClassBusiness:
		what = cause.Error()
	case ClassPermanent:
		what = "permanent error: " + cause.Error()
	case ClassTransient:
		what = "transient error, retries used up: " + cause.Error()
	case ClassThrottled:
		what = "throttled on the last attempt: " + cause.Error()
		if errors.Is(cause, errSystemicMaxHold) {
			what = cause.Error()
		}
	case ClassAuth:
		what = "auth failure: " + cause.Error()
	default:
		what = class.String() + ": " + cause.Error()
	}
	return fmt.Sprintf("dead letter: %s after %s (%s)", erpsync.Truncate(what, 600), plural(attempts, "attempt"), plural(keys, "key"))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// split marks the batch split and enqueues its halves. A batch finished meanwhile (another
// run of the task, or ReconcileArchived after asynq gave up on a timed-out attempt) has its
// keys counted already: its halves must not run.
func (h *Handler) split(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch) error {
	state, err := h.ledger.markSplit(context.WithoutCancel(ctx), b.Run, tc.id, h.now().UTC())
	if err != nil {
		return fmt.Errorf("ledger: mark split: %w", err)
	}
	if state == splitApplied {
		h.cfg.Metrics.split()
	}
	if fin, err := h.finished(ctx, log, tc, b, state); fin {
		log.Warn().Str("state", state).Msg("batch finished meanwhile; its halves are not enqueued")
		return err
	}
	return h.enqueueChildren(ctx, tc, b)
}

// halves splits keys into two non-empty halves (the first one larger when odd).
func halves(keys []string) [2][]string {
	m := (len(keys) + 1) / 2
	return [2][]string{keys[:m], keys[m:]}
}

func (h *Handler) enqueueChildren(ctx context.Context, tc taskCtx, b Batch) error {
	hs, err := halfTasks(b, tc.id, tc.queue, tc.maxRetry, h.cfg.ChildOptions)
	if err != nil {
		return err
	}
	_, err = enqueueHalves(context.WithoutCancel(ctx), h.client, hs)
	return err
}

// half is one half of a split batch, ready to enqueue.
type half struct {
	id   string
	task *asynq.Task
}

// halfTasks returns the halves of batch b, whose task ID is id: in queue, with the parent's
// retry budget (maxRetry; math.MaxInt leaves asynq's default), then opts.
func halfTasks(b Batch, id, queue string, maxRetry int, opts []asynq.Option) ([]half, error) {
	var out []half
	for i, keys := range halves(b.Keys) {
		if len(keys) == 0 {
			continue
		}
		c := Batch{Run: b.Run, ErpConnectionID: b.ErpConnectionID, ActorType: b.ActorType, Keys: keys,
			Seq: b.Seq, Source: b.Source, Parent: id, Depth: b.Depth + 1}
		all := []asynq.Option{asynq.Queue(queue)}
		if maxRetry != math.MaxInt {
			all = append(all, asynq.MaxRetry(maxRetry))
		}
		task, err := newResyncTask(c, childID(id, i), append(all, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("split: %w", err)
		}
		out = append(out, half{childID(id, i), task})
	}
	return out, nil
}

// enqueueHalves enqueues hs; a half already in asynq (ErrTaskIDConflict) is not enqueued
// twice. It returns how many it enqueued.
func enqueueHalves(ctx context.Context, client *asynq.Client, hs []half) (int, error) {
	n := 0
	for _, h := range hs {
		_, err := client.EnqueueContext(ctx, h.task)
		switch {
		case err == nil:
			n++
		case !errors.Is(err, asynq.ErrTaskIDConflict):
			return n, fmt.Errorf("split: enqueue half %s: %w", h.id, err)
		}
	}
	return n, nil
}

// guard is the systemic guard: per ERP connection and actor type, the outcomes of the last
// calls that got an answer ("" for IsOk=true, "!CODE" for IsOk=false; failures of producer
// batches only, see refused). In-process only: each worker judges from what it sees.
type guard struct {
	mu        sync.Mutex
	window    int
	threshold float64
	rings     map[guardKey]*ring
}

type guardKey struct {
	conn  int
	actor erpsync.ActorType
}

type ring struct {
	buf  []string
	next int
	full bool
}

func newGuard(window int, threshold float64) *guard {
	return &guard{window: window, threshold: threshold, rings: make(map[guardKey]*ring)}
}

// record adds an outcome and returns the share of the window with that same outcome and
// the number of outcomes in the window.
func (g *guard) record(conn int, actor erpsync.ActorType, outcome string) (share float64, n int) {
	if g.window <= 0 {
		return 0, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	k := guardKey{conn, actor}
	r := g.rings[k]
	if r == nil {
		r = &ring{buf: make([]string, g.window)}
		g.rings[k] = r
	}
	r.buf[r.next] = outcome
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	return r.share(outcome)
}

// share returns the share of the ring's outcomes equal to outcome, and how many it holds.
func (r *ring) share(outcome string) (float64, int) {
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	if n == 0 {
		return 0, 0
	}
	same := 0
	for _, o := range r.buf[:n] {
		if o == outcome {
			same++
		}
	}
	return float64(same) / float64(n), n
}

// share returns the share of the window with outcome and the number of outcomes in the
// window, without recording anything.
func (g *guard) share(conn int, actor erpsync.ActorType, outcome string) (float64, int) {
	if g.window <= 0 {
		return 0, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rings[guardKey{conn, actor}]
	if r == nil {
		return 0, 0
	}
	return r.share(outcome)
}

// tripped reports whether a share over a window of n calls means a systemic failure: the
// window must be full, so that a few early failures never hold a run back.
func (g *guard) tripped(share float64, n int) bool {
	return g.window > 0 && n >= g.window && share >= g.threshold
}
