package soap

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// fakeNetServer serves SoPrincipal.AuthenticateUsernamePassword and ErpSync.ForceResyncExternal.
// Tickets it issued stay valid until expireAll; a call with another ticket gets the
// ExceptionInfo reply of section 4.4.
type fakeNetServer struct {
	mu       sync.Mutex
	password string // the password it accepts
	valid    map[string]bool

	logins   atomic.Int64
	calls    atomic.Int64
	rejected atomic.Int64
}

var (
	reTicket   = regexp.MustCompile(`<Ticket>([^<]*)</Ticket>`)
	rePassword = regexp.MustCompile(`<Password>([^<]*)</Password>`)
)

func newFakeNetServer(t *testing.T, password string) (*fakeNetServer, string) {
	f := &fakeNetServer{password: password, valid: map[string]bool{}}
	srv := newServer(t, f)
	return f, srv.URL + testTenant
}

func (f *fakeNetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	switch {
	case strings.EqualFold(r.URL.Path, testTenant+pathSoPrincipal):
		if r.Header.Get("SOAPAction") != `"`+actionAuthenticateUsernamePassword+`"` {
			http.Error(w, "bad action", http.StatusInternalServerError)
			return
		}
		n := f.logins.Add(1)
		m := rePassword.FindSubmatch(body)
		f.mu.Lock()
		password := f.password
		f.mu.Unlock()
		if m == nil || string(m[1]) != password {
			w.Write(readTestdataNoT("login_refused.xml"))
			return
		}
		ticket := fmt.Sprintf("7T:issued-%d==", n)
		f.mu.Lock()
		f.valid[ticket] = true
		f.mu.Unlock()
		w.Write([]byte(strings.Replace(string(readTestdataNoT("login_ok.xml")), "7T:TICKET-PLACEHOLDER==", ticket, 1)))
	case strings.EqualFold(r.URL.Path, testTenant+pathErpSync):
		f.calls.Add(1)
		m := reTicket.FindSubmatch(body)
		f.mu.Lock()
		ok := m != nil && f.valid[string(m[1])]
		f.mu.Unlock()
		if !ok {
			f.rejected.Add(1)
			w.Write(readTestdataNoT("response_exception.xml"))
			return
		}
		w.Write(readTestdataNoT("response_success.xml"))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeNetServer) expireAll() {
	f.mu.Lock()
	clear(f.valid)
	f.mu.Unlock()
}

var testdataCache sync.Map

func readTestdataNoT(name string) []byte {
	if b, ok := testdataCache.Load(name); ok {
		return b.([]byte)
	}
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	testdataCache.Store(name, b)
	return b
}

func newPasswordClient(t *testing.T, baseURL, password string) (*Client, *PasswordAuth) {
	t.Helper()
	auth, err := NewPasswordAuth(PasswordAuthConfig{BaseURL: baseURL, UserName: "SAL0", Password: password, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{BaseURL: baseURL, Auth: auth, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	return c, auth
}

// TestTicketExpiryConcurrent: the ticket expires while 50 callers are busy; exactly one
// new login happens and every call succeeds.
func TestTicketExpiryConcurrent(t *testing.T) {
	t.Parallel()
	srv, base := newFakeNetServer(t, "right")
	c, auth := newPasswordClient(t, base, "right")

	if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"}); err != nil {
		t.Fatal(err)
	}
	if n := srv.logins.Load(); n != 1 {
		t.Fatalf("logins after first call = %d, want 1", n)
	}
	srv.expireAll()

	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			resp, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{fmt.Sprint("k", i)})
			if err == nil && !resp.IsOk {
				err = errors.New("IsOk=false")
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.logins.Load(); n != 2 {
		t.Errorf("logins = %d, want 2 (one initial, exactly one re-authentication)", n)
	}
	if n := auth.Refreshes(); n != 2 {
		t.Errorf("Refreshes() = %d, want 2", n)
	}
	if r := srv.rejected.Load(); r < 1 || r > callers {
		t.Errorf("rejected calls = %d, want 1..%d", r, callers)
	}
}

// TestLoginRefused: a refused login is erpsync.ErrLoginRefused, once, with no retry loop.
func TestLoginRefused(t *testing.T) {
	t.Parallel()
	t.Run("first login", func(t *testing.T) {
		t.Parallel()
		srv, base := newFakeNetServer(t, "right")
		c, _ := newPasswordClient(t, base, "wrong")
		_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
		if !errors.Is(err, erpsync.ErrLoginRefused) {
			t.Fatalf("err = %v, want erpsync.ErrLoginRefused", err)
		}
		if l, c := srv.logins.Load(), srv.calls.Load(); l != 1 || c != 0 {
			t.Errorf("logins = %d, ErpSync calls = %d; want 1 and 0", l, c)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error text carries the password: %v", err)
		}
	})
	t.Run("re-login after expiry", func(t *testing.T) {
		t.Parallel()
		srv, base := newFakeNetServer(t, "right")
		c, _ := newPasswordClient(t, base, "right")
		if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"}); err != nil {
			t.Fatal(err)
		}
		srv.expireAll()
		srv.mu.Lock()
		srv.password = "changed" // the account's password changed meanwhile
		srv.mu.Unlock()
		_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
		if !errors.Is(err, erpsync.ErrLoginRefused) {
			t.Fatalf("err = %v, want erpsync.ErrLoginRefused", err)
		}
		if l, c := srv.logins.Load(), srv.calls.Load(); l != 2 || c != 2 {
			t.Errorf("logins = %d, ErpSync calls = %d; want 2 and 2", l, c)
		}
	})
}

func TestPasswordAuthLoginReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(error) bool
	}{
		{"exception", cannedReply(200, "text/xml", readTestdata(t, "response_exception.xml")),
			func(err error) bool { var ex *erpsync.ExceptionError; return errors.As(err, &ex) }},
		{"503", cannedReply(503, "text/html", []byte("<html>down</html>")),
			func(err error) bool { var he *erpsync.HTTPError; return errors.As(err, &he) && he.StatusCode == 503 }},
		{"no ticket", cannedReply(200, "text/xml", []byte(strings.Replace(string(readTestdata(t, "login_ok.xml")), "7T:TICKET-PLACEHOLDER==", "", 1))),
			func(err error) bool { var pe *erpsync.ProtocolError; return errors.As(err, &pe) }},
		{"wrong body", cannedReply(200, "text/xml", readTestdata(t, "response_success.xml")),
			func(err error) bool { var pe *erpsync.ProtocolError; return errors.As(err, &pe) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tt.handler)
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

// rsaKey is generated once per test binary; key generation is slow under -race.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func makeJWT(t testing.TB, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hdr := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	body, _ := json.Marshal(claims)
	data := hdr + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(data))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return data + "." + enc.EncodeToString(sig)
}

// systemUserServer verifies the signed system token like SuperOffice's login service and
// answers with a JWT carrying the ticket; ErpSync accepts that ticket.
func systemUserServer(t *testing.T, systemToken, appToken string) (string, *atomic.Int64) {
	var logins atomic.Int64
	const ticket = "7T:system-user-ticket=="
	key := rsaKey()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /Login/api/PartnerSystemUser/Authenticate", func(w http.ResponseWriter, r *http.Request) {
		logins.Add(1)
		var req struct{ SignedSystemToken, ApplicationToken, ContextIdentifier, ReturnTokenType string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		fail := func(msg string) {
			json.NewEncoder(w).Encode(map[string]any{"IsSuccessful": false, "ErrorMessage": msg, "Token": nil})
		}
		if req.ApplicationToken != appToken || req.ContextIdentifier != "Cust12345" || req.ReturnTokenType != "JWT" {
			fail("Invalid application token or context")
			return
		}
		i := strings.LastIndexByte(req.SignedSystemToken, '.')
		data, sigB64 := req.SignedSystemToken[:i], req.SignedSystemToken[i+1:]
		j := strings.LastIndexByte(data, '.')
		token, ts := data[:j], data[j+1:]
		sig, err := base64.StdEncoding.DecodeString(sigB64)
		sum := sha256.Sum256([]byte(data))
		if err != nil || rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
			fail("Signature does not verify")
			return
		}
		when, err := time.Parse("200601021504", ts)
		if err != nil || time.Since(when).Abs() > 2*time.Minute || token != systemToken {
			fail("Stale or unknown system token")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"IsSuccessful": true, "ErrorMessage": "",
			"Token": makeJWT(t, key, map[string]any{TicketClaim: ticket, "http://schemes.superoffice.net/identity/ctx": "Cust12345"}),
		})
	})
	mux.HandleFunc("POST "+testTenant+pathErpSync, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if m := reTicket.FindSubmatch(body); m == nil || string(m[1]) != ticket || !strings.Contains(string(body), "<ApplicationToken xmlns=\""+nsNetServer+"\">"+appToken+"<") {
			w.Write(readTestdataNoT("response_exception.xml"))
			return
		}
		w.Write(readTestdataNoT("response_success.xml"))
	})
	srv := newServer(t, mux)
	return srv.URL, &logins
}

func pemKey(t testing.TB, typ string) []byte {
	key := rsaKey()
	switch typ {
	case "PKCS1":
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	case "PKCS8":
		b, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
	case "XML":
		b64 := func(n *big.Int) string { return base64.StdEncoding.EncodeToString(n.Bytes()) }
		return []byte(fmt.Sprintf("<RSAKeyValue><Modulus>%s</Modulus><Exponent>%s</Exponent><P>%s</P><Q>%s</Q><DP>%s</DP><DQ>%s</DQ><InverseQ>%s</InverseQ><D>%s</D></RSAKeyValue>",
			b64(key.N), b64(big.NewInt(int64(key.E))), b64(key.Primes[0]), b64(key.Primes[1]),
			b64(key.Precomputed.Dp), b64(key.Precomputed.Dq), b64(key.Precomputed.Qinv), b64(key.D)))
	}
	t.Fatalf("unknown key type %s", typ)
	return nil
}

func TestSystemUserAuth(t *testing.T) {
	t.Parallel()
	const systemToken = "ErpResync-abc.def123"
	tests := []struct {
		name     string
		keyType  string
		appToken string
		jwtKey   *rsa.PublicKey
		check    func(t *testing.T, resp *erpsync.Result, err error)
	}{
		{name: "PKCS#1 key", keyType: "PKCS1", appToken: testAppToken, check: wantOK},
		{name: "PKCS#8 key, JWT verified", keyType: "PKCS8", appToken: testAppToken, jwtKey: &rsaKey().PublicKey, check: wantOK},
		{name: "RSAKeyValue XML key", keyType: "XML", appToken: testAppToken, check: wantOK},
		{name: "refused", keyType: "PKCS1", appToken: "WRONG-APP-TOKEN", check: func(t *testing.T, _ *erpsync.Result, err error) {
			if !errors.Is(err, erpsync.ErrLoginRefused) || !strings.Contains(err.Error(), "Invalid application token") {
				t.Fatalf("err = %v, want erpsync.ErrLoginRefused with the server's message", err)
			}
		}},
		{name: "JWT signed by another key", keyType: "PKCS1", appToken: testAppToken, jwtKey: &rsa.PublicKey{N: big.NewInt(0).Add(rsaKey().N, big.NewInt(2)), E: 65537},
			check: func(t *testing.T, _ *erpsync.Result, err error) {
				var pe *erpsync.ProtocolError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), "signature") {
					t.Fatalf("err = %v, want *erpsync.ProtocolError about the signature", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base, logins := systemUserServer(t, systemToken, testAppToken)
			auth, err := NewSystemUserAuth(SystemUserAuthConfig{
				LoginURL:          base + "/Login/api/PartnerSystemUser/Authenticate",
				SystemToken:       systemToken,
				PrivateKey:        pemKey(t, tt.keyType),
				AppToken:          tt.appToken,
				ContextIdentifier: "Cust12345",
				HTTPClient:        &http.Client{},
				JWTPublicKey:      tt.jwtKey,
			})
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Config{BaseURL: base + testTenant, AppToken: tt.appToken, Auth: auth})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
			tt.check(t, resp, err)
			if err == nil {
				if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"}); err != nil {
					t.Fatal(err)
				}
			}
			if n := logins.Load(); n != 1 {
				t.Errorf("logins = %d, want 1 (cached)", n)
			}
		})
	}
}

func wantOK(t *testing.T, resp *erpsync.Result, err error) {
	t.Helper()
	if err != nil || !resp.IsOk {
		t.Fatalf("got %+v, %v; want IsOk", resp, err)
	}
}

func TestSystemUserAuthConfig(t *testing.T) {
	t.Parallel()
	good := SystemUserAuthConfig{
		LoginURL: "https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate", SystemToken: "x",
		PrivateKey: pemKey(t, "PKCS8"), AppToken: "a", ContextIdentifier: "Cust1",
	}
	tests := []struct {
		name    string
		mut     func(*SystemUserAuthConfig)
		wantErr string
	}{
		{"ok", func(*SystemUserAuthConfig) {}, ""},
		{"no login URL", func(c *SystemUserAuthConfig) { c.LoginURL = "" }, "LoginURL is required"},
		{"no token", func(c *SystemUserAuthConfig) { c.SystemToken = "" }, "SystemToken is required"},
		{"no key", func(c *SystemUserAuthConfig) { c.PrivateKey = nil }, "PrivateKey is required"},
		{"garbage key", func(c *SystemUserAuthConfig) { c.PrivateKey = []byte("hello") }, "no PEM block"},
		{"public key", func(c *SystemUserAuthConfig) {
			c.PrivateKey = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}})
		}, "not a private key"},
		{"no app token", func(c *SystemUserAuthConfig) { c.AppToken = "" }, "AppToken is required"},
		{"no context", func(c *SystemUserAuthConfig) { c.ContextIdentifier = "" }, "ContextIdentifier is required"},
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
	key := rsaKey()
	at := time.Date(2026, 2, 3, 4, 5, 59, 0, time.FixedZone("CET", 3600))
	signed, err := SignSystemToken("App-xyz", key, at)
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
// RefusedPause (doubling with each refusal), then asked again; a success forgets it.
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
	now = now.Add(RefusedPause)
	if err := ticket(); !errors.Is(err, erpsync.ErrLoginRefused) || logins != 2 {
		t.Fatalf("after the pause: %v with %d logins, want a second refused login", err, logins)
	}
	now = now.Add(RefusedPause) // the pause doubled: still answered from the cache
	if err := ticket(); !errors.Is(err, erpsync.ErrLoginRefused) || logins != 2 {
		t.Fatalf("within the doubled pause: %v with %d logins", err, logins)
	}
	refuse = false
	now = now.Add(RefusedPause)
	if err := ticket(); err != nil || logins != 3 {
		t.Fatalf("after the doubled pause with good credentials: %v with %d logins", err, logins)
	}
}

// rejectingServer answers every ForceResyncExternal with a ticket exception. Requests that
// carry a ticket listed in hold wait until hold[ticket] requests with it have arrived, so
// concurrent callers are all in the same step before any of them sees a reply.
func rejectingServer(t *testing.T, hold map[string]int) *Client {
	t.Helper()
	hold = maps.Clone(hold)
	if hold == nil {
		hold = map[string]int{}
	}
	var mu sync.Mutex
	gates := map[string]chan struct{}{}
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ticket string
		if m := reTicket.FindSubmatch(body); m != nil {
			ticket = string(m[1])
		}
		mu.Lock()
		gate := gates[ticket]
		if gate == nil {
			gate = make(chan struct{})
			gates[ticket] = gate
		}
		if hold[ticket]--; hold[ticket] <= 0 {
			close(gate)
			hold[ticket] = 1 << 30 // later requests with this ticket pass the closed gate
		}
		mu.Unlock()
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		cannedReply(200, "text/xml", readTestdata(t, "response_exception.xml"))(w, r)
	}))
	return newTestClient(t, srv.URL, nil)
}

// TestRejectedFreshTicketPause covers the re-login pause of a Client whose freshly fetched
// ticket is rejected too (an Online app not granted the ErpSync agent): one rejected login
// is one step of the doubling, however many callers saw it, and a login that hands back
// the rejected ticket counts as a rejected login.
func TestRejectedFreshTicketPause(t *testing.T) {
	t.Parallel()

	t.Run("concurrent callers pause once", func(t *testing.T) {
		t.Parallel()
		const callers = 8
		c := rejectingServer(t, map[string]int{"7T:login-1": callers, "7T:login-2": callers})
		var logins atomic.Int64
		c.auth = NewTicketCache(func(context.Context) (string, error) {
			return fmt.Sprintf("7T:login-%d", logins.Add(1)), nil
		}, 0)
		var mu sync.Mutex
		now := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
		c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		call := func() error { _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"}); return err }

		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				if err := call(); !erpsync.IsTicketError(err) {
					t.Errorf("err = %v, want a ticket error", err)
				}
			})
		}
		wg.Wait()
		if n := logins.Load(); n != 2 {
			t.Fatalf("logins = %d, want 2 (the first and one re-login shared by all callers)", n)
		}
		advance(minSuspect) // one rejected re-login: the pause is minSuspect, not doubled per caller
		if err := call(); !erpsync.IsTicketError(err) {
			t.Fatalf("err = %v, want a ticket error", err)
		}
		if n := logins.Load(); n != 3 {
			t.Fatalf("logins after the %s pause = %d, want 3: the pause grew with the number of callers", minSuspect, n)
		}
		advance(minSuspect) // the second rejected re-login doubled the pause
		if err := call(); !erpsync.IsTicketError(err) {
			t.Fatalf("err = %v, want a ticket error", err)
		}
		if n := logins.Load(); n != 3 {
			t.Fatalf("logins within the doubled pause = %d, want 3", n)
		}
	})

	t.Run("login hands back the rejected ticket", func(t *testing.T) {
		t.Parallel()
		c := rejectingServer(t, nil)
		var logins atomic.Int64
		c.auth = NewTicketCache(func(context.Context) (string, error) {
			logins.Add(1)
			return "7T:always-the-same", nil
		}, 0)
		now := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
		c.now = func() time.Time { return now }
		calls := func(n int) {
			t.Helper()
			for range n {
				if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"}); !erpsync.IsTicketError(err) {
					t.Fatalf("err = %v, want a ticket error", err)
				}
			}
		}
		calls(5)
		if n := logins.Load(); n != 2 {
			t.Fatalf("logins for 5 rejected calls = %d, want 2 (a re-login that returns the rejected ticket pauses re-logins)", n)
		}
		now = now.Add(minSuspect)
		calls(5)
		if n := logins.Load(); n != 3 {
			t.Errorf("logins for 5 rejected calls after the pause = %d, want 3 (one re-login, then a doubled pause)", n)
		}
	})
}

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
// after StaleRetry; a ticket NetServer rejected is never served again.
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
		t.Fatalf("within StaleRetry: %q, %v after %d logins; want no new try", tk, err, logins)
	}
	c.Invalidate("7T:1") // NetServer rejected it: never served again
	if _, err := get(); err == nil || logins != 3 {
		t.Fatalf("after Invalidate with the login down: err %v after %d logins; want an error from a fresh try", err, logins)
	}
	down = false
	now = now.Add(StaleRetry)
	if tk, err := get(); err != nil || tk != "7T:4" {
		t.Fatalf("login back: %q, %v", tk, err)
	}
}
