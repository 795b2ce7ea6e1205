package netserversim

import (
	"sync"
	"time"
)

// Traffic is what the simulator saw of the HTTP traffic to the tenant: every request to
// ErpSync.svc and SoPrincipal.svc and to the Online login service, answered or not, so that
// tests can check limits that count HTTP requests (a rate limit, a concurrency cap, a
// cool-down) across worker processes.
type Traffic struct {
	Requests     int64       // requests received
	InFlight     int         // requests being served now
	PeakInFlight int         // the most served at once since the last ResetTraffic
	Arrivals     []time.Time // arrival times, oldest first (the last MaxArrivals)
}

// MaxArrivals is how many arrival times Traffic keeps.
const MaxArrivals = 100_000

type traffic struct {
	mu       sync.Mutex
	requests int64
	inflight int
	peak     int
	arrivals []time.Time
}

func (t *traffic) begin() {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.requests++
	t.inflight++
	t.peak = max(t.peak, t.inflight)
	if len(t.arrivals) == MaxArrivals {
		t.arrivals = append(t.arrivals[:0], t.arrivals[MaxArrivals/2:]...)
	}
	t.arrivals = append(t.arrivals, now)
}

func (t *traffic) end() {
	t.mu.Lock()
	t.inflight--
	t.mu.Unlock()
}

// Traffic returns a copy of the traffic seen so far.
func (s *Server) Traffic() Traffic {
	t := &s.traffic
	t.mu.Lock()
	defer t.mu.Unlock()
	return Traffic{Requests: t.requests, InFlight: t.inflight, PeakInFlight: t.peak, Arrivals: append([]time.Time(nil), t.arrivals...)}
}

// ResetTraffic forgets the traffic seen so far (requests in flight stay counted as such).
func (s *Server) ResetTraffic() {
	t := &s.traffic
	t.mu.Lock()
	defer t.mu.Unlock()
	t.requests, t.peak, t.arrivals = 0, t.inflight, nil
}
