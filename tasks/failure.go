package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
)

// What the handler does when a call did not succeed: a business refusal (split or retry),
// a failed call (classify, hold or retry), and a dead letter with its reason.

// refused handles IsOk=false.
func (h *Handler) refused(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, resp *erpsync.Result) error {
	be := &BusinessError{ErrorCode: resp.ErrorCode, TechExplanation: resp.TechExplanation,
		UserExplanation: resp.UserExplanation, Status: resp.Status}
	if h.cfg.Flow != nil {
		// Only producer batches (depth 0) count toward the ERP connection's breaker: the
		// halves of a split and the retries of a single poison key fail by design, and at
		// the tail of a run they are all that is left; counting them would mistake a few
		// poison keys for a systemic failure. Every batch consults it, so that halves split
		// before it opened are held too instead of fanning out.
		h.cfg.Flow.Outcome(ctx, b.ErpConnectionID, resp.ErrorCode, false, b.Depth == 0)
		if perr := h.cfg.Flow.Paused(ctx, b.ErpConnectionID); perr != nil {
			log.Error().Str("error_code", resp.ErrorCode).
				Msg("SYSTEMIC FAILURE: nearly every batch for this ERP connection fails alike; holding batches back instead of splitting")
			return h.hold(ctx, log, tc, b, fmt.Errorf("%w: %w", perr, be))
		}
	}
	if len(b.Keys) > 1 {
		log.Info().Str("error_code", resp.ErrorCode).Msg("batch refused; splitting to isolate the poison keys")
		return h.split(ctx, log, tc, b)
	}
	n, err := h.ledger.CountBusiness(context.WithoutCancel(ctx), b.Run, tc.id)
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

// hold hands a batch back to asynq without using up a retry: a circuit breaker is open, or
// the batch was throttled (flow control's wait, a Retry-After). It is never dead-lettered
// for that, however long it lasts. On the batch's last attempt asynq would archive it
// whatever the error, so it is relayed instead: split in halves like a refused batch (the
// ledger keeps that exactly-once), each a new task with a fresh retry budget, due when the
// hold ends.
func (h *Handler) hold(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, err error) error {
	wait := RetryAfter(err)
	var perr *flow.PausedError
	if errors.As(err, &perr) {
		h.cfg.Metrics.breakerHold()
	}
	if tc.last() {
		log.Warn().Err(err).Msg("held on its last attempt; relayed as fresh halves")
		return h.relay(ctx, log, tc, b, wait)
	}
	h.cfg.Metrics.retry(ClassThrottled, "asynq")
	return &Error{Class: ClassThrottled, BatchID: tc.id, Keys: len(b.Keys), RetryAfter: wait, Err: err}
}

// failed handles an error from the call (after the fast retries).
func (h *Handler) failed(ctx context.Context, log zerolog.Logger, tc taskCtx, b Batch, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(ctxErr, context.DeadlineExceeded) {
		// Shutdown or cancellation: asynq puts the task back; it is not the batch's fault.
		return err
	}
	class := Classify(err)
	if class == ClassTransient && h.cfg.Flow != nil {
		// The failure may be what opened a breaker (or it opened meanwhile): then it is the
		// outage's, not the batch's, and uses no retry.
		if perr := h.cfg.Flow.Paused(ctx, b.ErpConnectionID); perr != nil {
			return h.hold(ctx, log, tc, b, fmt.Errorf("%w (after: %w)", perr, err))
		}
	}
	switch {
	case class == ClassThrottled:
		return h.hold(ctx, log, tc, b, err)
	case class == ClassPermanent:
		return h.dead(ctx, log, tc, b, class, err, nil, tc.retried+1)
	case tc.last():
		return h.dead(ctx, log, tc, b, class, err, nil, tc.retried+1)
	case class == ClassAuth:
		// Auth failures are a configuration outage (wrong password or client secret, revoked system
		// user, app not granted ErpSync): every batch fails alike, and dead-lettering them
		// all would turn a five-minute fix into a mass requeue. So the batch is held: asynq
		// retries it every AuthHold without using up its retries (IsFailure), and the error
		// log and erpresync_auth_failures_total say what to fix. It is not held forever:
		// after AuthMaxHold from its first auth failure the batch is dead-lettered, so a
		// credential nobody fixes ends in visible dead letters, not an endless loop.
		since, lerr := h.ledger.HoldSince(context.WithoutCancel(ctx), b.Run, tc.id, h.now())
		if lerr != nil {
			return fmt.Errorf("ledger: auth hold: %w", lerr)
		}
		held := h.now().Sub(since)
		if held >= h.cfg.AuthMaxHold {
			return h.dead(ctx, log, tc, b, class, fmt.Errorf("held %s for auth failures: %w", held.Round(time.Second), err), nil, tc.retried+1)
		}
		log.Error().Err(err).Dur("held", held).
			Msg("AUTH FAILURE: SuperOffice refused our credentials; " + h.cfg.AuthFix + "; batch held, not dead-lettered")
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
	reason := DeadReason(class, cause, attempts, len(b.Keys))
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
	applied, err := h.ledger.RecordDead(context.WithoutCancel(ctx), b.Run, tc.id, dls, now)
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

// DeadReason is the sentence a person reads in asynqmon and in the ledger, e.g.
// "dead letter: business failure ERP_REJECTED: customer blocked after 4 attempts (1 key)".
func DeadReason(class Class, cause error, attempts, keys int) string {
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
