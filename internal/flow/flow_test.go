package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func newControl(t *testing.T, rdb redis.UniversalClient, mod func(*Config)) *Control {
	t.Helper()
	cfg := Config{Redis: rdb, Tenant: "Cust1"}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redistest.New(t).TestClient(t)
	return rdb
}

func get(t *testing.T, hc *http.Client, ctx context.Context, url string) (int, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"no redis", Config{Tenant: "x"}},
		{"no tenant", Config{Redis: rdb}},
		{"negative rate", Config{Redis: rdb, Tenant: "x", Rate: -1}},
		{"threshold", Config{Redis: rdb, Tenant: "x", ConnThreshold: 2}},
		{"short lease", Config{Redis: rdb, Tenant: "x", Lease: time.Millisecond}},
	} {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

// TestConcurrencyCapAndKilledHolder: two Controls (two workers) never exceed the cap
// together, and a slot whose holder stopped renewing comes back after one lease.
func TestConcurrencyCapAndKilledHolder(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	var cur, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
	}))
	defer srv.Close()
	var wg sync.WaitGroup
	for range 2 {
		c := newControl(t, rdb, func(c *Config) { c.MaxConcurrency = 3; c.Lease = time.Second })
		hc := &http.Client{Transport: c.Transport(nil)}
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if _, err := get(t, hc, context.Background(), srv.URL); err != nil {
						t.Error(err)
					}
				}
			}()
		}
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak concurrency %d, want 3 (at most)", p)
	}

	// A holder that died: its slots are taken and never renewed.
	dead := newControl(t, rdb, func(c *Config) { c.MaxConcurrency = 2; c.Lease = time.Second })
	dead.sem.close()
	for range 2 {
		if _, err := dead.sem.acquire(context.Background(), 7, 2, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	live := newControl(t, rdb, func(c *Config) { c.MaxConcurrency = 2; c.Lease = time.Second })
	start := time.Now()
	sl, err := live.sem.acquire(context.Background(), 7, 2, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	sl.release()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("slot came back after %s, want within one lease (1s)", d)
	}
	// A deadline too close for the wait: a WaitError, not a failure.
	if _, err := live.sem.acquire(context.Background(), 8, 0, time.Now().Add(10*time.Millisecond)); !errors.As(err, new(*WaitError)) {
		t.Errorf("acquire past the deadline: %v, want a *WaitError", err)
	}
}

// TestRateLimitShared: two Controls share one limit.
func TestRateLimitShared(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		c := newControl(t, rdb, func(c *Config) { c.Rate = 20 })
		hc := &http.Client{Transport: c.Transport(nil)}
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					get(t, hc, ctx, srv.URL)
				}
			}()
		}
	}
	wg.Wait()
	// 1 s at 20/s with a burst of 1: 20 or 21 requests.
	if got := n.Load(); got > 22 || got < 15 {
		t.Errorf("%d requests in 1 s at 20/s", got)
	}
}

// TestCooldownShared: a 429 with Retry-After seen by one Control holds off another.
func TestCooldownShared(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	a := &http.Client{Transport: newControl(t, rdb, nil).Transport(nil)}
	b := &http.Client{Transport: newControl(t, rdb, nil).Transport(nil)}
	if code, _ := get(t, a, context.Background(), srv.URL); code != 429 {
		t.Fatalf("first call: %d", code)
	}
	start := time.Now()
	if code, err := get(t, b, context.Background(), srv.URL); code != 200 {
		t.Fatalf("second call: %d %v", code, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("the other worker waited %s, want the Retry-After of 1s", d)
	}
	// A deadline shorter than the cool-down: a WaitError at once.
	get(t, a, context.Background(), srv.URL)
	calls.Store(0)
	get(t, a, context.Background(), srv.URL) // 429 again
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := get(t, b, ctx, srv.URL); !errors.As(err, new(*WaitError)) {
		t.Errorf("call inside a cool-down longer than its deadline: %v, want a *WaitError", err)
	}
}

// TestTenantBreaker: failures in a row open the breaker for every worker; a probe at the
// interval reopens it (doubling) or closes it.
func TestTenantBreaker(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	mod := func(c *Config) {
		c.TenantFailures = 3
		c.ProbeInitial = 300 * time.Millisecond
		c.ProbeMax = time.Second
	}
	a := newControl(t, rdb, func(c *Config) { mod(c); c.Registerer = reg })
	b := newControl(t, rdb, mod)
	ha, hb := &http.Client{Transport: a.Transport(nil)}, &http.Client{Transport: b.Transport(nil)}
	for range 3 {
		if code, err := get(t, ha, context.Background(), srv.URL); code != 503 {
			t.Fatalf("%d %v", code, err)
		}
	}
	_, err := get(t, hb, context.Background(), srv.URL)
	var pe *PausedError
	if !errors.As(err, &pe) {
		t.Fatalf("other worker after 3 failures: %v, want a *PausedError", err)
	}
	if pe.Since.IsZero() || !pe.NextProbe.After(pe.Since) {
		t.Errorf("pause %+v", pe)
	}
	if got := gauge(t, reg); got != 1 {
		t.Errorf("erpresync_breaker_state %v, want 1 (open)", got)
	}
	if p := b.Paused(context.Background(), 0); p == nil {
		t.Error("Paused: nil while open")
	}
	// The probe fails: open again, for twice as long.
	waitUntil(t, pe.NextProbe)
	if code, _ := get(t, hb, context.Background(), srv.URL); code != 503 {
		t.Fatalf("probe: %d", code)
	}
	_, err = get(t, ha, context.Background(), srv.URL)
	var pe2 *PausedError
	if !errors.As(err, &pe2) {
		t.Fatalf("after a failed probe: %v", err)
	}
	if iv := pe2.NextProbe.Sub(pe.NextProbe); iv < 500*time.Millisecond {
		t.Errorf("second interval %s, want about 600ms (doubled)", iv)
	}
	down.Store(false)
	waitUntil(t, pe2.NextProbe)
	if code, err := get(t, ha, context.Background(), srv.URL); code != 200 {
		t.Fatalf("probe after recovery: %d %v", code, err)
	}
	if code, err := get(t, hb, context.Background(), srv.URL); code != 200 {
		t.Fatalf("after close: %d %v", code, err)
	}
	if got := gauge(t, reg); got != 0 {
		t.Errorf("erpresync_breaker_state %v, want 0 (closed)", got)
	}
	bs, err := Breakers(context.Background(), rdb)
	if err != nil || len(bs) != 1 || bs[0].State != StateClosed {
		t.Errorf("Breakers: %+v %v", bs, err)
	}
}

// TestConnectionBreaker: the same ErrorCode on nearly every batch opens a connection's
// breaker; other codes, halves and successes do not; a successful probe closes it.
func TestConnectionBreaker(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	c := newControl(t, rdb, func(c *Config) { c.ConnWindow = 4; c.ConnThreshold = 0.75; c.ProbeInitial = 200 * time.Millisecond })
	ctx := context.Background()
	c.Outcome(ctx, 3, "X", false, true)
	c.Outcome(ctx, 3, "X", false, false) // a half: not counted
	c.Outcome(ctx, 3, "Y", false, true)
	c.Outcome(ctx, 3, "X", false, true)
	if _, err := c.Admit(ctx, 3); err != nil {
		t.Fatalf("after 2 of 3: %v", err)
	}
	c.Outcome(ctx, 3, "X", false, true)
	c.Outcome(ctx, 3, "X", false, true)
	cctx, err := c.Admit(ctx, 3)
	var pe *PausedError
	if !errors.As(err, &pe) || pe.ErpConnection != 3 {
		t.Fatalf("after 4 of 5 with X: %v", err)
	}
	if Connection(cctx) != 3 {
		t.Error("Admit lost the connection")
	}
	if _, err := c.Admit(ctx, 4); err != nil {
		t.Errorf("another connection: %v", err)
	}
	waitUntil(t, pe.NextProbe)
	probe, err := c.Admit(ctx, 3)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, err := c.Admit(ctx, 3); !errors.As(err, new(*PausedError)) {
		t.Errorf("second caller while probing: %v", err)
	}
	// A batch admitted before the breaker opened answers late: it is not the probe.
	c.Outcome(ctx, 3, "", true, true)
	if _, err := c.Admit(ctx, 3); !errors.As(err, new(*PausedError)) {
		t.Errorf("another batch's late success decided the probe: %v", err)
	}
	c.Outcome(probe, 3, "", true, true)
	if _, err := c.Admit(ctx, 3); err != nil {
		t.Errorf("after a good probe: %v", err)
	}
}

func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	time.Sleep(time.Until(at) + 20*time.Millisecond) // the breaker's own clock, not synchronisation
}

func gauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "erpresync_breaker_state" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "erp_connection" && l.GetValue() == "0" {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
	}
	t.Fatal("no erpresync_breaker_state for the tenant")
	return 0
}

// TestAdaptiveRate: a 429 halves the rate for every worker; it grows back by Rate/60 per
// second, and a second 429 halves what is in force then.
func TestAdaptiveRate(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	mod := func(c *Config) { c.Rate = 60; c.Adaptive = true; c.Now = clock }
	a, b := newControl(t, rdb, mod), newControl(t, rdb, mod)
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	if r := a.Rate(ctx); r != 60 {
		t.Fatalf("rate before throttling: %v", r)
	}
	get(t, &http.Client{Transport: a.Transport(nil)}, ctx, srv.URL)
	advance(time.Second) // b reads Redis at most once a second
	// 60/2 = 30, plus 1/s for the second that passed.
	if r := b.Rate(ctx); r < 30.9 || r > 31.1 {
		t.Errorf("other worker's rate after a 429: %v, want 31", r)
	}
	advance(9 * time.Second)
	if r := b.Rate(ctx); r < 39.9 || r > 40.1 {
		t.Errorf("10 s later: %v, want 40 (additive increase of 1/s)", r)
	}
	get(t, &http.Client{Transport: b.Transport(nil)}, ctx, srv.URL)
	if r := b.Rate(ctx); r < 19.9 || r > 20.1 {
		t.Errorf("after a second 429: %v, want 20 (half of 40)", r)
	}
	advance(time.Hour)
	if r := a.Rate(ctx); r != 60 {
		t.Errorf("an hour later: %v, want the full 60", r)
	}
	if _, err := New(Config{Redis: rdb, Tenant: "x", Adaptive: true}); err == nil {
		t.Error("Adaptive without a Rate: no error")
	}
}

// TestMetricsSharedByTenants: the Controls of many tenants count in one set of series,
// registered once, each series labelled with its tenant, and a scrape reports every served
// tenant's breaker from one read.
func TestMetricsSharedByTenants(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).TestClient(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var cs []*Control
	for _, tenant := range []string{"Cust1", "Cust2", "acme"} {
		c, err := New(Config{Redis: rdb, Tenant: tenant, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		c.countRequest()
	}
	cs[2].Close() // no longer served: no longer reported
	if n := testutil.CollectAndCount(reg, "erpresync_breaker_state"); n != 2 {
		t.Errorf("breaker state series = %d, want 2 (one per served tenant)", n)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("Cust2")); v != 1 {
		t.Errorf("Cust2 requests = %v, want 1", v)
	}
	for _, c := range cs[:2] {
		c.Close()
	}
}

// TestPausesOfOneTenant: a tenant's run report names its own open breakers only, never
// another tenant's; the implicit tenant's are those named by a URL.
func TestPausesOfOneTenant(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).TestClient(t)
	ctx := context.Background()
	now := time.Now()
	for _, name := range []string{"sod.superoffice.com/cust1", TenantName("B"), TenantName("C")} {
		key := tenantPrefix(name) + ":breaker:0"
		if err := rdb.HSet(ctx, key, "state", "open", "since", now.UnixMilli(), "next", now.Add(time.Minute).UnixMilli(), "reason", "down: "+name).Err(); err != nil {
			t.Fatal(err)
		}
		rdb.SAdd(ctx, breakersKey, name+"|0")
	}
	for id, want := range map[string]string{"": "sod.superoffice.com/cust1", "B": "@B", "C": "@C", "D": ""} {
		got, err := Pauses(ctx, rdb, id, 3, now)
		if err != nil {
			t.Fatal(err)
		}
		if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || !strings.HasSuffix(got[0], "tenant "+want)) {
			t.Errorf("Pauses of tenant %q = %q, want only %s's", id, got, want)
		}
	}
}

// TestReady: Blocked says how long a cool-down or an open breaker holds the tenant back and
// takes nothing; Pace and Tolerance are the rate limit's spacing and how early it lets a
// request come.
func TestReady(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).TestClient(t)
	ctx := context.Background()
	c, err := New(Config{Redis: rdb, Tenant: TenantName("ready"), Rate: 2, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 5 {
		if d := c.Blocked(ctx); d != 0 {
			t.Fatalf("fresh tenant: Blocked = %v, want 0", d)
		}
	}
	if err := c.rateWait(ctx, time.Time{}); err != nil { // the one token of the burst
		t.Fatal(err)
	}
	if d := c.Blocked(ctx); d != 0 {
		t.Errorf("after the burst: Blocked = %v, want 0 (the rate limit is Pace's)", d)
	}
	if d := c.Pace(ctx); d != 500*time.Millisecond {
		t.Errorf("Pace = %v, want 500ms (2 requests/s)", d)
	}
	if d := c.Tolerance(ctx); d != 0 {
		t.Errorf("Tolerance with a burst of 1 = %v, want 0", d)
	}
	if d := newControl(t, rdb, func(c *Config) { c.Rate, c.Burst = 2, 3 }).Tolerance(ctx); d != time.Second {
		t.Errorf("Tolerance with a burst of 3 at 2 requests/s = %v, want 1s", d)
	}
	c.setCooldown(ctx, 3*time.Second)
	if d := c.Blocked(ctx); d < 2*time.Second {
		t.Errorf("with a 3s cool-down: Blocked = %v", d)
	}
	if d := newControl(t, rdb, nil).Pace(ctx); d != 0 {
		t.Errorf("no rate limit: Pace = %v, want 0", d)
	}
}

// TestLeaseRenewedOnlyWhileHeld: a held slot's lease is renewed past its first expiry; once
// nothing is held the renewing goroutine ends (a thousand idle tenants keep no tickers), and
// the next slot starts it again.
func TestLeaseRenewedOnlyWhileHeld(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	c := newControl(t, rdb, func(c *Config) { c.MaxConcurrency = 1; c.Lease = 300 * time.Millisecond })
	renewing := func() bool {
		c.sem.mu.Lock()
		defer c.sem.mu.Unlock()
		return c.sem.renewal
	}
	if renewing() {
		t.Fatal("renewing before any slot was taken")
	}
	for round := range 2 {
		sl, err := c.sem.acquire(context.Background(), 1, 1, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		first, err := rdb.ZScore(context.Background(), sl.key, sl.holder).Result()
		if err != nil {
			t.Fatal(err)
		}
		testwait.For(t, "the lease renewed", 5*time.Second, func() (bool, error) {
			s, err := rdb.ZScore(context.Background(), sl.key, sl.holder).Result()
			return err == nil && s > first, fmt.Errorf("round %d: score %v (first %v): %v", round, s, first, err)
		})
		sl.release()
		testwait.Until(t, "renewal ended", 5*time.Second, func() bool { return !renewing() })
	}
}
