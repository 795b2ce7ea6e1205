package netserversim

import (
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"
)

// FaultKind names a fault the simulator can inject before processing a call.
type FaultKind string

// The injectable pre-processing faults.
const (
	// FaultUnavailable answers HTTP 503 with an HTML maintenance page (protocol doc §4.4
	// layer 3 and §9: maintenance replies are "likely non-SOAP HTTP error pages" [U]).
	FaultUnavailable FaultKind = "unavailable"
	// FaultThrottle answers HTTP 429 with Retry-After. OUR ASSUMPTION: SuperOffice documents
	// no status code for throttling (§9 [U]); this exists to exercise the client's handling.
	FaultThrottle FaultKind = "throttle"
	// FaultDrop hijacks the connection and closes it without a reply, before processing.
	FaultDrop FaultKind = "drop"
	// FaultMisdirected answers HTTP 421 Misdirected Request ("Wrong subdomain used to access
	// tenant"), as SuperOffice Online does once a tenant moved to another host (§8). Only
	// SetMisdirected turns it on; random faults never draw it.
	FaultMisdirected FaultKind = "misdirected"
)

// CallInfo describes a processed ForceResyncExternal call to a LatencyFunc.
type CallInfo struct {
	// Seq numbers processed ErpSync.svc calls from 1, in arrival order.
	Seq             int64
	ErpConnectionID int32
	Actor           ActorType
	// Keys are the batch's distinct keys; empty for resync-all or for a call that failed to
	// parse. Do not modify.
	Keys []string
}

// FaultState is a copy of the current fault settings (see Server.Faults).
type FaultState struct {
	Fail503     int           `json:"fail503"`     // calls left that answer 503
	Drop        int           `json:"drop"`        // calls left that are dropped
	Throttle    int           `json:"throttle"`    // calls left that answer 429
	RetryAfter  time.Duration `json:"retry_after"` // Retry-After sent with 429
	Latency     time.Duration `json:"latency"`     // fixed latency (ignored when LatencyFunc is set)
	LatencyFunc bool          `json:"latency_func"`
	SlowChunk   int           `json:"slow_chunk"` // bytes per chunk; 0 = off
	SlowDelay   time.Duration `json:"slow_delay"`
	Poison      []string      `json:"poison"`      // sorted
	Outage      bool          `json:"outage"`      // the explicit switch
	Misdirected bool          `json:"misdirected"` // SetMisdirected
	// OutageWindows lists the configured windows [Start, End).
	OutageWindows []OutageWindow `json:"outage_windows"`
	FaultRate     float64        `json:"fault_rate"`
	FaultKinds    []FaultKind    `json:"fault_kinds"`
}

// OutageWindow is a time window [Start, End) during which the tenant answers 503.
type OutageWindow struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// faults holds the injection settings; every method is safe for concurrent use.
type faults struct {
	mu         sync.Mutex
	fail503    int
	drop       int
	throttle   int
	retryAfter time.Duration
	// maintRetryAfter is the Retry-After of 503 maintenance pages (outages, Fail503); 0: none.
	maintRetryAfter time.Duration
	latency         time.Duration
	latencyFn       func(CallInfo) time.Duration
	slowChunk       int
	slowDelay       time.Duration
	poison          map[string]struct{}
	outage          bool
	misdirect       bool
	windows         []OutageWindow
	rate            float64
	rng             *rand.Rand
	kinds           []FaultKind
}

const defaultRetryAfter = time.Second

func newFaults() *faults {
	return &faults{retryAfter: defaultRetryAfter, poison: map[string]struct{}{}}
}

// inOutage reports whether the tenant is down at now.
func (f *faults) inOutage(now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inOutageLocked(now)
}

func (f *faults) inOutageLocked(now time.Time) bool {
	if f.outage {
		return true
	}
	for _, w := range f.windows {
		if !now.Before(w.Start) && now.Before(w.End) {
			return true
		}
	}
	return false
}

// pre decides the fault for the next ErpSync.svc call, consuming a counter. Precedence:
// outage, then drop, 503, 429 counters, then the random fault rate.
func (f *faults) pre(now time.Time) (kind FaultKind, retryAfter time.Duration, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.inOutageLocked(now):
		return FaultUnavailable, f.maintRetryAfter, true
	case f.misdirect:
		return FaultMisdirected, 0, true
	case f.drop > 0:
		f.drop--
		return FaultDrop, 0, true
	case f.fail503 > 0:
		f.fail503--
		return FaultUnavailable, f.maintRetryAfter, true
	case f.throttle > 0:
		f.throttle--
		return FaultThrottle, f.retryAfter, true
	case f.rate > 0 && f.rng != nil && len(f.kinds) > 0:
		if f.rng.Float64() < f.rate {
			k := f.kinds[f.rng.IntN(len(f.kinds))]
			if k == FaultUnavailable {
				return k, f.maintRetryAfter, true
			}
			return k, f.retryAfter, true
		}
	}
	return "", 0, false
}

func (f *faults) latencyFor(ci CallInfo) time.Duration {
	f.mu.Lock()
	fn, d := f.latencyFn, f.latency
	f.mu.Unlock()
	if fn != nil {
		return fn(ci) // outside the lock: fn may be slow or call back into the Server
	}
	return d
}

func (f *faults) slow() (chunk int, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.slowChunk, f.slowDelay
}

// poisoned returns the keys of the batch that are poison, in batch order.
func (f *faults) poisoned(keys []string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, k := range keys {
		if _, ok := f.poison[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

func (f *faults) state() FaultState {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := make([]string, 0, len(f.poison))
	for k := range f.poison {
		p = append(p, k)
	}
	sort.Strings(p)
	return FaultState{
		Fail503: f.fail503, Drop: f.drop, Throttle: f.throttle, RetryAfter: f.retryAfter,
		Latency: f.latency, LatencyFunc: f.latencyFn != nil,
		SlowChunk: f.slowChunk, SlowDelay: f.slowDelay,
		Poison: p, Outage: f.outage, Misdirected: f.misdirect, OutageWindows: append([]OutageWindow{}, f.windows...),
		FaultRate: f.rate, FaultKinds: append([]FaultKind{}, f.kinds...),
	}
}

// Fail503 makes the next n ErpSync.svc calls answer HTTP 503 with an HTML maintenance page,
// before processing. It replaces any previous count; n ≤ 0 clears it.
func (s *Server) Fail503(n int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.fail503 = max(n, 0)
}

// DropNext makes the next n ErpSync.svc calls lose their connection: the simulator reads the
// request, hijacks the connection and closes it without processing or answering. It replaces
// any previous count; n ≤ 0 clears it. Dropping needs a real connection (Start or an
// http.Server); where the ResponseWriter cannot be hijacked the handler panics with
// http.ErrAbortHandler, which net/http servers turn into an aborted connection.
func (s *Server) DropNext(n int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.drop = max(n, 0)
}

// Throttle makes the next n ErpSync.svc calls answer HTTP 429 Too Many Requests with
// "Retry-After: <seconds>" (retryAfter rounded up to whole seconds; ≤ 0 means 1 s, which is
// also the default for random throttle faults). OUR ASSUMPTION: SuperOffice documents no
// status code or header for throttling. It replaces any previous count; n ≤ 0 clears it.
func (s *Server) Throttle(n int, retryAfter time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.throttle = max(n, 0)
	if retryAfter <= 0 {
		retryAfter = defaultRetryAfter
	}
	s.faults.retryAfter = retryAfter
}

// SetLatency delays every processed ErpSync.svc reply by d (after processing, before the
// reply is written; a client that gives up meanwhile leaves the call Undelivered). 0 = off.
func (s *Server) SetLatency(d time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latency = max(d, 0)
}

// SetLatencyFunc sets a per-call latency that takes precedence over SetLatency; nil removes
// it. fn is called from serving goroutines concurrently, outside the simulator's locks.
func (s *Server) SetLatencyFunc(fn func(CallInfo) time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latencyFn = fn
}

// SetSlowBody makes ErpSync.svc replies trickle out in chunks of chunk bytes, flushed with
// delay before each chunk after the first. chunk ≤ 0 turns it off.
func (s *Server) SetSlowBody(chunk int, delay time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.slowChunk = max(chunk, 0)
	s.faults.slowDelay = max(delay, 0)
}

// SetPoison replaces the set of poison keys. A ForceResyncExternal batch holding any of them
// answers Succeeded=true, IsOk=false, Status=Error, ErrorCode=Config.ErrorCode and a
// TechExplanation naming the poison keys; none of the batch's keys counts as resynced.
// SetPoison() with no keys clears the set.
func (s *Server) SetPoison(keys ...string) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.poison = make(map[string]struct{}, len(keys))
	for _, k := range keys {
		s.faults.poison[k] = struct{}{}
	}
}

// SetMaintenanceRetryAfter makes the 503 maintenance pages of outages and Fail503 carry
// "Retry-After: <seconds>" (d rounded up to whole seconds), as a maintenance window that
// says when it ends would; 0 (the default) sends none.
func (s *Server) SetMaintenanceRetryAfter(d time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.maintRetryAfter = max(d, 0)
}

// SetOutage switches the tenant down (true) or up (false). While down, ErpSync.svc and
// SoPrincipal.svc answer HTTP 503 with the maintenance page; the Online login service (a
// different host in reality) stays up. Outage windows apply independently.
func (s *Server) SetOutage(down bool) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.outage = down
}

// AddOutageWindow adds a window [start, end), on the clock of Config.Now, during which the
// tenant is down as with SetOutage(true).
func (s *Server) AddOutageWindow(start, end time.Time) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.windows = append(s.faults.windows, OutageWindow{Start: start, End: end})
}

// ClearOutageWindows removes every outage window (not the SetOutage switch).
func (s *Server) ClearOutageWindows() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.windows = nil
}

// SetRandomFaults makes each ErpSync.svc call not caught by a counted fault fail with
// probability rate, with a kind drawn uniformly from kinds (default: all three). Decisions
// come from a PCG generator seeded with seed, so the sequence of decisions is reproducible
// (the mapping to calls depends on arrival order). rate ≤ 0 turns it off.
func (s *Server) SetRandomFaults(rate float64, seed uint64, kinds ...FaultKind) {
	if len(kinds) == 0 {
		kinds = []FaultKind{FaultUnavailable, FaultThrottle, FaultDrop}
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	if rate <= 0 {
		s.faults.rate, s.faults.rng, s.faults.kinds = 0, nil, nil
		return
	}
	s.faults.rate = min(rate, 1)
	s.faults.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s.faults.kinds = slices.Clone(kinds)
}

// ClearFaults turns every fault off: counters, latency, slow bodies, poison keys, the outage
// switch and windows, and random faults. Tickets and counts are untouched.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	f := s.faults
	f.fail503, f.drop, f.throttle, f.retryAfter = 0, 0, 0, defaultRetryAfter
	f.latency, f.latencyFn = 0, nil
	f.slowChunk, f.slowDelay = 0, 0
	f.poison = map[string]struct{}{}
	f.outage, f.windows, f.misdirect = false, nil, false
	f.rate, f.rng, f.kinds = 0, nil, nil
}

// SetMisdirected makes every ErpSync call, SOAP or REST, answer HTTP 421 Misdirected Request
// while on (after an outage, before every counted fault), as a tenant that moved to another
// host does; logins keep working. The calls count as OutcomeMisdirected.
func (s *Server) SetMisdirected(on bool) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.misdirect = on
}

// Faults returns a copy of the current fault settings.
func (s *Server) Faults() FaultState { return s.faults.state() }
