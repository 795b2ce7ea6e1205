package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/golden"
	"github.com/erpresync/erpresync/internal/sotest"
)

func TestPasswordAuthLoginReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(error) bool
	}{
		{"exception", sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_exception.xml")),
			func(err error) bool { var ex *erpsync.ExceptionError; return errors.As(err, &ex) }},
		{"503", sotest.CannedReply(503, "text/html", []byte("<html>down</html>")),
			func(err error) bool { var he *erpsync.HTTPError; return errors.As(err, &he) && he.StatusCode == 503 }},
		{"no ticket", sotest.CannedReply(200, "text/xml", []byte(strings.Replace(string(sotest.ReadTestdata(t, "login_ok.xml")), "7T:TICKET-PLACEHOLDER==", "", 1))),
			func(err error) bool { var pe *erpsync.ProtocolError; return errors.As(err, &pe) }},
		{"wrong body", sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_success.xml")),
			func(err error) bool { var pe *erpsync.ProtocolError; return errors.As(err, &pe) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := sotest.NewServer(t, tt.handler)
			p, err := NewPasswordAuth(PasswordAuthConfig{BaseURL: srv.URL, UserName: "u", Password: "p4ssw0rd"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Ticket(bg); !tt.check(err) {
				t.Fatalf("unexpected error %v", err)
			}
		})
	}
}

func TestTicketCache(t *testing.T) {
	t.Parallel()

	t.Run("max age", func(t *testing.T) {
		t.Parallel()
		var n atomic.Int64
		c := NewTicketCache(func(context.Context) (string, error) { return fmt.Sprint("t", n.Add(1)), nil }, time.Hour)
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		get := func(want string) {
			t.Helper()
			if got, err := c.Ticket(bg); err != nil || got != want {
				t.Fatalf("Ticket = %q, %v; want %q", got, err, want)
			}
		}
		get("t1")
		advance(59 * time.Minute)
		get("t1")
		advance(time.Minute)
		get("t2")
		c.Invalidate("t1") // stale: ignored
		get("t2")
		c.Invalidate("t2")
		get("t3")
		if r := c.Refreshes(); r != 3 {
			t.Errorf("Refreshes = %d, want 3", r)
		}
	})

	t.Run("failed login is not cached", func(t *testing.T) {
		t.Parallel()
		var n atomic.Int64
		c := NewTicketCache(func(context.Context) (string, error) {
			if n.Add(1) == 1 {
				return "", errors.New("boom")
			}
			return "ok", nil
		}, 0)
		if _, err := c.Ticket(bg); err == nil {
			t.Fatal("want the login error")
		}
		if got, err := c.Ticket(bg); err != nil || got != "ok" {
			t.Fatalf("Ticket = %q, %v", got, err)
		}
	})

	t.Run("waiter gives up, login completes for others", func(t *testing.T) {
		t.Parallel()
		entered := make(chan struct{})
		release := make(chan struct{})
		c := NewTicketCache(func(ctx context.Context) (string, error) {
			close(entered)
			<-release
			return "late", ctx.Err()
		}, 0)
		ctx, cancel := context.WithCancel(bg)
		done := make(chan error)
		go func() { _, err := c.Ticket(ctx); done <- err }()
		<-entered
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		second := make(chan string)
		go func() { s, _ := c.Ticket(bg); second <- s }()
		close(release)
		if got := <-second; got != "late" {
			t.Fatalf("second caller got %q, want the ticket of the login already running", got)
		}
		if r := c.Refreshes(); r != 1 {
			t.Errorf("Refreshes = %d, want 1", r)
		}
	})
}

func TestSystemUserAuthConfig(t *testing.T) {
	t.Parallel()
	good := SystemUserAuthConfig{
		LoginURL: "https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate", SystemToken: "x",
		PrivateKey: sotest.PEMKey(t, "PKCS8"), AppToken: "a", ContextIdentifier: "Cust1",
	}
	tests := []struct {
		name    string
		mut     func(*SystemUserAuthConfig)
		wantErr string
	}{
		{"ok", func(*SystemUserAuthConfig) {}, ""},
		{"no login URL", func(c *SystemUserAuthConfig) { c.LoginURL = "" }, "login URL is required"},
		{"no token", func(c *SystemUserAuthConfig) { c.SystemToken = "" }, "system-user token is required"},
		{"no key", func(c *SystemUserAuthConfig) { c.PrivateKey = nil }, "private key is required"},
		{"garbage key", func(c *SystemUserAuthConfig) { c.PrivateKey = []byte("hello") }, "no PEM block"},
		{"public key", func(c *SystemUserAuthConfig) {
			c.PrivateKey = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}})
		}, "not a private key"},
		{"no app token", func(c *SystemUserAuthConfig) { c.AppToken = "" }, "application token is required"},
		{"no context", func(c *SystemUserAuthConfig) { c.ContextIdentifier = "" }, "context id is required"},
	}
	for _, tt := range tests {
		cfg := good
		tt.mut(&cfg)
		_, err := NewSystemUserAuth(cfg)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestSignSystemToken(t *testing.T) {
	t.Parallel()
	key := sotest.RSAKey()
	at := time.Date(2026, 2, 3, 4, 5, 59, 0, time.FixedZone("CET", 3600))
	signed, err := signSystemToken("App-xyz", key, at)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(signed, ".")
	if len(parts) != 3 || parts[0] != "App-xyz" || parts[1] != "202602030305" {
		t.Fatalf("signed = %q, want App-xyz.202602030305.<sig>", signed)
	}
	sig, _ := base64.StdEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte("App-xyz.202602030305"))
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatal(err)
	}
}

// TestTicketCacheRemembersRefusal: a refused login is answered from the cache for
// refusedPause (doubling with each refusal), then asked again; a success forgets it.
func TestTicketCacheRemembersRefusal(t *testing.T) {
	t.Parallel()
	var logins int
	refuse := true
	c := NewTicketCache(func(context.Context) (string, error) {
		logins++
		if refuse {
			return "", fmt.Errorf("authenticate: %w", erpsync.ErrLoginRefused)
		}
		return "7T:fresh", nil
	}, 0)
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	ticket := func() error { _, err := c.Ticket(ctx); return err }

	for range 3 {
		if err := ticket(); !errors.Is(err, erpsync.ErrLoginRefused) {
			t.Fatalf("got %v, want erpsync.ErrLoginRefused", err)
		}
	}
	if logins != 1 {
		t.Fatalf("%d logins for three calls within the pause, want 1", logins)
	}
	now = now.Add(refusedPause)
	if err := ticket(); !errors.Is(err, erpsync.ErrLoginRefused) || logins != 2 {
		t.Fatalf("after the pause: %v with %d logins, want a second refused login", err, logins)
	}
	now = now.Add(refusedPause) // the pause doubled: still answered from the cache
	if err := ticket(); !errors.Is(err, erpsync.ErrLoginRefused) || logins != 2 {
		t.Fatalf("within the doubled pause: %v with %d logins", err, logins)
	}
	refuse = false
	now = now.Add(refusedPause)
	if err := ticket(); err != nil || logins != 3 {
		t.Fatalf("after the doubled pause with good credentials: %v with %d logins", err, logins)
	}
}

// rejectingServer answers every ForceResyncExternal with a ticket exception. Requests that
// carry a ticket listed in hold wait until hold[ticket] requests with it have arrived, so
// concurrent callers are all in the same step before any of them sees a reply.
// TestLoginHTTP401IsRefusal: a login service that answers 401 or 403 refused the
// credentials; the error is erpsync.ErrLoginRefused (so the cache pauses) and still an *erpsync.HTTPError.
func TestLoginHTTP401IsRefusal(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nope", status)
		}))
		defer srv.Close()
		pa, err := NewPasswordAuth(PasswordAuthConfig{BaseURL: srv.URL + "/Cust1", UserName: "u", Password: "pw-secret"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = pa.Login(context.Background())
		var he *erpsync.HTTPError
		if !errors.Is(err, erpsync.ErrLoginRefused) || !errors.As(err, &he) || he.StatusCode != status {
			t.Errorf("HTTP %d: got %v, want erpsync.ErrLoginRefused wrapping the *erpsync.HTTPError", status, err)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	pa, _ := NewPasswordAuth(PasswordAuthConfig{BaseURL: srv.URL + "/Cust1", UserName: "u", Password: "pw-secret"})
	if _, err := pa.Login(context.Background()); errors.Is(err, erpsync.ErrLoginRefused) {
		t.Errorf("HTTP 503 from the login service counted as a refusal: %v", err)
	}
}

// TestTicketCacheServesAgedTicketWhileLoginIsDown: a ticket past its maximum age is still
// used when the refresh fails for a transient reason (the login service is down), retried
// after staleRetry; a ticket NetServer rejected is never served again.
func TestTicketCacheServesAgedTicketWhileLoginIsDown(t *testing.T) {
	t.Parallel()
	var logins int
	down := false
	c := NewTicketCache(func(context.Context) (string, error) {
		logins++
		if down {
			return "", errors.New("login service: connection refused")
		}
		return fmt.Sprintf("7T:%d", logins), nil
	}, time.Hour)
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	get := func() (string, error) { return c.Ticket(ctx) }

	if tk, err := get(); err != nil || tk != "7T:1" {
		t.Fatalf("first ticket %q, %v", tk, err)
	}
	down = true
	now = now.Add(61 * time.Minute)
	if tk, err := get(); err != nil || tk != "7T:1" || logins != 2 {
		t.Fatalf("aged ticket with the login down: %q, %v after %d logins; want the old ticket after one try", tk, err, logins)
	}
	if tk, err := get(); err != nil || tk != "7T:1" || logins != 2 {
		t.Fatalf("within staleRetry: %q, %v after %d logins; want no new try", tk, err, logins)
	}
	c.Invalidate("7T:1") // NetServer rejected it: never served again
	if _, err := get(); err == nil || logins != 3 {
		t.Fatalf("after Invalidate with the login down: err %v after %d logins; want an error from a fresh try", err, logins)
	}
	down = false
	now = now.Add(staleRetry)
	if tk, err := get(); err != nil || tk != "7T:4" {
		t.Fatalf("login back: %q, %v", tk, err)
	}
}

var bg = context.Background()

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestLoginRequestGolden: the SoPrincipal login envelope, byte for byte.
func TestLoginRequestGolden(t *testing.T) {
	t.Parallel()
	got := appendLoginEnvelope(nil, sotest.AppToken, "SAL0", "pa<ss")
	golden.Check(t, "request_login.golden.xml", got, *update)
}
