package soap

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/sotest"
	"github.com/erpresync/erpresync/internal/xmltext"
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
	srv := sotest.NewServer(t, f)
	return f, srv.URL + sotest.Tenant
}

func (f *fakeNetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	switch {
	case strings.EqualFold(r.URL.Path, sotest.Tenant+"/Remote/Services88/SoPrincipal.svc"):
		if r.Header.Get("SOAPAction") != `"http://www.superoffice.net/ws/crm/NetServer/Services88/SoPrincipal/AuthenticateUsernamePassword"` {
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
	case strings.EqualFold(r.URL.Path, sotest.Tenant+pathErpSync):
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

func newPasswordClient(t *testing.T, baseURL, password string) (*Client, *auth.PasswordAuth) {
	t.Helper()
	auth, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: baseURL, UserName: "SAL0", Password: password, HTTPClient: &http.Client{}})
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

// systemUserServer verifies the signed system token like SuperOffice's login service and
// answers with a JWT carrying the ticket; ErpSync accepts that ticket.
func systemUserServer(t *testing.T, systemToken, appToken string) (string, *atomic.Int64) {
	var logins atomic.Int64
	const ticket = "7T:system-user-ticket=="
	key := sotest.RSAKey()
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
			"Token": sotest.MakeJWT(t, key, map[string]any{"http://schemes.superoffice.net/identity/ticket": ticket, "http://schemes.superoffice.net/identity/ctx": "Cust12345"}),
		})
	})
	mux.HandleFunc("POST "+sotest.Tenant+pathErpSync, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if m := reTicket.FindSubmatch(body); m == nil || string(m[1]) != ticket || !strings.Contains(string(body), "<ApplicationToken xmlns=\""+xmltext.NetServer+"\">"+appToken+"<") {
			w.Write(readTestdataNoT("response_exception.xml"))
			return
		}
		w.Write(readTestdataNoT("response_success.xml"))
	})
	srv := sotest.NewServer(t, mux)
	return srv.URL, &logins
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
		{name: "PKCS#1 key", keyType: "PKCS1", appToken: sotest.AppToken, check: wantOK},
		{name: "PKCS#8 key, JWT verified", keyType: "PKCS8", appToken: sotest.AppToken, jwtKey: &sotest.RSAKey().PublicKey, check: wantOK},
		{name: "RSAKeyValue XML key", keyType: "XML", appToken: sotest.AppToken, check: wantOK},
		{name: "refused", keyType: "PKCS1", appToken: "WRONG-APP-TOKEN", check: func(t *testing.T, _ *erpsync.Result, err error) {
			if !errors.Is(err, erpsync.ErrLoginRefused) || !strings.Contains(err.Error(), "Invalid application token") {
				t.Fatalf("err = %v, want erpsync.ErrLoginRefused with the server's message", err)
			}
		}},
		{name: "JWT signed by another key", keyType: "PKCS1", appToken: sotest.AppToken, jwtKey: &rsa.PublicKey{N: big.NewInt(0).Add(sotest.RSAKey().N, big.NewInt(2)), E: 65537},
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
			base, logins := systemUserServer(t, systemToken, sotest.AppToken)
			auth, err := auth.NewSystemUserAuth(auth.SystemUserAuthConfig{
				LoginURL:          base + "/Login/api/PartnerSystemUser/Authenticate",
				SystemToken:       systemToken,
				PrivateKey:        sotest.PEMKey(t, tt.keyType),
				AppToken:          tt.appToken,
				ContextIdentifier: "Cust12345",
				HTTPClient:        &http.Client{},
				JWTPublicKey:      tt.jwtKey,
			})
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Config{BaseURL: base + sotest.Tenant, AppToken: tt.appToken, Auth: auth})
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

func rejectingServer(t *testing.T, hold map[string]int) *Client {
	t.Helper()
	hold = maps.Clone(hold)
	if hold == nil {
		hold = map[string]int{}
	}
	var mu sync.Mutex
	gates := map[string]chan struct{}{}
	srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_exception.xml"))(w, r)
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
		c.session = auth.NewSession(auth.NewTicketCache(func(context.Context) (string, error) {
			return fmt.Sprintf("7T:login-%d", logins.Add(1)), nil
		}, 0))
		var mu sync.Mutex
		now := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
		c.session.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
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
		advance(time.Minute) // one rejected re-login: the pause is time.Minute, not doubled per caller
		if err := call(); !erpsync.IsTicketError(err) {
			t.Fatalf("err = %v, want a ticket error", err)
		}
		if n := logins.Load(); n != 3 {
			t.Fatalf("logins after the %s pause = %d, want 3: the pause grew with the number of callers", time.Minute, n)
		}
		advance(time.Minute) // the second rejected re-login doubled the pause
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
		c.session = auth.NewSession(auth.NewTicketCache(func(context.Context) (string, error) {
			logins.Add(1)
			return "7T:always-the-same", nil
		}, 0))
		now := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
		c.session.SetClock(func() time.Time { return now })
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
		now = now.Add(time.Minute)
		calls(5)
		if n := logins.Load(); n != 3 {
			t.Errorf("logins for 5 rejected calls after the pause = %d, want 3 (one re-login, then a doubled pause)", n)
		}
	})
}
