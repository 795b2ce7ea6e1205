package flow

import (
	"fmt"
	"time"
)

// WaitError means a request was not sent because the wait for the rate limit, a
// concurrency slot or a cool-down would not end in time for the request's deadline. It is
// throttling, not a failure: the work goes back to the queue for RetryAfter.
type WaitError struct {
	Reason     string        // "rate limit", "concurrency slot" or "cool-down"
	RetryAfter time.Duration // how long to wait before trying again
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("flow control: waiting for the %s would pass the deadline; retry after %s", e.Reason, e.RetryAfter.Round(time.Millisecond))
}

// PausedError means a circuit breaker is open: SuperOffice (or one ERP connection) is
// unavailable and no worker calls it until the next probe.
type PausedError struct {
	Tenant        string
	ErpConnection int       // 0 for the tenant's breaker
	Since         time.Time // when the breaker opened
	NextProbe     time.Time // when a probe may be sent
	Reason        string    // what opened it
	RetryAfter    time.Duration
	// ReasonOnly means Reason says it all, times included (a tenant's state:
	// tenantstate.PauseReason): the error is "paused: " + Reason.
	ReasonOnly bool
}

func (e *PausedError) Error() string {
	if e.ReasonOnly {
		return "paused: " + e.Reason
	}
	return describe(e.ErpConnection, e.Since, e.NextProbe, e.Reason, time.Now())
}

// describe is the one wording of a pause, used by errors, logs and the operators' CLI.
func describe(conn int, since, next time.Time, reason string, now time.Time) string {
	what := "SuperOffice unavailable"
	if conn != 0 {
		what = fmt.Sprintf("ERP connection %d failing systemically", conn)
	}
	in := next.Sub(now).Round(time.Second)
	probe := "next probe in " + in.String()
	if in <= 0 {
		probe = "probing now"
	}
	s := fmt.Sprintf("paused: %s since %s, %s", what, since.UTC().Format("2006-01-02 15:04:05 UTC"), probe)
	if reason != "" {
		s += " (" + reason + ")"
	}
	return s
}
