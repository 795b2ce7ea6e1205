package flow

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/erpresync/erpresync/internal/testwait"
)

// heldServer answers 503 (a maintenance page) or, when up, 200; while held it keeps every
// request waiting until release. It counts the requests that reached it.
type heldServer struct {
	*httptest.Server
	calls   atomic.Int64
	up      atomic.Bool
	gate    chan struct{}
	release func()
}

func newHeldServer(t *testing.T) *heldServer {
	t.Helper()
	s := &heldServer{gate: make(chan struct{})}
	var once sync.Once
	s.release = func() { once.Do(func() { close(s.gate) }) }
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		<-s.gate
		if !s.up.Load() {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(s.Close)
	t.Cleanup(s.release)
	return s
}

// waiting is how many requests of cs waited for reason.
func waiting(cs []*Control, reason string) int {
	n := 0
	for _, c := range cs {
		n += int(testutil.ToFloat64(c.metrics.waits.WithLabelValues(c.cfg.Tenant, reason)))
	}
	return n
}

// fleet starts n requests on each worker (Control) at once through ctx(w, i), and returns
// how many have ended so far and a wait for their ends with what each got: a status code or
// an error.
func fleet(t *testing.T, cs []*Control, n int, url string, ctx func(w, i int) context.Context) (ended *atomic.Int64, wait func() (codes map[int]int, errs []error)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var errs []error
	ended = new(atomic.Int64)
	for w, c := range cs {
		hc := &http.Client{Transport: c.Transport(nil)}
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, err := get(t, hc, ctx(w, i), url)
				defer ended.Add(1)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else {
					codes[code]++
				}
			}()
		}
	}
	return ended, func() (map[int]int, []error) { wg.Wait(); return codes, errs }
}

func pausedBy(errs []error, conn int) (n int, other []error) {
	for _, err := range errs {
		var pe *PausedError
		if errors.As(err, &pe) && pe.ErpConnection == conn {
			n++
		} else {
			other = append(other, err)
		}
	}
	return n, other
}

// TestBreakerHoldsRequestsThatWaited: three workers, ten requests each, all already waiting
// for a concurrency slot and then a rate-limit token when the tenant's breaker opens.
// Nothing that waited may go out after it opened: the tenant sees at most the failures that
// open the breaker plus the requests in flight (the cap), not the whole fleet.
func TestBreakerHoldsRequestsThatWaited(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	srv := newHeldServer(t)
	const failures, capacity = 5, 2
	var cs []*Control
	for range 3 {
		cs = append(cs, newControl(t, rdb, func(c *Config) {
			c.TenantFailures, c.MaxConcurrency, c.Rate = failures, capacity, 50
			c.ProbeInitial = time.Hour // no probe in this test
		}))
	}
	_, done := fleet(t, cs, 10, srv.URL, func(int, int) context.Context { return context.Background() })
	// Two requests reach the tenant and are held there; the other 28 wait for a slot.
	testwait.Until(t, "28 requests waiting for a slot", 10*time.Second, func() bool { return waiting(cs, "slot") == 30-capacity })
	srv.release()
	codes, errs := done()
	n, other := pausedBy(errs, 0)
	if len(other) > 0 {
		t.Fatalf("errors other than the pause: %v", other)
	}
	if got := srv.calls.Load(); got > failures+capacity {
		t.Errorf("%d requests reached the tenant (%v answered, %d paused), want at most %d: the %d failures that open the breaker and the %d in flight",
			got, codes, n, failures+capacity, failures, capacity)
	}
	if codes[503]+n != 30 {
		t.Errorf("answers %v and %d pauses, want 30 in all", codes, n)
	}
}

// TestHalfOpenBreakerLetsOneProbe: when the probe is due, thirty requests of three workers
// pass the first look and wait for the one slot; exactly one of them goes out, the probe
// the fleet shares, and it decides for all.
func TestHalfOpenBreakerLetsOneProbe(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	srv := newHeldServer(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var cs []*Control
	for range 3 {
		cs = append(cs, newControl(t, rdb, func(c *Config) {
			c.TenantFailures, c.MaxConcurrency, c.ProbeInitial, c.Now = 1, 1, time.Minute, clock
		}))
	}
	srv.release()
	if code, _ := get(t, &http.Client{Transport: cs[0].Transport(nil)}, context.Background(), srv.URL); code != 503 {
		t.Fatalf("first call: %d", code)
	}
	if cs[1].Paused(context.Background(), 0) == nil {
		t.Fatal("one failure did not open the breaker")
	}
	mu.Lock()
	now = now.Add(time.Minute) // the probe is due
	mu.Unlock()
	srv.calls.Store(0)
	srv.gate = make(chan struct{})
	srv.release = sync.OnceFunc(func() { close(srv.gate) })
	t.Cleanup(srv.release)
	ended, done := fleet(t, cs, 10, srv.URL, func(int, int) context.Context { return context.Background() })
	// One request claims the probe and is held at the tenant; the others wait for the slot
	// or, when they came after the claim, are held back at once.
	testwait.Until(t, "29 requests waiting for the slot or held back", 10*time.Second, func() bool {
		return srv.calls.Load() == 1 && waiting(cs, "slot")+int(ended.Load()) == 29
	})
	srv.release()
	codes, errs := done()
	n, other := pausedBy(errs, 0)
	if len(other) > 0 {
		t.Fatalf("errors other than the pause: %v", other)
	}
	if got := srv.calls.Load(); got != 1 || codes[503] != 1 || n != 29 {
		t.Errorf("%d requests reached the tenant (%v answered, %d paused), want the one probe", got, codes, n)
	}
}

// TestConnectionBreakerHoldsRequestsThatWaited: batches admitted while their ERP
// connection's breaker was closed, waiting for the slot when it opens, do not go out; once
// its probe is due, only the batch Admit made the probe passes the half-open breaker, with
// every request it makes.
func TestConnectionBreakerHoldsRequestsThatWaited(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	srv := newHeldServer(t)
	srv.up.Store(true)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var cs []*Control
	for range 2 {
		cs = append(cs, newControl(t, rdb, func(c *Config) {
			c.ConnWindow, c.ConnThreshold, c.MaxConcurrency, c.ProbeInitial, c.Now = 2, 1, 1, time.Minute, clock
		}))
	}
	bg := context.Background()
	admitted := make([][]context.Context, len(cs))
	for w, c := range cs {
		for range 5 {
			ctx, err := c.Admit(bg, 3)
			if err != nil {
				t.Fatal(err)
			}
			admitted[w] = append(admitted[w], ctx)
		}
	}
	_, done := fleet(t, cs, 5, srv.URL, func(w, i int) context.Context { return admitted[w][i] })
	testwait.Until(t, "9 requests waiting for the slot", 10*time.Second, func() bool { return waiting(cs, "slot") == 9 })
	// Meanwhile nearly every batch of connection 3 fails alike: its breaker opens.
	cs[0].Outcome(bg, 3, "ERP_DOWN", false, true)
	cs[1].Outcome(bg, 3, "ERP_DOWN", false, true)
	if _, err := cs[0].Admit(bg, 3); !errors.As(err, new(*PausedError)) {
		t.Fatalf("Admit after two failures of two: %v, want a *PausedError", err)
	}
	srv.release()
	codes, errs := done()
	n, other := pausedBy(errs, 3)
	if len(other) > 0 {
		t.Fatalf("errors other than connection 3's pause: %v", other)
	}
	if got := srv.calls.Load(); got != 1 || n != 9 {
		t.Errorf("%d requests reached the tenant (%v answered, %d paused), want only the one in flight when the breaker opened", got, codes, n)
	}

	// The probe is due: Admit makes one batch the probe; its requests (a login and the
	// call) pass, a batch admitted earlier does not, nor a second batch.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	probe, err := cs[1].Admit(bg, 3)
	if err != nil {
		t.Fatalf("Admit when the probe is due: %v", err)
	}
	if _, err := cs[0].Admit(bg, 3); !errors.As(err, new(*PausedError)) {
		t.Errorf("a second Admit while probing: %v, want a *PausedError", err)
	}
	srv.calls.Store(0)
	for w, c := range cs {
		hc := &http.Client{Transport: c.Transport(nil)}
		if _, err := get(t, hc, admitted[w][0], srv.URL); !errors.As(err, new(*PausedError)) {
			t.Errorf("worker %d: a batch admitted before the breaker opened, while it probes: %v, want a *PausedError", w, err)
		}
	}
	hc := &http.Client{Transport: cs[1].Transport(nil)}
	for range 2 {
		if code, err := get(t, hc, probe, srv.URL); code != 200 {
			t.Errorf("the probe batch's request: %d %v", code, err)
		}
	}
	if got := srv.calls.Load(); got != 2 {
		t.Errorf("%d requests reached the tenant while probing, want the probe batch's 2", got)
	}
	cs[1].Outcome(probe, 3, "", true, true)
	if _, err := cs[0].Admit(bg, 3); err != nil {
		t.Errorf("after a good probe: %v", err)
	}
}
