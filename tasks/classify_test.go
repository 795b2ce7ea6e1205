package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/retry"
)

func TestClassTable(t *testing.T) {
	t.Parallel()
	for _, r := range ClassTable {
		t.Run(r.Condition, func(t *testing.T) {
			t.Parallel()
			if r.Example == nil || r.Action == "" {
				t.Fatalf("row needs an Example and an Action")
			}
			if got := Classify(r.Example); got != r.Class {
				t.Errorf("Classify(%v) = %v, want %v", r.Example, got, r.Class)
			}
			// Wrapping must not change the verdict.
			if got := Classify(fmt.Errorf("batch r:b000001: %w", r.Example)); got != r.Class {
				t.Errorf("Classify(wrapped %v) = %v, want %v", r.Example, got, r.Class)
			}
		})
	}
}

func TestClassTableMarkdown(t *testing.T) {
	t.Parallel()
	md := ClassTableMarkdown()
	if n := strings.Count(md, "\n"); n != len(ClassTable)+2 {
		t.Errorf("%d lines, want %d:\n%s", n, len(ClassTable)+2, md)
	}
	if !strings.Contains(md, "| HTTP 429, or any reply with Retry-After | throttled |") {
		t.Errorf("markdown:\n%s", md)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{name: "nil", err: nil, want: ClassNone},
		{name: "502", err: &erpsync.HTTPError{StatusCode: 502}, want: ClassTransient},
		{name: "504", err: &erpsync.HTTPError{StatusCode: 504}, want: ClassTransient},
		{name: "503 with Retry-After", err: &erpsync.HTTPError{StatusCode: 503, RetryAfter: time.Minute}, want: ClassThrottled},
		{name: "429 without Retry-After", err: &erpsync.HTTPError{StatusCode: 429}, want: ClassThrottled},
		{name: "415", err: &erpsync.HTTPError{StatusCode: 415}, want: ClassPermanent},
		{name: "400", err: &erpsync.HTTPError{StatusCode: 400}, want: ClassPermanent},
		{name: "401", err: &erpsync.HTTPError{StatusCode: 401}, want: ClassAuth},
		{name: "408", err: &erpsync.HTTPError{StatusCode: 408}, want: ClassTransient},
		{name: "transport timeout", err: &erpsync.TransportError{Err: context.DeadlineExceeded}, want: ClassTransient},
		{name: "fault receiver", err: &erpsync.FaultError{Code: "env:Receiver"}, want: ClassTransient},
		{name: "fault sender", err: &erpsync.FaultError{Code: "env:Sender", Subcode: "a:DeserializationFailed", Sender: true}, want: ClassPermanent},
		{name: "exception not about the ticket", err: &erpsync.ExceptionError{Type: "SoException", Message: "boom"}, want: ClassTransient},
		{name: "ticket exception", err: fmt.Errorf("x: %w", &erpsync.ExceptionError{Type: "SoSecurityException", TicketRejected: true}), want: ClassAuth},
		{name: "invalid batch", err: fmt.Errorf("%w: no keys", ErrInvalidBatch), want: ClassPermanent},
		{name: "business", err: &BusinessError{ErrorCode: "X"}, want: ClassBusiness},
		{name: "handler error keeps its class", err: &Error{Class: ClassAuth, Err: errors.New("x")}, want: ClassAuth},
		{name: "breaker open, through the transport", err: &erpsync.TransportError{Err: &flow.PausedError{}}, want: ClassThrottled},
		{name: "flow wait", err: &erpsync.TransportError{Err: &flow.WaitError{RetryAfter: time.Second}}, want: ClassThrottled},
		{name: "lease expired", err: asynq.ErrLeaseExpired, want: ClassTransient},
		{name: "unknown", err: errors.New("something odd"), want: ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestClassNames(t *testing.T) {
	t.Parallel()
	for c := ClassNone; c <= ClassBusiness; c++ {
		got, err := ParseClass(c.String())
		if err != nil || got != c {
			t.Errorf("ParseClass(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if _, err := ParseClass("nonsense"); err == nil {
		t.Error("ParseClass(nonsense) succeeded")
	}
}

func TestIsFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil, want: false},
		{name: "throttled 429", err: &Error{Class: ClassThrottled, Err: &erpsync.HTTPError{StatusCode: 429}}, want: false},
		{name: "raw 429", err: &erpsync.HTTPError{StatusCode: 429}, want: false},
		{name: "breaker hold", err: &Error{Class: ClassThrottled, Err: &flow.PausedError{}}, want: false},
		{name: "auth hold", err: &Error{Class: ClassAuth, Err: erpsync.ErrLoginRefused}, want: false},
		{name: "auth dead letter", err: &Error{Class: ClassAuth, Dead: true, Err: erpsync.ErrLoginRefused}, want: true},
		{name: "transient", err: &Error{Class: ClassTransient, Err: errors.New("reset")}, want: true},
		{name: "business", err: &Error{Class: ClassBusiness, Err: &BusinessError{}}, want: true},
		{name: "permanent", err: &Error{Class: ClassPermanent, Dead: true, Err: erpsync.ErrEmptyKeys}, want: true},
		{name: "lease expired", err: asynq.ErrLeaseExpired, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := IsFailure(tt.err); got != tt.want {
				t.Errorf("IsFailure(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	t.Parallel()
	cause := &erpsync.HTTPError{StatusCode: 503}
	e := &Error{Class: ClassTransient, Err: cause}
	if errors.Is(e, asynq.SkipRetry) {
		t.Error("a retryable Error wraps SkipRetry")
	}
	var he *erpsync.HTTPError
	if !errors.As(e, &he) {
		t.Error("Error does not unwrap to its cause")
	}
	d := &Error{Class: ClassPermanent, Dead: true, Err: cause, msg: "dead letter: x"}
	if !errors.Is(d, asynq.SkipRetry) || d.Error() != "dead letter: x" {
		t.Errorf("dead Error = %q, SkipRetry %v", d.Error(), errors.Is(d, asynq.SkipRetry))
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Initial: 30 * time.Second, Max: 30 * time.Minute, Multiplier: 2, RandomizationFactor: -1, MaxRetryAfter: time.Hour}
	business := retry.Policy{Initial: 10 * time.Second, Max: time.Minute, Multiplier: 3, RandomizationFactor: -1}
	delay := RetryDelay(p, business)
	task := asynq.NewTask(TypeResync, nil)
	tests := []struct {
		name string
		n    int
		err  error
		want time.Duration
	}{
		{name: "transient first retry", n: 0, err: &Error{Class: ClassTransient, Err: errors.New("reset")}, want: 30 * time.Second},
		{name: "transient third retry", n: 2, err: &Error{Class: ClassTransient, Err: errors.New("reset")}, want: 2 * time.Minute},
		{name: "Retry-After longer than backoff", n: 0,
			err:  &Error{Class: ClassThrottled, Err: fmt.Errorf("call: %w", &erpsync.HTTPError{StatusCode: 429, RetryAfter: 10 * time.Minute})},
			want: 10 * time.Minute},
		{name: "Retry-After on a bare soap error", n: 0, err: &erpsync.HTTPError{StatusCode: 503, RetryAfter: 2 * time.Minute}, want: 2 * time.Minute},
		{name: "throttled: Retry-After shorter than backoff is what the server asked", n: 3,
			err:  &Error{Class: ClassThrottled, Err: &erpsync.HTTPError{StatusCode: 429, RetryAfter: 5 * time.Second}},
			want: 5 * time.Second},
		{name: "transient: Retry-After shorter than backoff", n: 3,
			err:  &Error{Class: ClassTransient, Err: &erpsync.HTTPError{StatusCode: 503, RetryAfter: 5 * time.Second}},
			want: 4 * time.Minute},
		{name: "throttled without Retry-After backs off", n: 2,
			err:  &Error{Class: ClassThrottled, Err: &erpsync.HTTPError{StatusCode: 429}},
			want: 2 * time.Minute},
		{name: "Retry-After capped", n: 0, err: &erpsync.HTTPError{StatusCode: 429, RetryAfter: 24 * time.Hour}, want: time.Hour},
		{name: "auth hold", n: 0, err: &Error{Class: ClassAuth, RetryAfter: 5 * time.Minute, Err: erpsync.ErrLoginRefused}, want: 5 * time.Minute},
		{name: "business first", n: 7, err: &Error{Class: ClassBusiness, Attempt: 1, Err: &BusinessError{}}, want: 10 * time.Second},
		{name: "business second", n: 0, err: &Error{Class: ClassBusiness, Attempt: 2, Err: &BusinessError{}}, want: 30 * time.Second},
		{name: "lease expired", n: 1, err: asynq.ErrLeaseExpired, want: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := delay(tt.n, tt.err, task); got != tt.want {
				t.Errorf("delay(%d, %v) = %v, want %v", tt.n, tt.err, got, tt.want)
			}
		})
	}
}

func TestDeadReason(t *testing.T) {
	t.Parallel()
	got := DeadReason(ClassBusiness, &BusinessError{ErrorCode: "ERP_REJECTED", TechExplanation: "customer blocked"}, 3, 1)
	want := "dead letter: business failure ERP_REJECTED: customer blocked after 3 attempts (1 key)"
	if got != want {
		t.Errorf("deadReason = %q, want %q", got, want)
	}
}
