package tasks

import (
	"sync"

	"github.com/erpresync/erpresync/erpsync"
)

// guard is the systemic guard: per ERP connection and actor type, the outcomes of the last
// calls that got an answer ("" for IsOk=true, "!CODE" for IsOk=false; failures of producer
// batches only, see refused). In-process only: each worker judges from what it sees.
type guard struct {
	mu        sync.Mutex
	window    int
	threshold float64
	rings     map[guardKey]*ring
}

type guardKey struct {
	conn  int
	actor erpsync.ActorType
}

type ring struct {
	buf  []string
	next int
	full bool
}

func newGuard(window int, threshold float64) *guard {
	return &guard{window: window, threshold: threshold, rings: make(map[guardKey]*ring)}
}

// record adds an outcome and returns the share of the window with that same outcome and
// the number of outcomes in the window.
func (g *guard) record(conn int, actor erpsync.ActorType, outcome string) (share float64, n int) {
	if g.window <= 0 {
		return 0, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	k := guardKey{conn, actor}
	r := g.rings[k]
	if r == nil {
		r = &ring{buf: make([]string, g.window)}
		g.rings[k] = r
	}
	r.buf[r.next] = outcome
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	return r.share(outcome)
}

// share returns the share of the ring's outcomes equal to outcome, and how many it holds.
func (r *ring) share(outcome string) (float64, int) {
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	if n == 0 {
		return 0, 0
	}
	same := 0
	for _, o := range r.buf[:n] {
		if o == outcome {
			same++
		}
	}
	return float64(same) / float64(n), n
}

// share returns the share of the window with outcome and the number of outcomes in the
// window, without recording anything.
func (g *guard) share(conn int, actor erpsync.ActorType, outcome string) (float64, int) {
	if g.window <= 0 {
		return 0, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rings[guardKey{conn, actor}]
	if r == nil {
		return 0, 0
	}
	return r.share(outcome)
}

// tripped reports whether a share over a window of n calls means a systemic failure: the
// window must be full, so that a few early failures never hold a run back.
func (g *guard) tripped(share float64, n int) bool {
	return g.window > 0 && n >= g.window && share >= g.threshold
}
