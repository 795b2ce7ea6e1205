package runspage

import (
	"context"
	"time"
)

// Pause is a hold that flow control (the circuit breaker in front of SuperOffice) has put
// on calls: while it lasts, batches wait instead of failing.
type Pause struct {
	// Scope says what is held, e.g. "ERP connection 3, Customer"; "" means every call.
	Scope string
	// Reason is the cause a person reads, e.g. "SuperOffice unavailable"; "" shows as
	// "calls held".
	Reason string
	// Since is when the pause began.
	Since time.Time
	// Until is when calls are tried again; zero when not known.
	Until time.Time
}

// Pauser reports the pauses in force. The runs page calls it once per page view, so it
// should answer from memory or one Redis round trip. It must be safe for concurrent use.
type Pauser interface {
	Pauses(ctx context.Context) ([]Pause, error)
}

// noPauses is the Pauser of a worker without flow control.
type noPauses struct{}

func (noPauses) Pauses(context.Context) ([]Pause, error) { return nil, nil }
