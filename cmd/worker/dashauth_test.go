package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/intakeapi"
	"github.com/erpresync/erpresync/internal/redistest"
)

// logLines returns the log lines with the given message, decoded.
func logLines(t *testing.T, buf *bytes.Buffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range decodeLogLines(t, buf) {
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// decodeLogLines returns every JSON log line in buf, decoded; a line that is not JSON fails
// the test.
func decodeLogLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// guardedHandler is the dashboard's login (as protect builds it for the dashboard and the
// runs page) in front of a handler that answers 200, with a clock the test moves and a
// log it reads; not for concurrent use.
func guardedHandler(t *testing.T) (http.Handler, *fakeClock, *bytes.Buffer, *loginGuard) {
	t.Helper()
	logs := &bytes.Buffer{}
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	g := newLoginGuard(zerolog.New(logs))
	g.now = clock.now
	cfg := httpConfig{DashboardUser: dashUser, DashboardPass: dashPass, Logins: g, CrossOrigin: http.NewCrossOriginProtection()}
	return cfg.protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })), clock, logs, g
}

func login(h http.Handler, remote, user, pass string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/monitoring/api/queues", nil)
	req.RemoteAddr = remote
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestDashboardLoginThrottle: a burst of 300 wrong passwords from one address leaves one
// log line at once (the address and the count, never a password or user name) and the
// rest counted in the next one, a minute on; after the
// free refusals the address is answered 429 with Retry-After, even with the right
// password, until the lock ends; the locks grow. Other addresses, requests without
// credentials (a browser before its prompt) and a right login after the lock are not
// held back, and the guard remembers a bounded number of addresses.
func TestDashboardLoginThrottle(t *testing.T) {
	t.Parallel()
	h, clock, logs, g := guardedHandler(t)
	const attacker = "203.0.113.7:40000"

	codes := map[int]int{}
	for i := range 300 {
		rec := login(h, attacker, dashUser, fmt.Sprintf("guess-%03d", i))
		codes[rec.Code]++
		if rec.Code == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("429 with Retry-After %q, want whole seconds >= 1", rec.Header().Get("Retry-After"))
			}
		}
	}
	if codes[http.StatusUnauthorized] != loginFreeFailures+1 || codes[http.StatusTooManyRequests] != 300-loginFreeFailures-1 {
		t.Errorf("300 wrong passwords: %v, want %d × 401 then 429", codes, loginFreeFailures+1)
	}
	lines := logLines(t, logs, "dashboard: login refused")
	if len(lines) != 1 || lines[0]["remote"] != "203.0.113.7" || lines[0]["refused"] != 1.0 || lines[0]["known_user"] != true {
		t.Errorf("log after the burst: %v, want one line for 203.0.113.7", lines)
	}
	if l := logs.String(); strings.Contains(l, "guess-") || strings.Contains(l, dashPass) {
		t.Errorf("the log shows a password:\n%s", l)
	}

	if rec := login(h, attacker, dashUser, dashPass); rec.Code != http.StatusTooManyRequests {
		t.Errorf("the right password while locked: %d, want 429", rec.Code)
	}
	if rec := login(h, "198.51.100.9:1234", dashUser, dashPass); rec.Code != http.StatusOK {
		t.Errorf("another address with the right password: %d, want 200", rec.Code)
	}
	for range 50 {
		if rec := login(h, "198.51.100.10:1234", "", ""); rec.Code != http.StatusUnauthorized {
			t.Fatalf("no credentials: %d, want 401", rec.Code)
		}
	}

	// The lock ends: one more wrong password is checked (401) and locks for twice as long.
	clock.add(loginFirstLock)
	if rec := login(h, attacker, "root", "wrong"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("after the first lock: %d, want 401", rec.Code)
	}
	rec := login(h, attacker, dashUser, dashPass)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("after a second lock: %d Retry-After %q, want 429 and 2", rec.Code, rec.Header().Get("Retry-After"))
	}
	// A minute on, the next refusal is logged with the refusals since the last line.
	clock.add(loginLogEvery)
	if rec := login(h, attacker, "root", "wrong"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a minute later: %d, want 401", rec.Code)
	}
	if lines := logLines(t, logs, "dashboard: login refused"); len(lines) != 2 || lines[1]["refused"] != float64(loginFreeFailures+2) ||
		lines[1]["held_back"] != float64(300-loginFreeFailures-1+2) || lines[1]["known_user"] != false || lines[1]["locked_for"] != "4s" {
		t.Errorf("log a minute later: %v, want a second line with the %d refusals and %d requests held back since the first, known_user false, locked_for 4s",
			lines, loginFreeFailures+2, 300-loginFreeFailures-1+2)
	}
	// After the lock the right password gets in and the address starts afresh.
	clock.add(loginMaxLock)
	if rec := login(h, attacker, dashUser, dashPass); rec.Code != http.StatusOK {
		t.Fatalf("the right password after the lock: %d, want 200", rec.Code)
	}
	if rec := login(h, attacker, dashUser, "wrong"); rec.Code != http.StatusUnauthorized {
		t.Errorf("a wrong password after a right login: %d, want 401 (a fresh count)", rec.Code)
	}

	// Memory stays bounded however many addresses fail; an IPv6 client's /64 is one address.
	for i := range loginMaxAddrs + 500 {
		login(h, fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), dashUser, "wrong")
	}
	for i := range 20 {
		login(h, fmt.Sprintf("[2001:db8::%x]:1", i), dashUser, "wrong")
	}
	g.mu.Lock()
	n, v6 := len(g.addrs), g.addrs["2001:db8::/64"]
	g.mu.Unlock()
	if n > loginMaxAddrs {
		t.Errorf("the guard remembers %d addresses, want at most %d", n, loginMaxAddrs)
	}
	if v6 == nil || v6.failures != loginFreeFailures+1 {
		t.Errorf("20 wrong passwords from one IPv6 /64: %+v, want one address locked after %d", v6, loginFreeFailures+1)
	}
}

// TestDashboardCrossOriginLogged: a refused cross-origin request is logged with its
// origin, and a flood of them stays within the log budget; a dashboard without a login
// refuses them too.
func TestDashboardCrossOriginLogged(t *testing.T) {
	t.Parallel()
	h, _, logs, _ := guardedHandler(t)
	for range 200 {
		req := httptest.NewRequest("POST", "/monitoring/api/queues/q:pause", nil)
		req.SetBasicAuth(dashUser, dashPass)
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "DASHBOARD_TRUSTED_ORIGINS") {
			t.Fatalf("cross-site POST: %d %q, want 403 naming DASHBOARD_TRUSTED_ORIGINS", rec.Code, rec.Body.String())
		}
	}
	// Without a login too: a dashboard on loopback is reachable from the browser's pages.
	open := httpConfig{Logins: newLoginGuard(zerolog.Nop()), CrossOrigin: http.NewCrossOriginProtection()}
	oh := open.protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	for _, site := range []string{"cross-site", "same-origin"} {
		req := httptest.NewRequest("DELETE", "/monitoring/api/queues/q", nil)
		req.Header.Set("Sec-Fetch-Site", site)
		rec := httptest.NewRecorder()
		oh.ServeHTTP(rec, req)
		if want := map[string]int{"cross-site": http.StatusForbidden, "same-origin": http.StatusOK}[site]; rec.Code != want {
			t.Errorf("DELETE with Sec-Fetch-Site %s and no login configured: %d, want %d", site, rec.Code, want)
		}
	}
	lines := logLines(t, logs, "dashboard: cross-origin request refused (if a reverse proxy serves the dashboard under another host name, list it in DASHBOARD_TRUSTED_ORIGINS)")
	if len(lines) == 0 || len(lines) > 20 || lines[0]["origin"] != "http://evil.example" {
		t.Errorf("%d log lines for 200 refused cross-origin requests (first %v), want 1 to 20 naming the origin", len(lines), lines[:min(len(lines), 1)])
	}
}

// TestIntakeRefusesBrowserLogin: the intake API is not behind the cross-origin check
// because it takes only a bearer token, which a browser never adds by itself: a
// cross-site POST or PUT carrying the browser's stored dashboard login is refused with
// 401 and changes nothing in Redis.
func TestIntakeRefusesBrowserLogin(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	api, err := intakeapi.New(intakeapi.Config{Redis: rdb, Tokens: []string{"erp-export-browser-test"}})
	if err != nil {
		t.Fatal(err)
	}
	h, closeUI := newHTTPHandler(httpConfig{RedisOpt: db.Opt(), Redis: rdb, DashboardUser: dashUser, DashboardPass: dashPass, ReadOnly: false, Intake: api})
	t.Cleanup(closeUI)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	before, err := rdb.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []struct{ method, path, body string }{
		{"POST", "/v1/keys", `{"actor":"customer","keys":["K1"]}`},
		{"PUT", "/v1/runs/browser/keys?actor=customer", "K1\n"},
	} {
		req, err := http.NewRequest(rt.method, srv.URL+rt.path, strings.NewReader(rt.body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(dashUser, dashPass)
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("cross-site %s %s with the dashboard's login: %d, want 401", rt.method, rt.path, resp.StatusCode)
		}
	}
	after, err := rdb.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("refused intake calls changed Redis: keys %v, then %v", before, after)
	}
}

// TestREADMELoginLimits: the README states the login limits the code applies.
func TestREADMELoginLimits(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Join(strings.Fields(string(raw)), " ")
	for _, want := range []string{
		fmt.Sprintf("(at least %d characters)", minDashboardPassword),
		fmt.Sprintf("After %d refused logins an address is locked out for 1 s, then 2 s, 4 s, … up to 15 min", loginFreeFailures),
		"at most one line per address a minute",
		"an hour without a refusal",
		fmt.Sprintf("at most %d addresses are remembered", loginMaxAddrs),
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not say %q", want)
		}
	}
	if loginFirstLock != time.Second || loginMaxLock != 15*time.Minute || loginLogEvery != time.Minute || loginForget != time.Hour {
		t.Error("the login limits changed: update the README's Metrics and dashboard section, then this test")
	}
}
