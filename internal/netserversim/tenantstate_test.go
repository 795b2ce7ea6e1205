package netserversim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// getState asks the simulator's state API for ctxID.
func getState(t *testing.T, rs *Running, ctxID string) map[string]any {
	t.Helper()
	resp, err := testClient.Get(rs.RootURL + "/api/state/" + ctxID)
	if err != nil {
		t.Fatalf("GET state: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("state API: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("state API body: %v", err)
	}
	return m
}

func TestStateAPIAnswersAsDocumented(t *testing.T) {
	t.Parallel()
	clock := newClock()
	rs := start(t, Config{Hosts: 2, StateValidFor: 30 * time.Second, Now: clock.Now, JWTKey: jwtKey()})
	got := getState(t, rs, "cust12345")
	want := map[string]any{
		"ContextIdentifier": "Cust12345",
		"Endpoint":          rs.HostURLs[0] + "/Cust12345",
		"Api":               rs.HostURLs[0] + "/Cust12345/api",
		"State":             "Running",
		"IsRunning":         true,
		"ValidUntil":        clock.Now().Add(30 * time.Second).Format("2006-01-02T15:04:05.0000000Z"),
		"Version":           simVersionName,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("members %v, want exactly %v", got, want)
	}
	unknown := getState(t, rs, "Cust99999")
	if unknown["State"] != "Unknown" || unknown["IsRunning"] != false || unknown["Endpoint"] != "" {
		t.Errorf("unknown tenant: %v", unknown)
	}
	if n := rs.StateRequests(); n != 2 {
		t.Errorf("StateRequests = %d, want 2", n)
	}
	resp := post(t, rs.StateURL(), "application/json", "", "{}")
	if resp.status != http.StatusMethodNotAllowed {
		t.Errorf("POST state API: %d, want 405", resp.status)
	}
}

func TestMoveAnswers421OnEveryOtherHost(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{Hosts: 2, JWTKey: jwtKey()})
	ticket := rs.IssueTicket()
	call := func(base string) response {
		return post(t, base+"/Cust12345/Remote/Services88/ErpSync.svc", ctSOAP11, actionQuoted, resyncRequestXML(ticket, "Customer", "K1"))
	}
	wantOK(t, call(rs.HostURLs[0]))
	for _, base := range []string{rs.HostURLs[1], rs.RootURL} {
		if r := call(base); r.status != http.StatusMisdirectedRequest || r.body != misdirectedText {
			t.Errorf("%s before the move: %d %q, want 421 %q", base, r.status, r.body, misdirectedText)
		}
	}
	if err := rs.Move(1); err != nil {
		t.Fatal(err)
	}
	if r := call(rs.HostURLs[0]); r.status != http.StatusMisdirectedRequest {
		t.Errorf("old host after the move: %d, want 421", r.status)
	}
	wantOK(t, call(rs.HostURLs[1]))
	if got := getState(t, rs, "Cust12345")["Endpoint"]; got != rs.HostURLs[1]+"/Cust12345" {
		t.Errorf("Endpoint after the move = %v", got)
	}
	c := rs.Counts()
	if c.Calls[OutcomeMisdirected] != 3 || c.Calls[OutcomeOK] != 2 {
		t.Errorf("calls %v, want 3 misdirected and 2 ok", c.Calls)
	}
	if err := rs.Move(2); err == nil || !strings.Contains(err.Error(), "2 tenant hosts") {
		t.Errorf("Move(2) = %v, want an error naming the 2 hosts", err)
	}
}

func TestNotRunningStatesAnswer503(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{JWTKey: jwtKey()})
	ticket := rs.IssueTicket()
	for _, st := range []TenantState{StateOfflineMaintenance, StateSuspended, StateOnlineMaintenance, StateRunning} {
		rs.SetTenantState(st)
		r := resync(t, rs, ticket, "Customer", "K1")
		state := getState(t, rs, "Cust12345")
		if state["State"] != st.String() || state["IsRunning"] != st.Running() {
			t.Errorf("%s: state API says %v", st, state)
		}
		if st.Running() {
			wantOK(t, r)
		} else if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s: ErpSync answered %d, want 503", st, r.status)
		}
	}
	if c := rs.Counts().Calls; c[OutcomeUnavailable] != 2 || c[OutcomeOK] != 2 {
		t.Errorf("calls %v, want 2 unavailable, 2 ok", c)
	}
}

func TestNotificationIsSignedByTheJWKSKey(t *testing.T) {
	t.Parallel()
	clock := newClock()
	rs := start(t, Config{Hosts: 2, Now: clock.Now, JWTKey: jwtKey()})
	if err := rs.Move(1); err != nil {
		t.Fatal(err)
	}
	got := make(chan Notification, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n Notification
		if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Errorf("notification sent as %s %s", r.Method, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&n); err != nil {
			t.Errorf("notification body: %v", err)
		}
		got <- n
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	status, err := rs.Notify(context.Background(), hook.URL, ChangeMove)
	if err != nil || status != http.StatusNoContent {
		t.Fatalf("Notify = %d, %v", status, err)
	}
	n := <-got
	if n.ChangeType != ChangeMove || n.ContextIdentifier != "Cust12345" || n.PublicEndpoint != strings.TrimPrefix(rs.HostURLs[1], "http://") {
		t.Errorf("notification %+v", n)
	}
	pub, _ := rs.JWTPublicKey()
	tok, err := jwt.Parse(n.Token, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(rs.RootURL), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(clock.Now))
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	if ctx := tok.Claims.(jwt.MapClaims)[ClaimContext]; ctx != "Cust12345" {
		t.Errorf("ctx claim %v", ctx)
	}
	jwks := drain(t, mustGet(t, rs.JWKSURL()))
	if !strings.Contains(string(jwks), tok.Header["kid"].(string)) {
		t.Errorf("the JWKS %s does not publish the token's kid %v", jwks, tok.Header["kid"])
	}
}

func mustGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAdminStateScriptsTheTenant(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{Hosts: 2, Admin: true, JWTKey: jwtKey()})
	tests := []struct {
		name, body string
		want       int
		contains   string
	}{
		{"move and maintain", `{"state":"OfflineMaintenance","host":1}`, 200, `"state":"OfflineMaintenance"`},
		{"unknown state", `{"state":"Sleeping"}`, 400, "unknown tenant state"},
		{"host out of range", `{"host":5}`, 400, "2 tenant hosts"},
		{"notify without change", `{"notify":"http://127.0.0.1:1/x"}`, 400, "notify and change go together"},
		{"unknown member", `{"stat":"Running"}`, 400, "unknown field"},
		{"back to running", `{"state":"running"}`, 200, `"host":1`},
	}
	for _, tt := range tests {
		r := post(t, rs.RootURL+"/_sim/state", "application/json", "", tt.body)
		if r.status != tt.want || !strings.Contains(r.body, tt.contains) {
			t.Errorf("%s: %d %s, want %d containing %q", tt.name, r.status, r.body, tt.want, tt.contains)
		}
	}
	if st, _ := rs.TenantState(); st != StateRunning || rs.TenantHost() != 1 {
		t.Errorf("after the script: %s on host %d", st, rs.TenantHost())
	}
}
