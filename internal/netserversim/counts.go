package netserversim

import "sync"

// Outcome classifies one request to ErpSync.svc for the call totals in Snapshot.Calls.
type Outcome string

// The outcomes. A reply outcome (OK, Rejected, Exception, Fault, BadRequest) is counted only
// when its reply was delivered; otherwise the call counts as Undelivered.
const (
	// OutcomeOK: Succeeded=true, IsOk=true reply delivered (including resync-all calls).
	OutcomeOK Outcome = "ok"
	// OutcomeRejected: Succeeded=true, IsOk=false, Status=Error reply delivered (poison key).
	OutcomeRejected Outcome = "rejected"
	// OutcomeException: Succeeded=false reply with ExceptionInfo delivered (ticket, application
	// token, ErpSync not granted).
	OutcomeException Outcome = "exception"
	// OutcomeFault: HTTP 500 SOAP fault delivered (version mismatch, unknown action,
	// deserialization failure, mustUnderstand, duplicate header).
	OutcomeFault Outcome = "fault"
	// OutcomeBadRequest: HTTP 400, 405, 413 or 415 delivered.
	OutcomeBadRequest Outcome = "bad_request"
	// OutcomeUnavailable: HTTP 503 maintenance page (injected, outage or random).
	OutcomeUnavailable Outcome = "unavailable"
	// OutcomeThrottled: HTTP 429 with Retry-After (injected or random).
	OutcomeThrottled Outcome = "throttled"
	// OutcomeMisdirected: HTTP 421 Misdirected Request (SetMisdirected).
	OutcomeMisdirected Outcome = "misdirected"
	// OutcomeDropped: connection closed without a reply, before processing.
	OutcomeDropped Outcome = "dropped"
	// OutcomeUndelivered: the call was processed but its reply did not reach the client
	// (client gone during latency, slow body or write).
	OutcomeUndelivered Outcome = "undelivered"
)

// Logins counts authentication requests by endpoint and result.
type Logins struct {
	// PasswordOK and PasswordRefused count SoPrincipal AuthenticateUsernamePassword replies
	// with AuthenticationSucceeded true and false.
	PasswordOK      int `json:"password_ok"`
	PasswordRefused int `json:"password_refused"`
	// SystemUserOK and SystemUserRefused count PartnerSystemUser/Authenticate replies with
	// IsSuccessful true and false.
	SystemUserOK      int `json:"system_user_ok"`
	SystemUserRefused int `json:"system_user_refused"`
	// Errors counts login requests answered with anything else (fault, exception, 4xx, 503).
	Errors int `json:"errors"`
}

// Snapshot is a copy of the simulator's counters, taken atomically. Maps are never nil.
type Snapshot struct {
	// Calls counts ErpSync.svc requests by outcome.
	Calls map[Outcome]int `json:"calls"`
	// Logins counts authentication requests.
	Logins Logins `json:"logins"`
	// ResyncAll counts parsed ForceResyncExternal requests with no keys (absent, nil or empty
	// ExternalKeys: "resync all"), whatever their outcome.
	ResyncAll int `json:"resync_all"`
	// Changes sums the change items of delivered IsOk=true replies: table → kind → items.
	Changes map[string]map[ChangeKind]int `json:"changes"`
	// Resynced counts, per key, the delivered IsOk=true replies whose batch held the key.
	Resynced map[string]int `json:"resynced"`
	// Seen counts, per key, the processed requests (body parsed, whatever the outcome after
	// that) whose batch held the key.
	Seen map[string]int `json:"seen"`
}

// TotalCalls is the sum of Calls over all outcomes.
func (s Snapshot) TotalCalls() int {
	n := 0
	for _, v := range s.Calls {
		n += v
	}
	return n
}

// ChangeCount returns Changes[table][kind], zero when absent.
func (s Snapshot) ChangeCount(table string, kind ChangeKind) int {
	return s.Changes[table][kind]
}

// Keys within one request count once: a batch repeating a key is one "seen" and, if it
// succeeds, one "resynced" for that key.
type counters struct {
	mu        sync.Mutex
	calls     map[Outcome]int
	logins    Logins
	resyncAll int
	changes   map[string]map[ChangeKind]int
	resynced  map[string]int
	seen      map[string]int
}

func newCounters() *counters {
	c := &counters{}
	c.resetLocked()
	return c
}

func (c *counters) resetLocked() {
	c.calls = map[Outcome]int{}
	c.logins = Logins{}
	c.resyncAll = 0
	c.changes = map[string]map[ChangeKind]int{}
	c.resynced = map[string]int{}
	c.seen = map[string]int{}
}

func (c *counters) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
}

// processed records a parsed ForceResyncExternal request; keys must already be distinct.
func (c *counters) processed(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(keys) == 0 {
		c.resyncAll++
	}
	for _, k := range keys {
		c.seen[k]++
	}
}

// tally is what a reply adds to the counters if it is delivered.
type tally struct {
	outcome  Outcome
	resynced []string   // distinct keys, only for OutcomeOK
	changes  []Change   // only for OutcomeOK
	login    loginField // non-nil for login endpoints: bump this Logins field instead of Calls
}

// loginField picks the Logins counter a login reply bumps; it is applied under counters.mu.
type loginField func(*Logins) *int

// commit applies t and returns a function that undoes it and counts the request as
// undelivered instead. Each runs under one lock, so counts stay exact under concurrency.
func (c *counters) commit(t tally) (undo func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(t, 1)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.applyLocked(t, -1)
		c.undeliveredLocked(t)
	}
}

func (c *counters) applyLocked(t tally, d int) {
	if t.login != nil {
		*t.login(&c.logins) += d
		return
	}
	c.calls[t.outcome] += d
	for _, k := range t.resynced {
		c.resynced[k] += d
		if c.resynced[k] == 0 {
			delete(c.resynced, k)
		}
	}
	for _, ch := range t.changes {
		m := c.changes[ch.Table]
		if m == nil {
			m = map[ChangeKind]int{}
			c.changes[ch.Table] = m
		}
		m[ch.Kind] += d
	}
}

// undelivered counts a processed request whose reply never reached the client.
func (c *counters) undelivered(t tally) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.undeliveredLocked(t)
}

func (c *counters) undeliveredLocked(t tally) {
	if t.login != nil {
		c.logins.Errors++
		return
	}
	c.calls[OutcomeUndelivered]++
}

// call counts an ErpSync.svc request answered before processing (503, 429, dropped).
func (c *counters) call(o Outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[o]++
}

func (c *counters) loginError() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logins.Errors++
}

func (c *counters) snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{
		Calls:     make(map[Outcome]int, len(c.calls)),
		Logins:    c.logins,
		ResyncAll: c.resyncAll,
		Changes:   make(map[string]map[ChangeKind]int, len(c.changes)),
		Resynced:  make(map[string]int, len(c.resynced)),
		Seen:      make(map[string]int, len(c.seen)),
	}
	for k, v := range c.calls {
		if v != 0 {
			s.Calls[k] = v
		}
	}
	for t, m := range c.changes {
		cp := make(map[ChangeKind]int, len(m))
		for k, v := range m {
			if v != 0 {
				cp[k] = v
			}
		}
		if len(cp) > 0 {
			s.Changes[t] = cp
		}
	}
	for k, v := range c.resynced {
		s.Resynced[k] = v
	}
	for k, v := range c.seen {
		s.Seen[k] = v
	}
	return s
}

func (c *counters) resyncedOf(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resynced[key]
}

func (c *counters) seenOf(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}
