package tasks

import (
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/retry"
)

// DefaultFastPolicy returns the handler's in-process retry policy for transient errors:
// waits of about 0.5, 1, 2, 4, 8 s (±50%), never past 30 s in all, so that it fits in
// DefaultTimeout (3 min) with room for the calls themselves. Each call returns a fresh
// value: changing one changes nobody else's.
func DefaultFastPolicy() retry.Policy {
	return retry.Policy{
		Initial:             500 * time.Millisecond,
		Max:                 8 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		MaxElapsed:          30 * time.Second,
		MaxAttempts:         4,
	}
}

// DefaultAsynqPolicy returns the long-horizon policy for RetryDelay: 30 s, 1, 2, 4, 8,
// 16 min, then every 30 min (±25%), so DefaultMaxRetry (12) retries cover about three and a half
// hours of outage; a Retry-After up to one hour is honoured when longer.
func DefaultAsynqPolicy() retry.Policy {
	return retry.Policy{
		Initial:             30 * time.Second,
		Max:                 30 * time.Minute,
		Multiplier:          2,
		RandomizationFactor: 0.25,
		MaxRetryAfter:       time.Hour,
	}
}

// DefaultBusinessPolicy returns the policy that spaces the retries of a single key that
// SuperOffice refused (IsOk=false): 30 s, 1 min, 2 min (±25%), so DefaultBusinessRetries (3) take a few
// minutes — long enough for a locked record or a hiccup in the ERP to clear.
func DefaultBusinessPolicy() retry.Policy {
	return retry.Policy{
		Initial:             30 * time.Second,
		Max:                 5 * time.Minute,
		Multiplier:          2,
		RandomizationFactor: 0.25,
	}
}

// RetryDelay builds the worker's asynq.Config.RetryDelayFunc. A business failure of a
// single key waits business.Delay(attempt-1); a throttled call with a Retry-After (or the
// systemic hold) waits that long, p.After(hint); every other error waits p.Delay(n, hint),
// where n is asynq's retry count and hint the error's RetryAfter (a server's Retry-After,
// the auth hold, the systemic hold), honoured when longer than the backoff.
//
// asynq moves due retries to pending every DelayedTaskCheckInterval (its default is 5 s;
// the worker sets 1 s), so a retry fires up to that much late, and delays are kept in
// whole seconds: waits under a second are not meaningful.
func RetryDelay(p, business retry.Policy) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var te *Error
		if errors.As(err, &te) && te.Class == ClassBusiness && te.Attempt > 0 {
			return business.Delay(te.Attempt-1, te.RetryAfter)
		}
		if ra := RetryAfter(err); ra > 0 && errors.As(err, &te) && te.Class == ClassThrottled {
			return p.After(ra) // SuperOffice said when to come back
		}
		return p.Delay(n, RetryAfter(err))
	}
}
