package rest_test

// One table of scenarios, run over both transports against netserversim: the same
// simulator, the same faults, the same exact per-key counters, the same answers.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/rest"
	"github.com/erpresync/erpresync/soap"
	"github.com/erpresync/erpresync/tasks"
)

const (
	simUser     = "SAL0"
	simPassword = "SIM-PASSWORD-SECRET-4b2d"
	simAppToken = "SIM-APP-TOKEN-SECRET-7f3a"
)

// transport builds a client of one transport for a simulator.
type transport struct {
	name string
	new  func(t *testing.T, sim *netserversim.Running, src auth.TicketSource) tasks.Resyncer
}

var transports = []transport{
	{"soap", func(t *testing.T, sim *netserversim.Running, src auth.TicketSource) tasks.Resyncer {
		c, err := soap.New(soap.Config{BaseURL: sim.URL, AppToken: sim.Config().AppToken, Auth: src, HTTPClient: &http.Client{}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}},
	{"rest", func(t *testing.T, sim *netserversim.Running, src auth.TicketSource) tasks.Resyncer {
		c, err := rest.New(rest.Config{BaseURL: sim.URL, AppToken: sim.Config().AppToken, Auth: src, HTTPClient: &http.Client{}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}},
}

func TestSimScenariosBothTransports(t *testing.T) {
	t.Parallel()
	scenarios := []struct {
		name  string
		cfg   netserversim.Config
		setup func(sim *netserversim.Running)
		keys  []string
		check func(t *testing.T, sim *netserversim.Running, pa *auth.PasswordAuth, r *erpsync.Result, err error)
	}{
		{name: "success with the expected changes", keys: []string{"K-1", "K-2", "K-3"},
			check: func(t *testing.T, sim *netserversim.Running, _ *auth.PasswordAuth, r *erpsync.Result, err error) {
				if err != nil || !r.IsOk || r.Status != erpsync.StatusOk {
					t.Fatalf("got %+v, %v", r, err)
				}
				n := len(r.Changes.Added) + len(r.Changes.Updated) + len(r.Changes.Deleted)
				want := netserversim.ExpectedChanges(netserversim.ActorCustomer, []string{"K-1", "K-2", "K-3"})
				if n != len(want) {
					t.Errorf("%d change items, want %d", n, len(want))
				}
				for _, k := range []string{"K-1", "K-2", "K-3"} {
					if sim.ResyncCount(k) != 1 || sim.Seen(k) != 1 {
						t.Errorf("key %s: resynced %d, seen %d; want 1 and 1", k, sim.ResyncCount(k), sim.Seen(k))
					}
				}
			}},
		{name: "poison key: IsOk=false, no changes", keys: []string{"K-1", "BAD"},
			setup: func(sim *netserversim.Running) { sim.SetPoison("BAD") },
			check: func(t *testing.T, sim *netserversim.Running, _ *auth.PasswordAuth, r *erpsync.Result, err error) {
				if err != nil || r.IsOk || r.ErrorCode != "ERP_REJECTED" || r.Status != erpsync.StatusError {
					t.Fatalf("got %+v, %v", r, err)
				}
				if sim.ResyncCount("K-1") != 0 || sim.Seen("K-1") != 1 {
					t.Errorf("K-1: resynced %d, seen %d", sim.ResyncCount("K-1"), sim.Seen("K-1"))
				}
			}},
		{name: "ticket expired: one re-login, then success", keys: []string{"K-1"},
			setup: func(sim *netserversim.Running) { sim.ExpireTickets() },
			check: func(t *testing.T, sim *netserversim.Running, pa *auth.PasswordAuth, r *erpsync.Result, err error) {
				if err != nil || !r.IsOk {
					t.Fatalf("got %+v, %v", r, err)
				}
				if pa.Refreshes() != 2 || sim.Counts().Logins.PasswordOK != 2 {
					t.Errorf("refreshes %d, logins %d; want 2 and 2", pa.Refreshes(), sim.Counts().Logins.PasswordOK)
				}
				if sim.ResyncCount("K-1") != 1 || sim.Seen("K-1") != 2 {
					t.Errorf("K-1: resynced %d, seen %d; want 1 and 2", sim.ResyncCount("K-1"), sim.Seen("K-1"))
				}
			}},
		{name: "503 maintenance page", keys: []string{"K-1"},
			setup: func(sim *netserversim.Running) { sim.Fail503(1) },
			check: func(t *testing.T, sim *netserversim.Running, _ *auth.PasswordAuth, _ *erpsync.Result, err error) {
				if he, ok := errors.AsType[*erpsync.HTTPError](err); !ok || he.StatusCode != 503 || tasks.Classify(err) != tasks.ClassTransient {
					t.Fatalf("err = %v, want a transient HTTP 503", err)
				}
				if sim.Seen("K-1") != 0 {
					t.Errorf("K-1 seen %d times, want 0", sim.Seen("K-1"))
				}
			}},
		{name: "429 with Retry-After", keys: []string{"K-1"},
			setup: func(sim *netserversim.Running) { sim.Throttle(1, 7*time.Second) },
			check: func(t *testing.T, _ *netserversim.Running, _ *auth.PasswordAuth, _ *erpsync.Result, err error) {
				if he, ok := errors.AsType[*erpsync.HTTPError](err); !ok || he.RetryAfter != 7*time.Second || tasks.Classify(err) != tasks.ClassThrottled {
					t.Fatalf("err = %v, want throttled with Retry-After 7s", err)
				}
			}},
		{name: "dropped connection", keys: []string{"K-1"},
			setup: func(sim *netserversim.Running) { sim.DropNext(1) },
			check: func(t *testing.T, _ *netserversim.Running, _ *auth.PasswordAuth, _ *erpsync.Result, err error) {
				if _, ok := errors.AsType[*erpsync.TransportError](err); !ok {
					t.Fatalf("err = %v, want a transport error", err)
				}
			}},
		{name: "tenant moved to another host (421)", keys: []string{"K-1"},
			setup: func(sim *netserversim.Running) { sim.SetMisdirected(true) },
			check: func(t *testing.T, sim *netserversim.Running, _ *auth.PasswordAuth, _ *erpsync.Result, err error) {
				if he, ok := errors.AsType[*erpsync.HTTPError](err); !ok || he.StatusCode != 421 || tasks.Classify(err) != tasks.ClassAuth ||
					!strings.Contains(err.Error(), "Cust12345") || !strings.Contains(err.Error(), "moved to another host") {
					t.Fatalf("err = %v (class %s), want an auth-class 421 naming the tenant", err, tasks.Classify(err))
				}
				if sim.Counts().Calls[netserversim.OutcomeMisdirected] != 1 || sim.Seen("K-1") != 0 {
					t.Errorf("counts %+v", sim.Counts())
				}
			}},
		{name: "Online app not granted the ErpSync agent", keys: []string{"K-1"},
			cfg: netserversim.Config{Online: true, AppToken: simAppToken, ErpSyncNotGranted: true},
			check: func(t *testing.T, _ *netserversim.Running, _ *auth.PasswordAuth, _ *erpsync.Result, err error) {
				if tasks.Classify(err) != tasks.ClassAuth {
					t.Fatalf("err = %v (class %s), want an auth failure", err, tasks.Classify(err))
				}
			}},
		{name: "Online with the app token", keys: []string{"K-9"},
			cfg: netserversim.Config{Online: true, AppToken: simAppToken},
			check: func(t *testing.T, sim *netserversim.Running, _ *auth.PasswordAuth, r *erpsync.Result, err error) {
				if err != nil || !r.IsOk || sim.ResyncCount("K-9") != 1 {
					t.Fatalf("got %+v, %v", r, err)
				}
			}},
	}
	for _, tr := range transports {
		for _, sc := range scenarios {
			t.Run(tr.name+"/"+sc.name, func(t *testing.T) {
				t.Parallel()
				cfg := sc.cfg
				cfg.Users = map[string]string{simUser: simPassword}
				sim, err := netserversim.Start(cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(sim.Close)
				pa, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: sim.URL, UserName: simUser, Password: simPassword, AppToken: cfg.AppToken, HTTPClient: &http.Client{}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := pa.Ticket(context.Background()); err != nil {
					t.Fatal(err)
				}
				c := tr.new(t, sim, pa)
				if sc.setup != nil {
					sc.setup(sim)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				r, err := c.ForceResyncExternal(ctx, 3, erpsync.ActorCustomer, sc.keys)
				if err != nil && r != nil {
					t.Fatal("a result and an error")
				}
				sc.check(t, sim, pa, r, err)
				if err != nil && (fmt.Sprint(err) == "" || strings.Contains(fmt.Sprintf("%+v", err), simPassword) || strings.Contains(fmt.Sprintf("%+v", err), simAppToken)) {
					t.Errorf("error text carries a secret: %v", err)
				}
			})
		}
	}
}

// countingTransport counts the requests that pass through it.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestEveryRequestUsesTheConfiguredClient: logins, calls and the repeat after a ticket
// refresh all go through the *http.Client given to the configs, on both transports, so a
// RoundTripper wrapped around it (flow control) counts every request to the tenant.
func TestEveryRequestUsesTheConfiguredClient(t *testing.T) {
	t.Parallel()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{simUser: simPassword}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sim.Close)
			ct := &countingTransport{next: http.DefaultTransport}
			hc := &http.Client{Transport: ct}
			pa, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: sim.URL, UserName: simUser, Password: simPassword, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			var c tasks.Resyncer
			switch tr.name {
			case "soap":
				c, err = soap.New(soap.Config{BaseURL: sim.URL, Auth: pa, HTTPClient: hc})
			default:
				c, err = rest.New(rest.Config{BaseURL: sim.URL, Auth: pa, HTTPClient: hc})
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if _, err := c.ForceResyncExternal(ctx, 1, erpsync.ActorCustomer, []string{"A"}); err != nil {
				t.Fatal(err)
			}
			sim.ExpireTickets()
			if _, err := c.ForceResyncExternal(ctx, 1, erpsync.ActorCustomer, []string{"B"}); err != nil {
				t.Fatal(err)
			}
			// login, call; then call (rejected), login, call again.
			snap := sim.Counts()
			if got, want := ct.n.Load(), int64(5); got != want || int64(snap.TotalCalls()+snap.Logins.PasswordOK) != want {
				t.Errorf("requests through the client %d, simulator saw %d calls and %d logins; want %d in all", got, snap.TotalCalls(), snap.Logins.PasswordOK, want)
			}
		})
	}
}
