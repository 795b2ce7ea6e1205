package netserversim

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestIssueTicketFormat(t *testing.T) {
	t.Parallel()
	srv, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := srv.IssueTicket(), srv.IssueTicket()
	if !regexp.MustCompile(`^7T:[A-Za-z0-9+/]{43}=$`).MatchString(a) || a == b {
		t.Fatalf("tickets %q, %q: want distinct 7T:+base64", a, b)
	}
}

func TestLoginUsernamePassword(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{Users: map[string]string{testTicketUser: testPassword}})

	// The user name matches case-insensitively; the ticket then works on ErpSync.
	r := post(t, rs.SoPrincipalURL(), ctSOAP11, loginQuoted, loginRequestXML("", "sal0", testPassword))
	p := parse(t, r)
	if r.status != http.StatusOK || p.Header.Succeeded != "true" || p.Body.Auth.AuthenticationSucceeded != "true" {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	ticket := p.Body.Auth.Ticket
	if !strings.HasPrefix(ticket, "7T:") {
		t.Fatalf("ticket %q", ticket)
	}
	wantOK(t, resync(t, rs, ticket, "Customer", "L-1"))

	// Refusal is not an exception: Succeeded=true, AuthenticationSucceeded=false, no ticket.
	for _, creds := range [][2]string{{testTicketUser, "wrong"}, {"nobody", testPassword}, {"", ""}} {
		r = post(t, rs.SoPrincipalURL(), ctSOAP11, loginQuoted, loginRequestXML("", creds[0], creds[1]))
		p = parse(t, r)
		if r.status != http.StatusOK || p.Header.Succeeded != "true" || p.Header.ExceptionInfo.Nil != "true" ||
			p.Body.Auth.AuthenticationSucceeded != "false" || p.Body.Auth.Ticket != "" {
			t.Fatalf("refused login %v: %d %s", creds, r.status, r.body)
		}
	}

	// SoPrincipal is as strict as ErpSync.
	wantFault(t, post(t, rs.SoPrincipalURL(), ctSOAP11, actionQuoted, loginRequestXML("", testTicketUser, testPassword)),
		"a:ActionNotSupported", "ErpSync/ForceResyncExternal")
	wantFault(t, post(t, rs.SoPrincipalURL(), ctSOAP11, loginQuoted, envelope11("",
		`<AuthenticateUsernamePassword xmlns="`+ns88+`"><Password>x</Password><UserName>y</UserName></AuthenticateUsernamePassword>`)),
		"a:DeserializationFailed", "Found element 'UserName'")

	got := rs.Counts().Logins
	want := Logins{PasswordOK: 1, PasswordRefused: 3, Errors: 2}
	if got != want {
		t.Fatalf("logins = %+v, want %+v", got, want)
	}
}

func TestOnlineApplicationToken(t *testing.T) {
	t.Parallel()
	users := map[string]string{testTicketUser: testPassword}
	online := start(t, Config{Online: true, AppToken: "CLIENT_SECRET", Users: users})
	ticket := online.IssueTicket()

	wantOK(t, post(t, online.ErpSyncURL(), ctSOAP11, actionQuoted,
		envelope11(soapHeader("CLIENT_SECRET", ticket), resyncBody("3", "Customer", "O-1"))))
	for name, hdr := range map[string]string{
		"wrong token":   soapHeader("other", ticket),
		"missing token": `<Credentials xmlns="` + ns88 + `"><Ticket>` + ticket + `</Ticket></Credentials>`,
	} {
		r := post(t, online.ErpSyncURL(), ctSOAP11, actionQuoted, envelope11(hdr, resyncBody("3", "Customer", "O-2")))
		t.Run(name, func(t *testing.T) { wantException(t, r, DefaultExceptionType, msgAppToken) })
	}
	r := post(t, online.SoPrincipalURL(), ctSOAP11, loginQuoted, loginRequestXML("wrong", testTicketUser, testPassword))
	wantException(t, r, DefaultExceptionType, msgAppToken)
	r = post(t, online.SoPrincipalURL(), ctSOAP11, loginQuoted, loginRequestXML("CLIENT_SECRET", testTicketUser, testPassword))
	if p := parse(t, r); p.Body.Auth.AuthenticationSucceeded != "true" {
		t.Fatalf("online login with the right token: %s", r.body)
	}

	// On-site ignores whatever ApplicationToken says.
	onsite := start(t, Config{AppToken: "CLIENT_SECRET"})
	wantOK(t, post(t, onsite.ErpSyncURL(), ctSOAP11, actionQuoted,
		envelope11(soapHeader("anything", onsite.IssueTicket()), resyncBody("3", "Customer", "O-3"))))

	if _, err := New(Config{Online: true}); err == nil || !strings.Contains(err.Error(), "-app-token") {
		t.Fatalf("New(Online without AppToken) error = %v, want one naming -app-token", err)
	}
}

func TestErpSyncNotGranted(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{ErpSyncNotGranted: true})
	wantException(t, resync(t, rs, rs.IssueTicket(), "Customer", "N-1"), DefaultExceptionType, msgNotGranted)
}

func TestTicketExpiry(t *testing.T) {
	t.Parallel()
	t.Run("ExpireTickets", func(t *testing.T) {
		t.Parallel()
		rs := start(t, Config{ExceptionType: "CustomSecurity", ExceptionMessage: "custom message"})
		a, b := rs.IssueTicket(), rs.IssueTicket()
		wantOK(t, resync(t, rs, a, "Customer", "E-1"))
		rs.ExpireTickets()
		wantException(t, resync(t, rs, a, "Customer", "E-1"), "CustomSecurity", "custom message")
		wantException(t, resync(t, rs, b, "Customer", "E-1"), "CustomSecurity", "custom message")
		wantOK(t, resync(t, rs, rs.IssueTicket(), "Customer", "E-1"))
		if c := rs.Counts(); c.Seen["E-1"] != 4 || c.Resynced["E-1"] != 2 || c.Calls[OutcomeException] != 2 {
			t.Fatalf("counts = %+v", c)
		}
	})
	t.Run("fixed TTL", func(t *testing.T) {
		t.Parallel()
		clk := newClock()
		rs := start(t, Config{TicketTTL: time.Hour, Now: clk.Now})
		tk := rs.IssueTicket()
		clk.Advance(59 * time.Minute)
		wantOK(t, resync(t, rs, tk, "Customer", "E-2"))
		clk.Advance(time.Minute)
		wantException(t, resync(t, rs, tk, "Customer", "E-2"), DefaultExceptionType, DefaultExceptionMessage)
	})
	t.Run("sliding TTL", func(t *testing.T) {
		t.Parallel()
		clk := newClock()
		rs := start(t, Config{TicketTTL: time.Hour, SlidingTickets: true, Now: clk.Now})
		tk := rs.IssueTicket()
		for range 3 {
			clk.Advance(50 * time.Minute)
			wantOK(t, resync(t, rs, tk, "Customer", "E-3"))
		}
		clk.Advance(61 * time.Minute)
		wantException(t, resync(t, rs, tk, "Customer", "E-3"), DefaultExceptionType, DefaultExceptionMessage)
	})
}

// signSystemToken builds SignedSystemToken as SuperOffice's samples do (§7.2 step 2).
func signSystemToken(t *testing.T, key *rsa.PrivateKey, token string, at time.Time) string {
	t.Helper()
	payload := token + "." + at.UTC().Format("200601021504")
	sum := sha256.Sum256([]byte(payload))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return payload + "." + base64.StdEncoding.EncodeToString(sig)
}

type loginReply struct {
	IsSuccessful bool
	ErrorMessage *string
	Token        *string
}

func systemLogin(t *testing.T, rs *Running, req map[string]string) (int, loginReply) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := testClient.Post(rs.LoginURL(), "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	body := drain(t, resp)
	var lr loginReply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &lr); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, lr
}

// verifyJWT checks an RS256 JWT against pub and returns its claims.
func verifyJWT(t *testing.T, token string, pub *rsa.PublicKey) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT %q has %d parts", token, len(parts))
	}
	var hdr map[string]string
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr["alg"] != "RS256" {
		t.Fatalf("JWT header %s", hb)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("JWT signature: %v", err)
	}
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(cb, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestSystemUserLogin(t *testing.T) {
	t.Parallel()
	clk := newClock()
	rs := start(t, Config{
		Online: true, AppToken: "CLIENT_SECRET", Tenant: "Cust26759",
		SystemUserPublicKey: &sysKey().PublicKey, SystemUserToken: "MyApp-abc123",
		JWTKey: jwtKey(), Now: clk.Now,
	})
	good := func() map[string]string {
		return map[string]string{
			"SignedSystemToken": signSystemToken(t, sysKey(), "MyApp-abc123", clk.Now()),
			"ApplicationToken":  "CLIENT_SECRET", "ContextIdentifier": "Cust26759", "ReturnTokenType": "JWT",
		}
	}

	status, lr := systemLogin(t, rs, good())
	if status != http.StatusOK || !lr.IsSuccessful || lr.Token == nil || lr.ErrorMessage != nil {
		t.Fatalf("login: %d %+v", status, lr)
	}
	pub, err := rs.JWTPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	claims := verifyJWT(t, *lr.Token, pub)
	ticket, _ := claims[ClaimTicket].(string)
	if !strings.HasPrefix(ticket, "7T:") || claims[ClaimContext] != "Cust26759" ||
		claims[ClaimNetServerURL] != rs.URL+"/Remote/Services88/" {
		t.Fatalf("claims = %v", claims)
	}
	wantOK(t, post(t, rs.ErpSyncURL(), ctSOAP11, actionQuoted,
		envelope11(soapHeader("CLIENT_SECRET", ticket), resyncBody("3", "Customer", "SU-1"))))

	// JWKS publishes the same key.
	jwks := fetchJWKS(t, rs)
	if len(jwks.Keys) != 1 || jwks.Keys[0]["n"] != base64.RawURLEncoding.EncodeToString(pub.N.Bytes()) {
		t.Fatalf("jwks = %+v", jwks)
	}

	refusals := []struct {
		name, msg string
		edit      func(m map[string]string)
	}{
		{"wrong application token", msgSysAppToken, func(m map[string]string) { m["ApplicationToken"] = "x" }},
		{"wrong tenant", msgSysContext, func(m map[string]string) { m["ContextIdentifier"] = "Cust1" }},
		{"SAML token type", msgSysTokenType, func(m map[string]string) { m["ReturnTokenType"] = "Saml" }},
		{"not signed", msgSysFormat, func(m map[string]string) { m["SignedSystemToken"] = "MyApp-abc123" }},
		{"other system token", msgSysToken, func(m map[string]string) {
			m["SignedSystemToken"] = signSystemToken(t, sysKey(), "Other-1", clk.Now())
		}},
		{"tampered", msgSysSignature, func(m map[string]string) {
			s := m["SignedSystemToken"]
			i := strings.LastIndexByte(s, '.')
			m["SignedSystemToken"] = signSystemToken(t, sysKey(), "MyApp-abc123", clk.Now().Add(-time.Minute))[:i] + s[i:]
		}},
		{"signed by another key", msgSysSignature, func(m map[string]string) {
			m["SignedSystemToken"] = signSystemToken(t, jwtKey(), "MyApp-abc123", clk.Now())
		}},
		{"stale", msgSysTime, func(m map[string]string) {
			m["SignedSystemToken"] = signSystemToken(t, sysKey(), "MyApp-abc123", clk.Now().Add(-11*time.Minute))
		}},
		{"from the future", msgSysTime, func(m map[string]string) {
			m["SignedSystemToken"] = signSystemToken(t, sysKey(), "MyApp-abc123", clk.Now().Add(6*time.Minute))
		}},
	}
	for _, tc := range refusals {
		m := good()
		tc.edit(m)
		status, lr := systemLogin(t, rs, m)
		if status != http.StatusOK || lr.IsSuccessful || lr.Token != nil || lr.ErrorMessage == nil || *lr.ErrorMessage != tc.msg {
			t.Errorf("%s: %d %+v, want refusal %q", tc.name, status, lr, tc.msg)
		}
	}
	if got := rs.Counts().Logins; got.SystemUserOK != 1 || got.SystemUserRefused != len(refusals) {
		t.Fatalf("logins = %+v", got)
	}

	// Transport strictness of the JSON endpoint.
	resp, err := testClient.Post(rs.LoginURL(), "text/xml", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	drain(t, resp)
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("XML content type: %d, want 415", resp.StatusCode)
	}
}

func TestSystemUserWithoutKeyIsRefused(t *testing.T) {
	t.Parallel()
	clk := newClock()
	rs := start(t, Config{JWTKey: jwtKey(), Now: clk.Now})
	_, lr := systemLogin(t, rs, map[string]string{
		"SignedSystemToken": signSystemToken(t, sysKey(), "MyApp-1", clk.Now()),
		"ContextIdentifier": DefaultTenant, "ReturnTokenType": "JWT",
	})
	if lr.IsSuccessful || lr.ErrorMessage == nil || *lr.ErrorMessage != msgSysNoKey {
		t.Fatalf("got %+v, want refusal %q", lr, msgSysNoKey)
	}
}

func TestJWKSEncodesExponent(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{JWTKey: jwtKey()})
	jwks := fetchJWKS(t, rs)
	e, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[0]["e"])
	if new(big.Int).SetBytes(e).Int64() != int64(jwtKey().E) {
		t.Fatalf("e = %v", e)
	}
}

// fetchJWKS reads the key set the simulator publishes for its login JWTs.
func fetchJWKS(t *testing.T, rs *Running) (jwks struct{ Keys []map[string]string }) {
	t.Helper()
	resp, err := testClient.Get(rs.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(drain(t, resp), &jwks); err != nil {
		t.Fatal(err)
	}
	return jwks
}
