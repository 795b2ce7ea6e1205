package netserversim

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/testwait"
)

func TestFail503(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	rs.Fail503(2)
	for range 2 {
		r := resync(t, rs, tk, "Customer", "F-1")
		if r.status != http.StatusServiceUnavailable || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
			!strings.Contains(r.body, "maintenance") {
			t.Fatalf("got %d %q %q, want the 503 HTML maintenance page", r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	wantOK(t, resync(t, rs, tk, "Customer", "F-1"))
	c := rs.Counts()
	if c.Calls[OutcomeUnavailable] != 2 || c.Calls[OutcomeOK] != 1 || c.Seen["F-1"] != 1 {
		t.Fatalf("counts = %+v; 503s happen before processing", c)
	}
}

func TestDropNext(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	rs.DropNext(1)
	_, err := do(testClient, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML(tk, "Customer", "F-2"))
	if err == nil {
		t.Fatal("dropped call returned a response")
	}
	wantOK(t, resync(t, rs, tk, "Customer", "F-2"))
	c := rs.Counts()
	if c.Calls[OutcomeDropped] != 1 || c.Seen["F-2"] != 1 || c.Resynced["F-2"] != 1 {
		t.Fatalf("counts = %+v; a dropped call is never processed", c)
	}
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	rs.Throttle(2, 1500*time.Millisecond)
	for range 2 {
		r := resync(t, rs, tk, "Customer", "F-3")
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "2" {
			t.Fatalf("got %d Retry-After=%q, want 429 with 2", r.status, r.header.Get("Retry-After"))
		}
	}
	wantOK(t, resync(t, rs, tk, "Customer", "F-3"))
	rs.Throttle(1, 0)
	if r := resync(t, rs, tk, "Customer", "F-3"); r.header.Get("Retry-After") != "1" {
		t.Fatalf("default Retry-After = %q, want 1", r.header.Get("Retry-After"))
	}
	if c := rs.Counts(); c.Calls[OutcomeThrottled] != 3 || c.Seen["F-3"] != 1 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestCountedFaultPrecedence(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	rs.Throttle(1, time.Second)
	rs.Fail503(1)
	rs.DropNext(1)
	if _, err := do(testClient, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML(tk, "Customer", "F-4")); err == nil {
		t.Fatal("first call should be dropped")
	}
	for _, want := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK} {
		if r := resync(t, rs, tk, "Customer", "F-4"); r.status != want {
			t.Fatalf("status %d, want %d", r.status, want)
		}
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	rs.SetLatency(80 * time.Millisecond)
	begin := time.Now()
	wantOK(t, resync(t, rs, tk, "Customer", "F-5"))
	if el := time.Since(begin); el < 80*time.Millisecond {
		t.Fatalf("reply after %v, want ≥ 80ms", el)
	}

	// A client that gives up during the latency: processed (seen), never delivered.
	rs.SetLatency(2 * time.Second)
	wantAbandoned(t, rs, tk, "F-6", 50*time.Millisecond, "the abandoned call")
}

func TestLatencyFunc(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	var mu sync.Mutex
	var calls []CallInfo
	rs.SetLatencyFunc(func(ci CallInfo) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, ci)
		if len(ci.Keys) > 0 && ci.Keys[0] == "slow" {
			return 60 * time.Millisecond
		}
		return 0
	})
	wantOK(t, resync(t, rs, tk, "Person", "fast", "fast", "x"))
	begin := time.Now()
	wantOK(t, resync(t, rs, tk, "Sale", "slow"))
	if el := time.Since(begin); el < 60*time.Millisecond {
		t.Fatalf("slow call took %v", el)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[0].Seq != 1 || calls[0].Actor != ActorPerson || calls[0].ErpConnectionID != 3 ||
		strings.Join(calls[0].Keys, ",") != "fast,x" || calls[1].Seq != 2 || calls[1].Actor != ActorSale {
		t.Fatalf("calls = %+v", calls)
	}
}

func TestSlowBody(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	plainRS := start(t, Config{})
	tk := rs.IssueTicket()
	keys := []string{"F-7", "F-8", "F-9"}
	want := wantOK(t, resync(t, plainRS, plainRS.IssueTicket(), "Customer", keys...))

	rs.SetSlowBody(200, 5*time.Millisecond)
	begin := time.Now()
	r := resync(t, rs, tk, "Customer", keys...)
	el := time.Since(begin)
	got := wantOK(t, r)
	chunks := (len(r.body) - 1 + 199) / 200
	if min := time.Duration(chunks-1) * 5 * time.Millisecond; el < min {
		t.Fatalf("%d-byte body took %v, want ≥ %v for %d chunks", len(r.body), el, min, chunks)
	}
	if len(got.changes()) != len(want.changes()) || rs.ResyncCount("F-7") != 1 {
		t.Fatalf("slow reply differs: %s", r.body)
	}

	// A client that gives up mid-body: undelivered, not resynced.
	rs.SetSlowBody(50, 40*time.Millisecond)
	wantAbandoned(t, rs, tk, "F-10", 100*time.Millisecond, "the half-read reply")
}

func TestPoison(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{ErrorCode: "CONNECTOR_SAYS_NO"})
	tk := rs.IssueTicket()
	rs.SetPoison("P-2", "P-4")
	r := resync(t, rs, tk, "Customer", "P-1", "P-2", "P-3", "P-4")
	p := parse(t, r)
	resp := p.Body.Resync.Response
	if r.status != http.StatusOK || p.Header.Succeeded != "true" || resp.IsOk != "false" || resp.Status == nil ||
		*resp.Status != "Error" || resp.ErrorCode != "CONNECTOR_SAYS_NO" || resp.Changes.Nil != "true" ||
		!strings.Contains(resp.TechExplanation, "'P-2', 'P-4'") || resp.UserExplanation == "" {
		t.Fatalf("poisoned batch: %d %s", r.status, r.body)
	}
	wantOK(t, resync(t, rs, tk, "Customer", "P-1", "P-3"))
	rs.SetPoison()
	wantOK(t, resync(t, rs, tk, "Customer", "P-2"))
	c := rs.Counts()
	if c.Calls[OutcomeRejected] != 1 || c.Calls[OutcomeOK] != 2 || c.Seen["P-2"] != 2 || c.Resynced["P-2"] != 1 ||
		c.Seen["P-4"] != 1 || c.Resynced["P-4"] != 0 || c.Resynced["P-1"] != 1 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	clk := newClock()
	rs := start(t, Config{Users: map[string]string{testTicketUser: testPassword}, Now: clk.Now})
	tk := rs.IssueTicket()
	login := func() response {
		return post(t, rs.SoPrincipalURL(), ctSOAP11, loginQuoted, loginRequestXML("", testTicketUser, testPassword))
	}

	rs.SetOutage(true)
	for _, r := range []response{resync(t, rs, tk, "Customer", "U-1"), login()} {
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("during outage: %d, want 503", r.status)
		}
	}
	// The Online login service is another host in reality; it stays up.
	resp, err := testClient.Post(rs.LoginURL(), "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	drain(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login API during outage: %d", resp.StatusCode)
	}
	rs.SetOutage(false)
	wantOK(t, resync(t, rs, tk, "Customer", "U-1"))

	rs.AddOutageWindow(clk.Now().Add(time.Hour), clk.Now().Add(2*time.Hour))
	wantOK(t, resync(t, rs, tk, "Customer", "U-1"))
	clk.Advance(time.Hour)
	if r := resync(t, rs, tk, "Customer", "U-1"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("inside the window: %d", r.status)
	}
	clk.Advance(time.Hour)
	wantOK(t, resync(t, rs, tk, "Customer", "U-1"))
	c := rs.Counts()
	if c.Calls[OutcomeUnavailable] != 2 || c.Resynced["U-1"] != 3 || c.Logins.Errors != 1 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestRandomFaultsAreReproducible(t *testing.T) {
	t.Parallel()
	run := func() []int {
		rs := start(t, Config{})
		rs.SetRandomFaults(0.4, 42)
		tk := rs.IssueTicket()
		var seq []int
		for range 40 {
			r, err := do(testClient, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML(tk, "Customer", "R-1"))
			if err != nil {
				seq = append(seq, 0) // dropped
				continue
			}
			seq = append(seq, r.status)
		}
		c := rs.Counts()
		if c.TotalCalls() != 40 || c.Calls[OutcomeOK] != c.Resynced["R-1"] {
			t.Errorf("counts = %+v", c)
		}
		return seq
	}
	a, b := run(), run()
	kinds := map[int]int{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different sequences:\n%v\n%v", a, b)
		}
		kinds[a[i]]++
	}
	if kinds[200] == 0 || kinds[503] == 0 || kinds[429] == 0 || kinds[0] == 0 {
		t.Fatalf("40 calls at rate 0.4 should show every kind: %v", kinds)
	}
}

func TestRandomFaultKinds(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	rs.SetRandomFaults(1, 7, FaultThrottle)
	tk := rs.IssueTicket()
	for range 5 {
		if r := resync(t, rs, tk, "Customer", "R-2"); r.status != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429 only", r.status)
		}
	}
	rs.SetRandomFaults(0, 0)
	wantOK(t, resync(t, rs, tk, "Customer", "R-2"))
}

func TestClearFaultsAndState(t *testing.T) {
	t.Parallel()
	srv, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Fail503(1)
	srv.DropNext(2)
	srv.Throttle(3, 4*time.Second)
	srv.SetLatency(time.Second)
	srv.SetSlowBody(10, time.Millisecond)
	srv.SetPoison("b", "a")
	srv.SetOutage(true)
	srv.SetRandomFaults(0.5, 1)
	st := srv.Faults()
	if st.Fail503 != 1 || st.Drop != 2 || st.Throttle != 3 || st.RetryAfter != 4*time.Second || st.Latency != time.Second ||
		st.SlowChunk != 10 || strings.Join(st.Poison, ",") != "a,b" || !st.Outage || st.FaultRate != 0.5 || len(st.FaultKinds) != 3 {
		t.Fatalf("state = %+v", st)
	}
	srv.ClearFaults()
	st = srv.Faults()
	if st.Fail503+st.Drop+st.Throttle+st.SlowChunk != 0 || st.Latency != 0 || len(st.Poison) != 0 || st.Outage ||
		st.FaultRate != 0 || st.RetryAfter != time.Second {
		t.Fatalf("after ClearFaults: %+v", st)
	}
}

// TestFaultsWhileServing changes every setting while calls are in flight; run under -race.
func TestFaultsWhileServing(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 15 {
				_, _ = do(testClient, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML(tk, "Customer", "W", string(rune('a'+w)), string(rune('a'+i))))
			}
		})
	}
	wg.Go(func() {
		for i := range 30 {
			rs.Fail503(i % 2)
			rs.Throttle(i%3, time.Second)
			rs.DropNext(i % 2)
			rs.SetPoison("W", string(rune('a'+i%4)))
			rs.SetSlowBody(i%3*100, 0)
			rs.SetOutage(i%5 == 0)
			rs.SetRandomFaults(float64(i%3)/10, uint64(i))
			_ = rs.Faults()
			_ = rs.Counts()
		}
	})
	wg.Wait()
	if c := rs.Counts(); c.TotalCalls() != 60 {
		t.Fatalf("total calls = %d, want 60: %+v", c.TotalCalls(), c)
	}
}

func TestTraffic(t *testing.T) {
	t.Parallel()
	s := MustStart(Config{})
	defer s.Close()
	for range 3 {
		resp, err := http.Post(s.ErpSyncURL(), "text/xml", strings.NewReader("<x/>"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	tr := s.Traffic()
	if tr.Requests != 3 || tr.InFlight != 0 || tr.PeakInFlight != 1 || len(tr.Arrivals) != 3 {
		t.Errorf("Traffic = %+v", tr)
	}
	s.ResetTraffic()
	if tr := s.Traffic(); tr.Requests != 0 || len(tr.Arrivals) != 0 {
		t.Errorf("after reset: %+v", tr)
	}
}

// wantAbandoned resyncs key with a client that gives up after timeout, and checks that the
// simulator saw the key, resynced nothing, and counts what (the call) as undelivered.
func wantAbandoned(t *testing.T, rs *Running, tk, key string, timeout time.Duration, what string) {
	t.Helper()
	impatient := &http.Client{Timeout: timeout}
	if _, err := do(impatient, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML(tk, "Customer", key)); err == nil {
		t.Fatalf("%s: want a client timeout", what)
	}
	testwait.Until(t, what+" to count as undelivered", 5*time.Second, func() bool {
		return rs.Counts().Calls[OutcomeUndelivered] == 1
	})
	if rs.Seen(key) != 1 || rs.ResyncCount(key) != 0 {
		t.Fatalf("counts = %+v", rs.Counts())
	}
}
