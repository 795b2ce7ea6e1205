package tenantstate_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/tenantstate"
)

// A tenant moved while four workers call it: every call is answered, at most a few meet
// the old host's 421, and the state API is asked once more, not once per worker.
func TestMoveInFlight(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{StateValidFor: time.Hour})
	const workers, calls = 4, 30
	var wg sync.WaitGroup
	moved := make(chan struct{})
	var once sync.Once
	for w := range workers {
		f := r.follower(t)
		c := client(f)
		wg.Go(func() {
			for i := range calls {
				if w == 0 && i == calls/3 {
					if err := r.sim.Move(1); err != nil {
						t.Error(err)
					}
					once.Do(func() { close(moved) })
				}
				if status, err := r.call(c, f, fmt.Sprintf("K%d-%d", w, i)); status != http.StatusOK || err != nil {
					t.Errorf("worker %d call %d: %d %v", w, i, status, err)
				}
			}
		})
	}
	wg.Wait()
	<-moved
	c := r.sim.Counts().Calls
	if c[netserversim.OutcomeOK] != workers*calls {
		t.Errorf("%d calls answered IsOk, want %d (%v)", c[netserversim.OutcomeOK], workers*calls, c)
	}
	if n := c[netserversim.OutcomeMisdirected]; n > workers {
		t.Errorf("%d calls met a 421, want at most %d (one in flight per worker)", n, workers)
	}
	if n := r.sim.StateRequests(); n != 2 {
		t.Errorf("the state API was asked %d times, want 2 (first sight, the move)", n)
	}
}

// 20 s of OfflineMaintenance, a worker trying every second: SuperOffice sees the 503 that
// reveals it and two state questions, the worker gets holds that say why and until when.
func TestOfflineMaintenanceCostsAtMostThreeRequests(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{StateValidFor: 10 * time.Second})
	f := r.follower(t)
	c := client(f)
	if status, err := r.call(c, f, "K0"); status != http.StatusOK || err != nil {
		t.Fatalf("first call: %d %v", status, err)
	}
	state0, calls0 := r.requests()
	r.sim.SetTenantState(netserversim.StateOfflineMaintenance)
	start := r.clock.Now()
	var first error
	for i := 1; i <= 20; i++ {
		r.clock.Add(time.Second)
		_, err := r.call(c, f, fmt.Sprintf("K%d", i))
		if i > 1 {
			pe := wantPaused(t, err)
			if pe.RetryAfter <= 0 || pe.RetryAfter > tenantstate.MaxPausedRecheck {
				t.Errorf("RetryAfter %s", pe.RetryAfter)
			}
			if i == 2 {
				first = pe
			}
		}
	}
	state, calls := r.requests()
	if got := (state - state0) + (calls - calls0); got > 3 {
		t.Errorf("20 s of maintenance cost %d requests (%d state, %d calls), want at most 3", got, state-state0, calls-calls0)
	}
	want := "SuperOffice: tenant Cust12345 in OfflineMaintenance since " + start.Add(time.Second).Format(time.TimeOnly) +
		", next check " + start.Add(11*time.Second).Format(time.TimeOnly)
	if pe := wantPaused(t, first); pe.Reason != want {
		t.Errorf("reason %q, want %q", pe.Reason, want)
	}
	st := f.Status()
	if st.State != tenantstate.OfflineMaintenance || st.Running || !st.Since.Equal(start.Add(time.Second)) {
		t.Errorf("Status %+v", st)
	}
	r.sim.SetTenantState(netserversim.StateRunning)
	r.clock.Add(tenantstate.MinRecheck)
	if status, err := r.call(c, f, "K21"); status != http.StatusOK || err != nil {
		t.Errorf("after maintenance: %d %v", status, err)
	}
}

// Two workers on one Redis ask the state API once per ValidUntil, however many calls.
func TestTwoWorkersAskOncePerValidUntil(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{StateValidFor: 30 * time.Second})
	fs := []*tenantstate.Follower{r.follower(t), r.follower(t)}
	round := func(n int) {
		var wg sync.WaitGroup
		for w, f := range fs {
			c := client(f)
			wg.Go(func() {
				for i := range n {
					if status, err := r.call(c, f, fmt.Sprintf("W%d-%d", w, i)); status != http.StatusOK || err != nil {
						t.Errorf("worker %d: %d %v", w, status, err)
					}
				}
			})
		}
		wg.Wait()
	}
	round(10)
	if n := r.sim.StateRequests(); n != 1 {
		t.Errorf("first ValidUntil: %d state questions, want 1", n)
	}
	r.clock.Add(29 * time.Second)
	round(5)
	if n := r.sim.StateRequests(); n != 1 {
		t.Errorf("before ValidUntil: %d state questions, want 1", n)
	}
	r.clock.Add(time.Second)
	round(5)
	if n := r.sim.StateRequests(); n != 2 {
		t.Errorf("after ValidUntil: %d state questions, want 2", n)
	}
}

// A Suspend notification stops every worker's calls, whatever the clock, until Resume.
func TestSuspendStopsAllCallsUntilResume(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{StateValidFor: time.Hour})
	a, b := r.follower(t), r.follower(t)
	ca, cb := client(a), client(b)
	url := r.notifications(t, a)
	if status, err := r.call(cb, b, "K0"); status != http.StatusOK || err != nil {
		t.Fatalf("before: %d %v", status, err)
	}
	r.sim.SetTenantState(netserversim.StateSuspended)
	if s := r.notify(t, url, netserversim.ChangeSuspend); s != http.StatusOK {
		t.Fatalf("Suspend answered %d", s)
	}
	// The dispatcher of every worker reads the pause from Redis, so the tenant's batches
	// stay in its lane: Ready says wait until the next check.
	if d := b.Ready(context.Background()); d <= 0 || d > tenantstate.MaxPausedRecheck {
		t.Errorf("worker b's Ready (a never saw the notification) while suspended = %v, want (0, %v]", d, tenantstate.MaxPausedRecheck)
	}
	_, calls0 := r.requests()
	for i := range 10 {
		for _, w := range []struct {
			c *http.Client
			f *tenantstate.Follower
		}{{ca, a}, {cb, b}} {
			_, err := r.call(w.c, w.f, fmt.Sprintf("S%d", i))
			wantPaused(t, err)
		}
		r.clock.Add(30 * time.Second)
	}
	if _, calls := r.requests(); calls != calls0 {
		t.Errorf("%d calls reached SuperOffice while suspended", calls-calls0)
	}
	if st := b.Status(); st.State != tenantstate.Suspended {
		t.Errorf("worker b's Status %+v", st)
	}
	r.sim.SetTenantState(netserversim.StateRunning)
	if s := r.notify(t, url, netserversim.ChangeResume); s != http.StatusOK {
		t.Fatalf("Resume answered %d", s)
	}
	for _, w := range []struct {
		c *http.Client
		f *tenantstate.Follower
	}{{ca, a}, {cb, b}} {
		if status, err := r.call(w.c, w.f, "R"); status != http.StatusOK || err != nil {
			t.Errorf("after Resume: %d %v", status, err)
		}
		if d := w.f.Ready(context.Background()); d != 0 {
			t.Errorf("Ready after Resume = %v, want 0", d)
		}
	}
}

// Forged, expired, foreign and malformed notifications are refused and change nothing; a
// replayed one is acknowledged and changes nothing.
func TestNotificationsRefuseWhatTheyCannotTrust(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{StateValidFor: time.Hour})
	f := r.follower(t)
	url := r.notifications(t, f)
	r.sim.SetTenantState(netserversim.StateSuspended)
	if s := r.notify(t, url, netserversim.ChangeSuspend); s != http.StatusOK {
		t.Fatalf("Suspend answered %d", s)
	}
	r.sim.SetTenantState(netserversim.StateRunning)
	genuine, err := r.sim.Notification(netserversim.ChangeResume)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		n    func() netserversim.Notification
		want int
	}{
		{"forged signature", func() netserversim.Notification {
			n := genuine
			n.Token = forge(t, n.Token)
			return n
		}, http.StatusUnauthorized},
		{"no token", func() netserversim.Notification { n := genuine; n.Token = ""; return n }, http.StatusBadRequest},
		{"garbage token", func() netserversim.Notification { n := genuine; n.Token = "a.b.c"; return n }, http.StatusUnauthorized},
		{"another tenant's body", func() netserversim.Notification {
			n := genuine
			n.ContextIdentifier = "Cust99999"
			return n
		}, http.StatusForbidden},
		{"unknown change type", func() netserversim.Notification { n := genuine; n.ChangeType = 9; return n }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		status, err := netserversim.PostNotification(t.Context(), url, tt.n())
		if err != nil || status != tt.want {
			t.Errorf("%s: %d %v, want %d", tt.name, status, err, tt.want)
		}
	}
	r.clock.Add(10 * time.Minute) // the genuine token (5 min) has expired
	r.sim.SetTenantState(netserversim.StateSuspended)
	if status, _ := netserversim.PostNotification(t.Context(), url, genuine); status != http.StatusUnauthorized {
		t.Errorf("expired Resume: %d, want 401", status)
	}
	_, err = r.call(client(f), f, "K1")
	wantPaused(t, err)

	r.sim.SetTenantState(netserversim.StateRunning)
	fresh, _ := r.sim.Notification(netserversim.ChangeResume)
	for i, want := range []string{`"handled":true`, `"handled":false`} {
		body := postRaw(t, url, fresh)
		if !strings.Contains(body, want) {
			t.Errorf("delivery %d: %s, want %s", i+1, body, want)
		}
	}
	if status, err := r.call(client(f), f, "K2"); status != http.StatusOK || err != nil {
		t.Errorf("after the genuine Resume: %d %v", status, err)
	}
}

// Without an environment the URL is used as it is; a 421 says the tenant moved.
func TestFixedURL(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{})
	f, err := tenantstate.New(tenantstate.Config{ContextID: "Cust12345", FixedURL: r.sim.URL})
	if err != nil {
		t.Fatal(err)
	}
	c := client(f)
	if status, err := r.call(c, f, "K1"); status != http.StatusOK || err != nil {
		t.Fatalf("fixed URL: %d %v", status, err)
	}
	if err := r.sim.Move(1); err != nil {
		t.Fatal(err)
	}
	_, err = r.call(c, f, "K2")
	if !errors.Is(err, tenantstate.ErrTenantMoved) || !strings.Contains(err.Error(), "Environment") {
		t.Errorf("after a move: %v, want ErrTenantMoved naming the setting", err)
	}
	if st := f.Status(); !st.Running || st.State != tenantstate.Running {
		t.Errorf("fixed Status %+v", st)
	}
}

// WebAPI paths go under the state's Api, SOAP paths under its Endpoint, after a move too.
func TestRESTGoesUnderApi(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{StateValidFor: time.Hour})
	f := r.follower(t)
	c := client(f)
	post := func() int {
		req, _ := http.NewRequest(http.MethodPost, f.BaseURL()+"/api/v1/Agents/ErpSync/ForceResyncExternal",
			strings.NewReader(`{"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":["K1"]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "SOTicket "+r.ticket)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post(); s != http.StatusOK {
		t.Errorf("REST call: %d", s)
	}
	if err := r.sim.Move(1); err != nil {
		t.Fatal(err)
	}
	if s := post(); s != http.StatusOK {
		t.Errorf("REST call after a move: %d", s)
	}
	if st := f.Status(); st.API != r.sim.HostURLs[1]+"/Cust12345/api" {
		t.Errorf("Status API %q", st.API)
	}
}
