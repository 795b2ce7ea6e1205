package soap_test

// Integration tests of the real Client, auth.PasswordAuth and auth.SystemUserAuth against
// netserversim, the strict NetServer simulator, in process (like httptest). Each test starts
// its own simulator, so tests run in parallel and read exact counters. Asynchronous outcomes
// are waited for as polled conditions with deadlines, never with sleeps.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/soap"
)

// Secrets the tests configure; none of them may ever appear in error text.
const (
	simAppToken    = "SIM-APP-TOKEN-SECRET-7f3a"
	simWrongToken  = "SIM-WRONG-APP-TOKEN-SECRET-c81e"
	simUser        = "SAL0"
	simPassword    = "SIM-PASSWORD-SECRET-4b2d"
	simBadPassword = "SIM-BAD-PASSWORD-SECRET-91aa"
	simSystemToken = "SIM-SYSTEM-TOKEN-SECRET-d00d"
)

// simCallTimeout bounds every call that is expected to finish; a hang fails the test
// instead of stalling the package.
const simCallTimeout = 5 * time.Second

// startSim starts a simulator closed at the end of the test.
func startSim(t *testing.T, cfg netserversim.Config) *netserversim.Running {
	t.Helper()
	sim, err := netserversim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// newSimClient returns a Client for sim with auth; mut may adjust the Config.
func newSimClient(t *testing.T, sim *netserversim.Running, auth auth.TicketSource, mut func(*soap.Config)) *soap.Client {
	t.Helper()
	cfg := soap.Config{BaseURL: sim.URL, Auth: auth}
	if sim.Config().Online {
		cfg.AppToken = sim.Config().AppToken
	}
	if mut != nil {
		mut(&cfg)
	}
	c, err := soap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newSimPasswordAuth returns a auth.PasswordAuth that logs in to sim's SoPrincipal.
func newSimPasswordAuth(t *testing.T, sim *netserversim.Running, password string) *auth.PasswordAuth {
	t.Helper()
	cfg := auth.PasswordAuthConfig{BaseURL: sim.URL, UserName: simUser, Password: password}
	if sim.Config().Online {
		cfg.AppToken = sim.Config().AppToken
	}
	auth, err := auth.NewPasswordAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), simCallTimeout)
	t.Cleanup(cancel)
	return ctx
}

// simKeys returns n distinct external keys starting with prefix.
func simKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return keys
}

// expectedChanges is netserversim.ExpectedChanges for keys, split into the three lists the
// way a reply carries them.
func expectedChanges(actor erpsync.ActorType, keys []string) erpsync.Changes {
	var c erpsync.Changes
	for _, ch := range netserversim.ExpectedChanges(netserversim.ActorType(actor), keys) {
		item := erpsync.ChangedItem{Table: ch.Table, RecordID: ch.RecordID}
		switch ch.Kind {
		case netserversim.Added:
			c.Added = append(c.Added, item)
		case netserversim.Updated:
			c.Updated = append(c.Updated, item)
		case netserversim.Deleted:
			c.Deleted = append(c.Deleted, item)
		}
	}
	return c
}

// checkChanges compares change lists in order; nil and empty lists are equal.
func checkChanges(t *testing.T, got, want erpsync.Changes) {
	t.Helper()
	for _, l := range []struct {
		name      string
		got, want []erpsync.ChangedItem
	}{{"Added", got.Added, want.Added}, {"Updated", got.Updated, want.Updated}, {"Deleted", got.Deleted, want.Deleted}} {
		if !slices.Equal(l.got, l.want) {
			t.Errorf("Changes.%s = %v, want %v", l.name, l.got, l.want)
		}
	}
}

// assertNoSecrets fails if err's text, or the text fields of the package's error types in
// its chain, contain any of secrets.
func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	text := fmt.Sprintf("%v\n%+v\n%#v\n%s", err, err, err, err)
	if he, ok := errors.AsType[*erpsync.HTTPError](err); ok {
		text += "\n" + he.Body
	}
	if ex, ok := errors.AsType[*erpsync.ExceptionError](err); ok {
		text += "\n" + ex.Type + "\n" + ex.Message + "\n" + ex.FriendlyText + "\n" + ex.Source
	}
	if f, ok := errors.AsType[*erpsync.FaultError](err); ok {
		text += "\n" + f.Code + "\n" + f.Reason
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("error text carries a secret (%.6s…): %s", s, text)
		}
	}
}

func TestSimResyncSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		omitStatus bool
		actor      erpsync.ActorType
		keys       []string
		wantName   string // erpsync.Result.StatusName
	}{
		{name: "one key", actor: erpsync.ActorCustomer, keys: []string{"10001"}, wantName: "Ok"},
		{name: "batch of 100", actor: erpsync.ActorCustomer, keys: simKeys("C", 100), wantName: "Ok"},
		{name: "repeated keys count once", actor: erpsync.ActorSupplier, keys: []string{"S-1", "S-2", "S-1", "S-3", "S-2"}, wantName: "Ok"},
		{name: "person table", actor: erpsync.ActorPerson, keys: simKeys("P", 20), wantName: "Ok"},
		{name: "sale table", actor: erpsync.ActorSale, keys: simKeys("SA", 10), wantName: "Ok"},
		{name: "escaped characters", actor: erpsync.ActorProject, keys: []string{`<a&b>`, `"q'`, "ünïcødé ✓"}, wantName: "Ok"},
		{name: "older server without Status", omitStatus: true, actor: erpsync.ActorCustomer, keys: simKeys("O", 30), wantName: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, netserversim.Config{OmitStatus: tt.omitStatus})
			client := newSimClient(t, sim, auth.NewStaticTicket(sim.IssueTicket()), nil)

			resp, err := client.ForceResyncExternal(callCtx(t), 3, tt.actor, tt.keys)
			if err != nil {
				t.Fatalf("ForceResyncExternal: %v", err)
			}
			if !resp.IsOk || resp.Status != erpsync.StatusOk || resp.StatusName != tt.wantName {
				t.Errorf("IsOk, Status, StatusName = %t, %v, %q; want true, Ok, %q", resp.IsOk, resp.Status, resp.StatusName, tt.wantName)
			}
			if resp.ErrorCode != "" || resp.TechExplanation != "" {
				t.Errorf("ErrorCode, TechExplanation = %q, %q; want empty", resp.ErrorCode, resp.TechExplanation)
			}
			checkChanges(t, resp.Changes, expectedChanges(tt.actor, tt.keys))

			snap := sim.Counts()
			if snap.Calls[netserversim.OutcomeOK] != 1 || snap.TotalCalls() != 1 {
				t.Errorf("simulator calls = %v, want exactly one ok", snap.Calls)
			}
			for _, k := range tt.keys {
				if n := sim.ResyncCount(k); n != 1 {
					t.Errorf("ResyncCount(%q) = %d, want 1", k, n)
				}
			}
		})
	}
}

func TestSimBusinessFailure(t *testing.T) {
	t.Parallel()
	const poison = "K-POISON"
	tests := []struct {
		name       string
		omitStatus bool
		keys       []string
		wantName   string
	}{
		{name: "poison key alone", keys: []string{poison}, wantName: "Error"},
		{name: "poison key in a batch", keys: []string{"K-1", poison, "K-2"}, wantName: "Error"},
		{name: "older server without Status", omitStatus: true, keys: []string{"K-1", poison}, wantName: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, netserversim.Config{OmitStatus: tt.omitStatus})
			sim.SetPoison(poison)
			client := newSimClient(t, sim, auth.NewStaticTicket(sim.IssueTicket()), nil)

			resp, err := client.ForceResyncExternal(callCtx(t), 3, erpsync.ActorCustomer, tt.keys)
			if err != nil {
				t.Fatalf("ForceResyncExternal: want a business failure with a nil error, got %v", err)
			}
			if resp.IsOk || resp.Status != erpsync.StatusError || resp.StatusName != tt.wantName {
				t.Errorf("IsOk, Status, StatusName = %t, %v, %q; want false, Error, %q", resp.IsOk, resp.Status, resp.StatusName, tt.wantName)
			}
			if resp.ErrorCode != netserversim.DefaultErrorCode {
				t.Errorf("ErrorCode = %q, want %q", resp.ErrorCode, netserversim.DefaultErrorCode)
			}
			if !strings.Contains(resp.TechExplanation, poison) {
				t.Errorf("TechExplanation %q does not name %s", resp.TechExplanation, poison)
			}
			if n := len(resp.Changes.Added) + len(resp.Changes.Updated) + len(resp.Changes.Deleted); n != 0 {
				t.Errorf("Changes has %d items, want none", n)
			}
			if snap := sim.Counts(); snap.Calls[netserversim.OutcomeRejected] != 1 || snap.TotalCalls() != 1 {
				t.Errorf("simulator calls = %v, want exactly one rejected", snap.Calls)
			}
			for _, k := range tt.keys {
				if sim.ResyncCount(k) != 0 || sim.Seen(k) != 1 {
					t.Errorf("key %q: resynced %d, seen %d; want 0, 1", k, sim.ResyncCount(k), sim.Seen(k))
				}
			}
		})
	}
}

// TestSimErrorClasses drives each way a call fails and checks the error type callers match
// with errors.As / errors.Is, what the simulator counted, and that no secret leaks into the
// error. Every simulator runs in Online mode so that the application token is on the wire.
func TestSimErrorClasses(t *testing.T) {
	t.Parallel()
	wantHTTP := func(status int, retryAfter time.Duration) func(*testing.T, *netserversim.Running, error) {
		return func(t *testing.T, _ *netserversim.Running, err error) {
			t.Helper()
			he, ok := errors.AsType[*erpsync.HTTPError](err)
			if !ok {
				t.Fatalf("want *erpsync.HTTPError, got %T: %v", err, err)
			}
			if he.StatusCode != status || he.RetryAfter != retryAfter {
				t.Errorf("StatusCode, RetryAfter = %d, %v; want %d, %v", he.StatusCode, he.RetryAfter, status, retryAfter)
			}
		}
	}
	wantOutcome := func(o netserversim.Outcome) func(*testing.T, *netserversim.Running) {
		return func(t *testing.T, sim *netserversim.Running) {
			t.Helper()
			testwait.Until(t, fmt.Sprintf("one %s call", o), 5*time.Second, func() bool { return sim.Counts().Calls[o] == 1 })
			if snap := sim.Counts(); snap.TotalCalls() != 1 {
				t.Errorf("simulator calls = %v, want exactly one %s", snap.Calls, o)
			}
		}
	}
	wantTimeout := func(t *testing.T, _ *netserversim.Running, err error) {
		t.Helper()
		te, ok := errors.AsType[*erpsync.TransportError](err)
		if !ok {
			t.Fatalf("want *erpsync.TransportError, got %T: %v", err, err)
		}
		if !te.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Timeout() = %t, errors.Is(DeadlineExceeded) = %t; want both true: %v", te.Timeout(), errors.Is(err, context.DeadlineExceeded), err)
		}
	}

	tests := []struct {
		name    string
		setup   func(*netserversim.Running)
		client  func(*soap.Config)
		timeout time.Duration // per call; 0 means simCallTimeout
		keys    int
		check   func(*testing.T, *netserversim.Running, error)
		counted func(*testing.T, *netserversim.Running)
		// processed: the server did the work and only reading its reply failed, so each
		// key is Seen once and whether it counts as resynced depends on socket timing.
		// Otherwise no key may count as resynced.
		processed bool
	}{
		{
			name:    "HTML 503",
			setup:   func(s *netserversim.Running) { s.Fail503(1) },
			check:   wantHTTP(503, 0),
			counted: wantOutcome(netserversim.OutcomeUnavailable),
		},
		{
			name:    "outage 503",
			setup:   func(s *netserversim.Running) { s.SetOutage(true) },
			check:   wantHTTP(503, 0),
			counted: wantOutcome(netserversim.OutcomeUnavailable),
		},
		{
			name:    "throttled 429",
			setup:   func(s *netserversim.Running) { s.Throttle(1, 7*time.Second) },
			check:   wantHTTP(429, 7*time.Second),
			counted: wantOutcome(netserversim.OutcomeThrottled),
		},
		{
			name:  "dropped connection",
			setup: func(s *netserversim.Running) { s.DropNext(1) },
			check: func(t *testing.T, _ *netserversim.Running, err error) {
				te, ok := errors.AsType[*erpsync.TransportError](err)
				if !ok {
					t.Fatalf("want *erpsync.TransportError, got %T: %v", err, err)
				}
				if te.Timeout() {
					t.Errorf("a dropped connection is not a timeout: %v", err)
				}
			},
			counted: wantOutcome(netserversim.OutcomeDropped),
		},
		{
			name:    "latency beyond the deadline",
			setup:   func(s *netserversim.Running) { s.SetLatency(30 * time.Second) },
			timeout: 150 * time.Millisecond,
			check:   wantTimeout,
			// The client gave up during the latency: the simulator never counts it delivered.
			counted: wantOutcome(netserversim.OutcomeUndelivered),
		},
		{
			name:    "slow body beyond the deadline",
			setup:   func(s *netserversim.Running) { s.SetSlowBody(32, 100*time.Millisecond) },
			timeout: 300 * time.Millisecond,
			keys:    10, // a reply of about 3 KiB: several seconds at 32 bytes per 100 ms
			check:   wantTimeout,
			counted: wantOutcome(netserversim.OutcomeUndelivered),
		},
		{
			name:   "oversized reply",
			client: func(c *soap.Config) { c.MaxResponseBytes = 2 << 10 },
			keys:   50,
			check: func(t *testing.T, _ *netserversim.Running, err error) {
				if !errors.Is(err, erpsync.ErrResponseTooLarge) {
					t.Errorf("want erpsync.ErrResponseTooLarge, got %v", err)
				}
			},
			// NetServer resynced the batch; the client only refused to read the answer, so
			// erpsync.ErrResponseTooLarge does not mean that nothing happened.
			counted: func(t *testing.T, sim *netserversim.Running) {
				testwait.Until(t, "the reply to be written or abandoned", 5*time.Second, func() bool {
					c := sim.Counts().Calls
					return c[netserversim.OutcomeOK]+c[netserversim.OutcomeUndelivered] == 1
				})
			},
			processed: true,
		},
		{
			name:   "wrong application token",
			client: func(c *soap.Config) { c.AppToken = simWrongToken },
			check: func(t *testing.T, _ *netserversim.Running, err error) {
				if _, ok := errors.AsType[*erpsync.ExceptionError](err); !ok {
					t.Errorf("want *erpsync.ExceptionError, got %T: %v", err, err)
				}
			},
			// A auth.StaticTicket cannot be renewed, so the client does not resend.
			counted: wantOutcome(netserversim.OutcomeException),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, netserversim.Config{Online: true, AppToken: simAppToken})
			ticket := sim.IssueTicket()
			client := newSimClient(t, sim, auth.NewStaticTicket(ticket), tt.client)
			if tt.setup != nil {
				tt.setup(sim)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = simCallTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			keys := simKeys("E", max(tt.keys, 1))

			resp, err := client.ForceResyncExternal(ctx, 3, erpsync.ActorCustomer, keys)
			if err == nil {
				t.Fatalf("want an error, got %+v", resp)
			}
			if resp != nil {
				t.Errorf("want a nil erpsync.Result with the error, got %+v", resp)
			}
			tt.check(t, sim, err)
			if tt.counted != nil {
				tt.counted(t, sim)
			}
			for _, k := range keys {
				switch {
				case tt.processed && sim.Seen(k) != 1:
					t.Errorf("Seen(%q) = %d, want 1: the server processed the batch", k, sim.Seen(k))
				case !tt.processed && sim.ResyncCount(k) != 0:
					t.Errorf("ResyncCount(%q) = %d after the failed call, want 0", k, sim.ResyncCount(k))
				}
			}
			assertNoSecrets(t, err, ticket, simAppToken, simWrongToken)
		})
	}
}

// TestSimCancelMidCall cancels the context while the simulator holds the reply back.
func TestSimCancelMidCall(t *testing.T) {
	t.Parallel()
	sim := startSim(t, netserversim.Config{Online: true, AppToken: simAppToken})
	sim.SetLatency(30 * time.Second)
	ticket := sim.IssueTicket()
	client := newSimClient(t, sim, auth.NewStaticTicket(ticket), nil)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.ForceResyncExternal(ctx, 3, erpsync.ActorCustomer, []string{"CANCEL-1"})
		done <- err
	}()
	// Seen counts the request once its body parsed: the server now waits out the latency.
	testwait.Until(t, "the simulator to process the call", 5*time.Second, func() bool { return sim.Seen("CANCEL-1") == 1 })
	cancel()

	var err error
	select {
	case err = <-done:
	case <-time.After(simCallTimeout):
		t.Fatal("call did not return after cancellation")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if _, ok := errors.AsType[*erpsync.TransportError](err); ok {
		t.Errorf("a cancelled call is not a *erpsync.TransportError: %v", err)
	}
	testwait.Until(t, "the call to count as undelivered", 5*time.Second, func() bool {
		return sim.Counts().Calls[netserversim.OutcomeUndelivered] == 1
	})
	if n := sim.ResyncCount("CANCEL-1"); n != 0 {
		t.Errorf("ResyncCount = %d after cancellation, want 0", n)
	}
	assertNoSecrets(t, err, ticket, simAppToken)
}

// TestSimErpSyncNotGranted: an app without the ErpSync agent gets an ExceptionInfo reply.
// The simulator reports it, like a bad ticket, as SoSecurityException, and only the message
// differs. A TicketErrorPattern that looks at ticket wording alone sees a permanent error:
// one call, no new login. The default pattern (defaultTicketErrorExpr matches "security")
// takes it for a ticket error: it logs in again, resends once, and returns the exception
// with TicketRejected set. Both rows pin the behaviour down.
func TestSimErpSyncNotGranted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		pattern        *regexp.Regexp
		wantRejected   bool
		wantCalls      int
		wantPasswordOK int
	}{
		{name: "ticket-only pattern", pattern: regexp.MustCompile(`(?i)ticket`), wantRejected: false, wantCalls: 1, wantPasswordOK: 1},
		{name: "default pattern", pattern: nil, wantRejected: true, wantCalls: 2, wantPasswordOK: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, netserversim.Config{
				Online: true, AppToken: simAppToken, ErpSyncNotGranted: true,
				Users: map[string]string{simUser: simPassword},
			})
			auth := newSimPasswordAuth(t, sim, simPassword)
			client := newSimClient(t, sim, auth, func(c *soap.Config) { c.TicketErrorPattern = tt.pattern })

			_, err := client.ForceResyncExternal(callCtx(t), 3, erpsync.ActorCustomer, []string{"NG-1"})
			ex, ok := errors.AsType[*erpsync.ExceptionError](err)
			if !ok {
				t.Fatalf("want *erpsync.ExceptionError, got %T: %v", err, err)
			}
			if ex.TicketRejected != tt.wantRejected || erpsync.IsTicketError(err) != tt.wantRejected {
				t.Errorf("TicketRejected, erpsync.IsTicketError = %t, %t; want %t", ex.TicketRejected, erpsync.IsTicketError(err), tt.wantRejected)
			}
			snap := sim.Counts()
			if snap.Calls[netserversim.OutcomeException] != tt.wantCalls || snap.TotalCalls() != tt.wantCalls {
				t.Errorf("simulator calls = %v, want %d exception", snap.Calls, tt.wantCalls)
			}
			if snap.Logins.PasswordOK != tt.wantPasswordOK || auth.Refreshes() != int64(tt.wantPasswordOK) {
				t.Errorf("logins = %d, Refreshes = %d; want %d", snap.Logins.PasswordOK, auth.Refreshes(), tt.wantPasswordOK)
			}
			// Once a fresh ticket was rejected too, the client stops logging in again for
			// every batch: further calls are one request each, with no new login.
			for range 5 {
				if _, err := client.ForceResyncExternal(callCtx(t), 3, erpsync.ActorCustomer, []string{"NG-1"}); err == nil {
					t.Fatal("call succeeded although ErpSync is not granted")
				}
			}
			snap = sim.Counts()
			if snap.TotalCalls() != tt.wantCalls+5 || snap.Logins.PasswordOK != tt.wantPasswordOK {
				t.Errorf("after 5 more calls: %d requests and %d logins, want %d and %d", snap.TotalCalls(), snap.Logins.PasswordOK, tt.wantCalls+5, tt.wantPasswordOK)
			}
			ticket, terr := auth.Ticket(callCtx(t))
			if terr != nil {
				t.Fatal(terr)
			}
			assertNoSecrets(t, err, ticket, simPassword, simAppToken)
		})
	}
}

// TestSimTicketExpiryConcurrent: after the server invalidates every ticket, 50 callers that
// hit the expiry at once share exactly one new password login and all succeed.
func TestSimTicketExpiryConcurrent(t *testing.T) {
	t.Parallel()
	const (
		warmup  = 3
		callers = 50
	)
	sim := startSim(t, netserversim.Config{Users: map[string]string{simUser: simPassword}})
	auth := newSimPasswordAuth(t, sim, simPassword)
	client := newSimClient(t, sim, auth, nil)
	ctx := callCtx(t)

	for i := range warmup {
		if _, err := client.ForceResyncExternal(ctx, 3, erpsync.ActorCustomer, []string{fmt.Sprintf("W-%d", i)}); err != nil {
			t.Fatalf("warm-up call %d: %v", i, err)
		}
	}
	if n := sim.Counts().Logins.PasswordOK; n != 1 || auth.Refreshes() != 1 {
		t.Fatalf("after warm-up: logins = %d, Refreshes = %d; want 1, 1", n, auth.Refreshes())
	}

	sim.ExpireTickets()
	keys := simKeys("X", callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			<-start
			resp, err := client.ForceResyncExternal(ctx, 3, erpsync.ActorCustomer, []string{k})
			if err == nil && !resp.IsOk {
				err = fmt.Errorf("IsOk=false: %s", resp.TechExplanation)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	snap := sim.Counts()
	if snap.Logins.PasswordOK != 2 || snap.Logins.PasswordRefused != 0 || snap.Logins.Errors != 0 {
		t.Errorf("logins = %+v, want exactly one more successful password login (2 in all)", snap.Logins)
	}
	if auth.Refreshes() != 2 {
		t.Errorf("Refreshes = %d, want 2", auth.Refreshes())
	}
	if got := snap.Calls[netserversim.OutcomeOK]; got != warmup+callers {
		t.Errorf("ok calls = %d, want %d", got, warmup+callers)
	}
	// Every caller holding the stale ticket was refused once; at least one was.
	if got := snap.Calls[netserversim.OutcomeException]; got < 1 || got > callers {
		t.Errorf("exception calls = %d, want 1..%d", got, callers)
	}
	for _, k := range keys {
		if n := sim.ResyncCount(k); n != 1 {
			t.Errorf("ResyncCount(%q) = %d, want 1", k, n)
		}
	}
}

// TestSimLoginRefused: a wrong password is erpsync.ErrLoginRefused, with exactly one login attempt
// per call and no ErpSync call.
func TestSimLoginRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		calls int
	}{
		{name: "one call", calls: 1},
		{name: "three calls", calls: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, netserversim.Config{Users: map[string]string{simUser: simPassword}})
			auth := newSimPasswordAuth(t, sim, simBadPassword)
			client := newSimClient(t, sim, auth, nil)

			for i := range tt.calls {
				_, err := client.ForceResyncExternal(callCtx(t), 3, erpsync.ActorCustomer, []string{"L-1"})
				if !errors.Is(err, erpsync.ErrLoginRefused) {
					t.Fatalf("call %d: want erpsync.ErrLoginRefused, got %v", i, err)
				}
				// A refused login is remembered (soap.RefusedPause): later calls fail at once
				// without asking the login service again.
				if n := sim.Counts().Logins.PasswordRefused; n != 1 {
					t.Errorf("after call %d: refused logins = %d, want 1", i, n)
				}
				assertNoSecrets(t, err, simBadPassword, simPassword)
			}
			snap := sim.Counts()
			if snap.TotalCalls() != 0 || snap.Logins.PasswordOK != 0 || snap.Logins.Errors != 0 {
				t.Errorf("calls = %v, logins = %+v; want no ErpSync call and only refused logins", snap.Calls, snap.Logins)
			}
			if auth.Refreshes() != 1 {
				t.Errorf("Refreshes = %d, want 1", auth.Refreshes())
			}
		})
	}
}

// simRSAKeys are two 1024-bit keys shared by the system-user tests (2048-bit generation is
// slow under -race): the app's signing key and the simulator's JWT key.
var simRSAKeys = sync.OnceValues(func() ([2]*rsa.PrivateKey, error) {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			return keys, err
		}
		keys[i] = k
	}
	return keys, nil
})

// TestSimSystemUser runs the Online system-user flow end to end: sign the system user
// token, exchange it at the simulator's PartnerSystemUser login for a JWT, take the ticket
// from the JWT, and call ForceResyncExternal with it.
func TestSimSystemUser(t *testing.T) {
	t.Parallel()
	keys, err := simRSAKeys()
	if err != nil {
		t.Fatal(err)
	}
	appKey, jwtKey := keys[0], keys[1]
	appKeyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey)})

	tests := []struct {
		name        string
		systemToken string
		verifyWith  func(*testing.T, *netserversim.Running) *rsa.PublicKey // nil: no JWT verification
		wantErr     func(error) bool                                       // nil: success
		wantLogins  netserversim.Logins
	}{
		{
			name:        "unverified JWT",
			systemToken: simSystemToken,
			wantLogins:  netserversim.Logins{SystemUserOK: 1},
		},
		{
			name:        "JWT verified with the simulator's key",
			systemToken: simSystemToken,
			verifyWith: func(t *testing.T, s *netserversim.Running) *rsa.PublicKey {
				pub, err := s.JWTPublicKey()
				if err != nil {
					t.Fatal(err)
				}
				return pub
			},
			wantLogins: netserversim.Logins{SystemUserOK: 1},
		},
		{
			name:        "JWT signed by another key",
			systemToken: simSystemToken,
			verifyWith:  func(*testing.T, *netserversim.Running) *rsa.PublicKey { return &appKey.PublicKey },
			wantErr: func(err error) bool {
				pe, ok := errors.AsType[*erpsync.ProtocolError](err)
				return ok && strings.Contains(pe.Reason, "JWT")
			},
			wantLogins: netserversim.Logins{SystemUserOK: 1},
		},
		{
			name:        "unknown system user token",
			systemToken: "SIM-OTHER-SYSTEM-TOKEN-SECRET",
			wantErr:     func(err error) bool { return errors.Is(err, erpsync.ErrLoginRefused) },
			wantLogins:  netserversim.Logins{SystemUserRefused: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, netserversim.Config{
				Online: true, AppToken: simAppToken,
				SystemUserPublicKey: &appKey.PublicKey, SystemUserToken: simSystemToken,
				JWTKey: jwtKey,
			})
			cfg := auth.SystemUserAuthConfig{
				LoginURL:          sim.LoginURL(),
				SystemToken:       tt.systemToken,
				PrivateKey:        appKeyPEM,
				AppToken:          simAppToken,
				ContextIdentifier: netserversim.DefaultTenant,
			}
			if tt.verifyWith != nil {
				cfg.JWTPublicKey = tt.verifyWith(t, sim)
			}
			auth, err := auth.NewSystemUserAuth(cfg)
			if err != nil {
				t.Fatal(err)
			}
			client := newSimClient(t, sim, auth, nil)

			keys := []string{"SU-1", "SU-2"}
			ctx := callCtx(t)
			var lastErr error
			for range 2 { // the second call reuses the cached ticket
				resp, err := client.ForceResyncExternal(ctx, 3, erpsync.ActorCustomer, keys)
				lastErr = err
				if tt.wantErr != nil {
					if err == nil || !tt.wantErr(err) {
						t.Fatalf("got error %v, want the other kind", err)
					}
					assertNoSecrets(t, err, tt.systemToken, simSystemToken, simAppToken)
					continue
				}
				if err != nil {
					t.Fatalf("ForceResyncExternal: %v", err)
				}
				if !resp.IsOk || resp.Status != erpsync.StatusOk {
					t.Fatalf("IsOk, Status = %t, %v; want true, Ok", resp.IsOk, resp.Status)
				}
				checkChanges(t, resp.Changes, expectedChanges(erpsync.ActorCustomer, keys))
			}

			snap := sim.Counts()
			wantLogins := tt.wantLogins
			wantCalls := 2
			if tt.wantErr != nil {
				// A failed login is not cached: each call logs in again. A refused one is
				// remembered for soap.RefusedPause, so the second call does not ask again.
				if !errors.Is(lastErr, erpsync.ErrLoginRefused) {
					wantLogins.SystemUserOK *= 2
					wantLogins.SystemUserRefused *= 2
				}
				wantCalls = 0
			}
			if snap.Logins != wantLogins {
				t.Errorf("logins = %+v, want %+v", snap.Logins, wantLogins)
			}
			if snap.Calls[netserversim.OutcomeOK] != wantCalls || snap.TotalCalls() != wantCalls {
				t.Errorf("simulator calls = %v, want %d ok", snap.Calls, wantCalls)
			}
		})
	}
}

// TestSimSOAP12Refused documents why SOAP 1.1 is the default: NetServer's basicHttpBinding,
// as the simulator models it, refuses a SOAP 1.2 request's content type with HTTP 415.
func TestSimSOAP12Refused(t *testing.T) {
	t.Parallel()
	sim := startSim(t, netserversim.Config{Online: true, AppToken: simAppToken})
	ticket := sim.IssueTicket()
	client := newSimClient(t, sim, auth.NewStaticTicket(ticket), func(c *soap.Config) { c.SOAP12 = true })

	_, err := client.ForceResyncExternal(callCtx(t), 3, erpsync.ActorCustomer, []string{"V-1"})
	he, ok := errors.AsType[*erpsync.HTTPError](err)
	if !ok {
		t.Fatalf("want *erpsync.HTTPError, got %T: %v", err, err)
	}
	if he.StatusCode != 415 || !strings.Contains(he.Body, "text/xml; charset=utf-8") {
		t.Errorf("StatusCode, Body = %d, %q; want 415 naming text/xml", he.StatusCode, he.Body)
	}
	if snap := sim.Counts(); snap.Calls[netserversim.OutcomeBadRequest] != 1 || snap.TotalCalls() != 1 || sim.Seen("V-1") != 0 {
		t.Errorf("simulator calls = %v, seen = %d; want one bad request, never processed", snap.Calls, sim.Seen("V-1"))
	}
	assertNoSecrets(t, err, ticket, simAppToken)
}

// TestSimNothingResyncsAll: an empty key list never reaches the server; only ForceResyncAll
// asks for everything.
func TestSimNothingResyncsAll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		keys []string
	}{
		{name: "nil keys", keys: nil},
		{name: "empty keys", keys: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, netserversim.Config{})
			ticket := sim.IssueTicket()
			client := newSimClient(t, sim, auth.NewStaticTicket(ticket), nil)

			_, err := client.ForceResyncExternal(callCtx(t), 3, erpsync.ActorCustomer, tt.keys)
			if !errors.Is(err, erpsync.ErrEmptyKeys) {
				t.Fatalf("want erpsync.ErrEmptyKeys, got %v", err)
			}
			if snap := sim.Counts(); snap.TotalCalls() != 0 || snap.ResyncAll != 0 {
				t.Errorf("simulator calls = %v, resync-all = %d; want no request", snap.Calls, snap.ResyncAll)
			}
			assertNoSecrets(t, err, ticket)
		})
	}

	t.Run("ForceResyncAll", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, netserversim.Config{})
		client := newSimClient(t, sim, auth.NewStaticTicket(sim.IssueTicket()), nil)

		resp, err := client.ForceResyncAll(callCtx(t), 3, erpsync.ActorCustomer)
		if err != nil {
			t.Fatalf("ForceResyncAll: %v", err)
		}
		if !resp.IsOk || resp.Status != erpsync.StatusOk {
			t.Errorf("IsOk, Status = %t, %v; want true, Ok", resp.IsOk, resp.Status)
		}
		checkChanges(t, resp.Changes, erpsync.Changes{})
		if snap := sim.Counts(); snap.ResyncAll != 1 || snap.Calls[netserversim.OutcomeOK] != 1 || snap.TotalCalls() != 1 {
			t.Errorf("resync-all = %d, calls = %v; want one ok resync-all", snap.ResyncAll, snap.Calls)
		}
	})
}
