package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults for the zero fields of a Policy. They suit the fast, in-process layer: about five
// attempts in the first ten seconds, never more than 30 s in all.
const (
	DefaultInitial             = 500 * time.Millisecond
	DefaultMax                 = 8 * time.Second
	DefaultMultiplier          = 2.0
	DefaultRandomizationFactor = 0.5
	DefaultMaxElapsed          = 30 * time.Second
	DefaultMaxRetryAfter       = time.Hour
)

// Policy is an exponential backoff with jitter. The wait before retry n (n = 0 for the
// first retry) is Initial·Multiplier^n, capped at Max, then spread uniformly over
// ±RandomizationFactor of itself.
//
// The zero value is usable: every zero field takes the Default* constant of the same name.
// A Policy is a plain value, safe to copy and to use from many goroutines at once.
type Policy struct {
	// Initial is the first wait. Zero means DefaultInitial (500 ms).
	Initial time.Duration
	// Max caps the exponential wait (before jitter). Zero means DefaultMax (8 s).
	Max time.Duration
	// Multiplier grows the wait after each retry. Values <= 1 mean DefaultMultiplier (2).
	Multiplier float64
	// RandomizationFactor is the jitter, a fraction of the wait in [0, 1]. Zero means
	// DefaultRandomizationFactor (0.5); a negative value turns jitter off.
	RandomizationFactor float64
	// MaxElapsed is Do's budget: Do does not start a wait that would end later than
	// MaxElapsed after its first attempt began. Zero means DefaultMaxElapsed (30 s); a
	// negative value means no budget (the context deadline still applies). Delay ignores it.
	MaxElapsed time.Duration
	// MaxAttempts bounds Do's attempts, the first one included. Zero means no bound beyond
	// the budget.
	MaxAttempts int
	// MaxRetryAfter caps a server-requested wait (Retry-After), so that a bogus header cannot
	// park work for days. Zero means DefaultMaxRetryAfter (1 h).
	MaxRetryAfter time.Duration

	// Clock is Do's time source; nil means the real clock. Tests pass a fake so that
	// retries never sleep.
	Clock Clock
	// Rand returns a number in [0, 1) for jitter; nil means math/rand/v2.
	Rand func() float64
	// OnRetry, when set, is called by Do before each wait with the attempt that failed
	// (1-based), its error and the wait chosen. It must not block.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Decision is a classifier's verdict on one error.
type Decision struct {
	// Retry says whether the operation may be tried again.
	Retry bool
	// After is the least time to wait before the next attempt, for example a server's
	// Retry-After; zero leaves the wait to the backoff. It is capped at MaxRetryAfter.
	After time.Duration
}

// Classifier decides whether an error is worth another attempt.
type Classifier func(error) Decision

// RetryAll is a Classifier that retries every error.
func RetryAll(error) Decision { return Decision{Retry: true} }

// Clock is a time source with timers.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer that Do uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer {
	return realTimer{time.NewTimer(d)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// ErrBudgetExhausted is wrapped, together with the last error, by the error Do returns when
// it stops because the next wait would not fit in MaxElapsed, MaxAttempts or the context's
// deadline.
var ErrBudgetExhausted = errors.New("retry budget exhausted")

func (p Policy) withDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = DefaultInitial
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Multiplier <= 1 {
		p.Multiplier = DefaultMultiplier
	}
	switch {
	case p.RandomizationFactor == 0:
		p.RandomizationFactor = DefaultRandomizationFactor
	case p.RandomizationFactor < 0:
		p.RandomizationFactor = 0
	case p.RandomizationFactor > 1:
		p.RandomizationFactor = 1
	}
	if p.MaxElapsed == 0 {
		p.MaxElapsed = DefaultMaxElapsed
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if p.Clock == nil {
		p.Clock = realClock{}
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// clockAdapter lets backoff.ExponentialBackOff read our Clock.
type clockAdapter struct{ c Clock }

func (a clockAdapter) Now() time.Time { return a.c.Now() }

// backoff returns the cenkalti ExponentialBackOff that p describes, without jitter (p adds
// its own, from p.Rand, so tests can pin it) and without an elapsed-time limit (Do keeps
// its own budget, which also counts the per-error minimum waits).
func (p Policy) backoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.Initial,
		RandomizationFactor: 0,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.Max,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               clockAdapter{p.Clock},
	}
	b.Reset()
	return b
}

// jitter spreads d over ±RandomizationFactor·d.
func (p Policy) jitter(d time.Duration) time.Duration {
	if p.RandomizationFactor == 0 || d <= 0 {
		return d
	}
	delta := p.RandomizationFactor * float64(d)
	return time.Duration(float64(d) - delta + p.Rand()*2*delta)
}

// Delay is the long-horizon layer: the wait before retry n+1 of a task that has already
// been retried n times (n = 0 after the first failure). It is Initial·Multiplier^n capped
// at Max, with jitter; when retryAfter (capped at MaxRetryAfter) is larger, Delay returns
// retryAfter instead, unjittered. MaxElapsed and MaxAttempts do not apply. A negative n
// counts as 0.
func (p Policy) Delay(n int, retryAfter time.Duration) time.Duration {
	p = p.withDefaults()
	if n < 0 {
		n = 0
	}
	// The n-th interval of the same ExponentialBackOff that Do steps through; once it
	// reaches Max it stays there, so the walk is short whatever n is.
	b := p.backoff()
	d := b.NextBackOff()
	for i := 0; i < n && d < p.Max; i++ {
		d = b.NextBackOff()
	}
	d = p.jitter(d)
	if retryAfter > p.MaxRetryAfter {
		retryAfter = p.MaxRetryAfter
	}
	if retryAfter > d {
		return retryAfter
	}
	return d
}

// After is the wait a server asked for (a Retry-After on a throttled call), capped at
// MaxRetryAfter and stretched by up to RandomizationFactor so that many waiting tasks do
// not return at the same instant; never shorter than asked. A throttling server says when
// to come back, so unlike Delay this ignores the backoff: the wait does not grow with the
// task's failures.
func (p Policy) After(retryAfter time.Duration) time.Duration {
	p = p.withDefaults()
	if retryAfter > p.MaxRetryAfter {
		retryAfter = p.MaxRetryAfter
	}
	if retryAfter <= 0 || p.RandomizationFactor <= 0 {
		return retryAfter
	}
	return retryAfter + time.Duration(p.Rand()*p.RandomizationFactor*float64(retryAfter))
}

// Do is the fast layer: it runs op, and while classify says an error is retryable, waits
// and runs it again, until op succeeds, classify refuses, or the budget is spent. It
// returns nil or the last error: unchanged when classify refused it, wrapped with
// ErrBudgetExhausted when the budget ran out, and joined with ctx.Err() when the context
// ended during a wait.
//
// Do never retries once ctx is done: an error returned after ctx ended is returned as is,
// and a nil classify retries nothing. Each wait is the backoff interval (with jitter) or the
// Decision's After, whichever is longer; a wait that would end after MaxElapsed since the
// first attempt, or after ctx's deadline, is not started.
func (p Policy) Do(ctx context.Context, op func(ctx context.Context) error, classify Classifier) error {
	p = p.withDefaults()
	b := p.backoff()
	start := p.Clock.Now()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || classify == nil {
			return err
		}
		d := classify(err)
		if !d.Retry {
			return err
		}
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			return fmt.Errorf("%w after %d attempts: %w", ErrBudgetExhausted, attempt, err)
		}
		wait := p.jitter(b.NextBackOff())
		after := min(d.After, p.MaxRetryAfter)
		wait = max(wait, after)
		now := p.Clock.Now()
		if p.MaxElapsed > 0 && now.Sub(start)+wait > p.MaxElapsed {
			return fmt.Errorf("%w after %d attempts in %s (next wait %s): %w",
				ErrBudgetExhausted, attempt, now.Sub(start).Round(time.Millisecond), wait.Round(time.Millisecond), err)
		}
		if dl, ok := ctx.Deadline(); ok && !now.Add(wait).Before(dl) {
			return fmt.Errorf("%w after %d attempts (next wait %s passes the deadline): %w",
				ErrBudgetExhausted, attempt, wait.Round(time.Millisecond), err)
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, wait)
		}
		t := p.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		case <-t.C():
		}
	}
}
