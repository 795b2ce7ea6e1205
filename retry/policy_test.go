package retry

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/testclock"
)

// fakeClock is a testclock.Clock whose timers advance it by their duration and fire at
// once, so Do never sleeps; it records the waits. block makes timers never fire (for
// cancellation).
type fakeClock struct {
	*testclock.Clock
	mu    sync.Mutex
	waits []time.Duration
	block bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{Clock: testclock.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))}
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if !c.block {
		c.Add(d)
		ch <- c.Now()
	}
	return fakeTimer{ch}
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

type fakeTimer struct{ ch chan time.Time }

func (t fakeTimer) C() <-chan time.Time { return t.ch }
func (t fakeTimer) Stop() bool          { return true }

var (
	errTransient = errors.New("connection reset")
	errFatal     = errors.New("invalid key")
)

func classify(err error) Decision {
	return Decision{Retry: errors.Is(err, errTransient)}
}

// fails returns an op that fails with errs in turn, then succeeds; it counts calls.
func fails(calls *int, errs ...error) func(context.Context) error {
	return func(context.Context) error {
		*calls++
		if *calls <= len(errs) {
			return errs[*calls-1]
		}
		return nil
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	noJitter := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, RandomizationFactor: -1, MaxElapsed: 10 * time.Second}
	tests := []struct {
		name      string
		policy    Policy
		errs      []error
		classify  Classifier
		wantErr   error
		wantCalls int
		wantWaits []time.Duration
	}{
		{name: "success first time", policy: noJitter, wantCalls: 1},
		{name: "transient then success", policy: noJitter, errs: []error{errTransient, errTransient},
			wantCalls: 3, wantWaits: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
		{name: "permanent not retried", policy: noJitter, errs: []error{errFatal}, wantErr: errFatal, wantCalls: 1},
		{name: "transient then permanent", policy: noJitter, errs: []error{errTransient, errFatal}, wantErr: errFatal,
			wantCalls: 2, wantWaits: []time.Duration{100 * time.Millisecond}},
		{name: "nil classifier retries nothing", policy: noJitter, errs: []error{errTransient}, classify: nil, wantErr: errTransient, wantCalls: 1},
		{name: "waits capped at Max", policy: noJitter,
			errs:      []error{errTransient, errTransient, errTransient, errTransient, errTransient, errTransient},
			wantCalls: 7,
			wantWaits: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}},
		{name: "budget exhausted", policy: Policy{Initial: time.Second, Max: 4 * time.Second, Multiplier: 2, RandomizationFactor: -1, MaxElapsed: 5 * time.Second},
			errs: []error{errTransient, errTransient, errTransient, errTransient}, wantErr: ErrBudgetExhausted,
			// 1 s + 2 s = 3 s elapsed; the next 4 s would end at 7 s > 5 s.
			wantCalls: 3, wantWaits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "max attempts", policy: Policy{Initial: time.Second, RandomizationFactor: -1, MaxAttempts: 2},
			errs: []error{errTransient, errTransient, errTransient}, wantErr: ErrBudgetExhausted,
			wantCalls: 2, wantWaits: []time.Duration{time.Second}},
		{name: "retry-after raises the wait", policy: noJitter, errs: []error{errTransient},
			classify:  func(error) Decision { return Decision{Retry: true, After: 3 * time.Second} },
			wantCalls: 2, wantWaits: []time.Duration{3 * time.Second}},
		{name: "retry-after beyond budget gives up", policy: noJitter, errs: []error{errTransient},
			classify: func(error) Decision { return Decision{Retry: true, After: time.Minute} },
			wantErr:  ErrBudgetExhausted, wantCalls: 1},
		{name: "retry-after capped", policy: Policy{Initial: 100 * time.Millisecond, RandomizationFactor: -1, MaxElapsed: -1, MaxRetryAfter: 2 * time.Second},
			errs:      []error{errTransient},
			classify:  func(error) Decision { return Decision{Retry: true, After: time.Hour} },
			wantCalls: 2, wantWaits: []time.Duration{2 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			p := tt.policy
			p.Clock = clock
			c := tt.classify
			if c == nil && tt.name != "nil classifier retries nothing" {
				c = classify
			}
			calls := 0
			err := p.Do(context.Background(), fails(&calls, tt.errs...), c)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Do() = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == ErrBudgetExhausted && !errors.Is(err, errTransient) {
				t.Errorf("Do() = %v, want it to wrap the last error too", err)
			}
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if got := clock.Waits(); !equalDurations(got, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", got, tt.wantWaits)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDoJitterWithinBounds(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	p := Policy{Initial: time.Second, Max: time.Minute, Multiplier: 2, RandomizationFactor: 0.5, MaxElapsed: -1, MaxAttempts: 6, Clock: clock}
	calls := 0
	errs := []error{errTransient, errTransient, errTransient, errTransient, errTransient}
	if err := p.Do(context.Background(), fails(&calls, errs...), classify); err != nil {
		t.Fatal(err)
	}
	base := time.Second
	for i, w := range clock.Waits() {
		lo, hi := base/2, base+base/2
		if w < lo || w > hi {
			t.Errorf("wait %d = %v, want in [%v, %v]", i, w, lo, hi)
		}
		base *= 2
	}
}

func TestDoNeverRetriesCancelledContext(t *testing.T) {
	t.Parallel()
	t.Run("cancelled before the first attempt", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		calls := 0
		err := Policy{Clock: newFakeClock()}.Do(ctx, fails(&calls, errTransient), classify)
		if !errors.Is(err, context.Canceled) || calls != 0 {
			t.Fatalf("Do() = %v after %d calls, want context.Canceled after 0", err, calls)
		}
	})
	t.Run("cancelled during the call", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		op := func(context.Context) error { calls++; cancel(); return errTransient }
		err := Policy{Clock: newFakeClock()}.Do(ctx, op, RetryAll)
		if !errors.Is(err, errTransient) || calls != 1 {
			t.Fatalf("Do() = %v after %d calls, want the call's error after 1", err, calls)
		}
	})
	t.Run("cancelled during the wait", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock()
		clock.block = true
		ctx, cancel := context.WithCancel(context.Background())
		p := Policy{Clock: clock, OnRetry: func(int, error, time.Duration) { cancel() }}
		calls := 0
		err := p.Do(ctx, fails(&calls, errTransient, errTransient), classify)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errTransient) || calls != 1 {
			t.Fatalf("Do() = %v after %d calls, want context.Canceled and the last error after 1", err, calls)
		}
	})
	t.Run("wait would pass the deadline", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock()
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
		defer cancel()
		// The fake clock is far behind the real one, so map the deadline: a policy whose
		// first wait is longer than the time left must not start it.
		left := time.Until(time.Now().Add(time.Hour))
		p := Policy{Initial: 2 * time.Hour, Max: 2 * time.Hour, RandomizationFactor: -1, MaxElapsed: -1, Clock: realNowClock{clock}}
		calls := 0
		err := p.Do(ctx, fails(&calls, errTransient, errTransient), classify)
		if !errors.Is(err, ErrBudgetExhausted) || calls != 1 || len(clock.Waits()) != 0 {
			t.Fatalf("Do() = %v after %d calls and waits %v (deadline in %v), want ErrBudgetExhausted after 1 and no wait", err, calls, clock.Waits(), left)
		}
	})
}

// realNowClock reads the real time (to compare with real context deadlines) but fakes timers.
type realNowClock struct{ *fakeClock }

func (realNowClock) Now() time.Time { return time.Now() }

func TestDoOnRetry(t *testing.T) {
	t.Parallel()
	var attempts []int
	p := Policy{Clock: newFakeClock(), RandomizationFactor: -1, OnRetry: func(a int, err error, w time.Duration) {
		if !errors.Is(err, errTransient) || w <= 0 {
			t.Errorf("OnRetry(%d, %v, %v)", a, err, w)
		}
		attempts = append(attempts, a)
	}}
	calls := 0
	if err := p.Do(context.Background(), fails(&calls, errTransient, errTransient), classify); err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Errorf("OnRetry attempts = %v, want [1 2]", attempts)
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: 30 * time.Second, Max: 30 * time.Minute, Multiplier: 2, RandomizationFactor: -1, MaxRetryAfter: time.Hour}
	tests := []struct {
		name       string
		n          int
		retryAfter time.Duration
		want       time.Duration
	}{
		{name: "first retry", n: 0, want: 30 * time.Second},
		{name: "negative n counts as 0", n: -3, want: 30 * time.Second},
		{name: "second retry", n: 1, want: time.Minute},
		{name: "fifth retry", n: 4, want: 8 * time.Minute},
		{name: "capped", n: 7, want: 30 * time.Minute},
		{name: "huge n does not overflow", n: 10000, want: 30 * time.Minute},
		{name: "retry-after larger wins", n: 0, retryAfter: 5 * time.Minute, want: 5 * time.Minute},
		{name: "retry-after smaller ignored", n: 3, retryAfter: 10 * time.Second, want: 4 * time.Minute},
		{name: "retry-after capped", n: 0, retryAfter: 48 * time.Hour, want: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := p.Delay(tt.n, tt.retryAfter); got != tt.want {
				t.Errorf("Delay(%d, %v) = %v, want %v", tt.n, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestDelayJitter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rand float64
		want time.Duration
	}{
		{name: "lowest", rand: 0, want: 50 * time.Second},
		{name: "middle", rand: 0.5, want: 100 * time.Second},
		{name: "highest", rand: 0.999999, want: 150 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := Policy{Initial: 100 * time.Second, Max: time.Hour, RandomizationFactor: 0.5, Rand: func() float64 { return tt.rand }}
			got := p.Delay(0, 0)
			if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("Delay(0, 0) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestZeroPolicyDefaults(t *testing.T) {
	t.Parallel()
	var p Policy
	for n := range 20 {
		d := p.Delay(n, 0)
		if d <= 0 || d > DefaultMax+DefaultMax/2 {
			t.Fatalf("zero Policy Delay(%d) = %v, want in (0, %v]", n, d, DefaultMax+DefaultMax/2)
		}
	}
	if d := p.Delay(0, 0); d < DefaultInitial/2 || d > DefaultInitial*3/2 {
		t.Errorf("zero Policy Delay(0) = %v, want about %v", d, DefaultInitial)
	}
}

func TestAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		p        Policy
		ra, want time.Duration
		maxWant  time.Duration
	}{
		{name: "as asked without jitter", p: Policy{RandomizationFactor: -1}, ra: 7 * time.Second, want: 7 * time.Second, maxWant: 7 * time.Second},
		{name: "capped", p: Policy{RandomizationFactor: -1, MaxRetryAfter: time.Minute}, ra: time.Hour, want: time.Minute, maxWant: time.Minute},
		{name: "jitter only stretches", p: Policy{RandomizationFactor: 0.5, Rand: func() float64 { return 0.999 }}, ra: 10 * time.Second, want: 10 * time.Second, maxWant: 15 * time.Second},
		{name: "no hint", p: Policy{}, ra: 0, want: 0, maxWant: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.p.After(tt.ra)
			if got < tt.want || got > tt.maxWant {
				t.Errorf("After(%v) = %v, want within [%v, %v]", tt.ra, got, tt.want, tt.maxWant)
			}
		})
	}
}
