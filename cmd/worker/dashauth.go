package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// The dashboard's login: basic auth with a password of a minimum length, refused logins
// logged and slowed per client address, and every request that could change something
// refused when a browser sends it from another site.

// minDashboardPassword is the shortest DASHBOARD_PASSWORD the worker accepts, in characters.
const minDashboardPassword = 12

// Login throttling. An address's first loginFreeFailures refused logins cost nothing; each
// further one locks the address out for twice as long as the last, from loginFirstLock up
// to loginMaxLock, during which every request from it is answered 429 with Retry-After
// without a look at its credentials. A right login, or loginForget without a refusal,
// starts the address afresh.
const (
	loginFreeFailures = 5
	loginFirstLock    = time.Second
	loginMaxLock      = 15 * time.Minute
	loginForget       = time.Hour
	// loginMaxAddrs bounds the addresses remembered: when full, the forgotten ones go,
	// then the one whose last refusal is oldest.
	loginMaxAddrs = 4096
	// loginLogEvery: at most one "login refused" line per address per interval, carrying
	// the count of refusals since the previous line.
	loginLogEvery = time.Minute
)

// checkDashboardPassword is the one rule for DASHBOARD_PASSWORD (empty: no login).
func checkDashboardPassword(pass string) error {
	if n := utf8.RuneCountInString(pass); pass != "" && n < minDashboardPassword {
		return fmt.Errorf("DASHBOARD_PASSWORD is too short (%d characters): want at least %d, e.g. `openssl rand -base64 18`", n, minDashboardPassword)
	}
	return nil
}

// parseTrustedOrigins builds the cross-origin check of the dashboard and the runs page from
// DASHBOARD_TRUSTED_ORIGINS: comma-separated origins (scheme://host[:port]) whose requests
// are accepted although their host differs from the request's Host, as when a reverse
// proxy rewrites Host.
func parseTrustedOrigins(list string) (*http.CrossOriginProtection, error) {
	cop := http.NewCrossOriginProtection()
	for o := range strings.SplitSeq(list, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("DASHBOARD_TRUSTED_ORIGINS: %q is not an origin: want scheme://host[:port] as the browser shows it, e.g. https://ops.example.com", o)
		}
	}
	return cop, nil
}

// protect puts h behind the dashboard's login when DASHBOARD_USER and DASHBOARD_PASSWORD
// are set, and refuses its unsafe requests from another site's pages whether or not: a
// browser sends its stored login with them, and reaches a loopback listener too. The login
// comes first, so a refused login is counted whatever its origin.
func (cfg httpConfig) protect(h http.Handler) http.Handler {
	deny := cfg.Logins.crossOriginRefusal()
	checked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.CrossOrigin.Check(r) != nil {
			deny.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	if cfg.DashboardUser == "" && cfg.DashboardPass == "" {
		return checked
	}
	return basicAuth(checked, cfg.DashboardUser, cfg.DashboardPass, cfg.Logins)
}

// crossOriginRefusal answers a refused cross-origin request with 403 and logs it, within
// the guard's line budget (a hostile page can send many).
func (g *loginGuard) crossOriginRefusal() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.lines.AllowN(g.now(), 1) {
			g.log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
				Str("origin", r.Header.Get("Origin")).Str("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")).
				Msg("dashboard: cross-origin request refused (if a reverse proxy serves the dashboard under another host name, list it in DASHBOARD_TRUSTED_ORIGINS)")
		}
		http.Error(w, "cross-origin request refused: the dashboard only accepts changes from its own pages (behind a proxy that rewrites Host, list the address you open in DASHBOARD_TRUSTED_ORIGINS)", http.StatusForbidden)
	})
}

// loginGuard counts refused logins per client address, locks out an address that keeps
// failing and logs the refusals without flooding the log. It is per process: every worker
// and `worker dashboard` keeps its own, so N processes behind one name allow N times the
// attempts, which the doubling locks make a small constant; a guard in Redis would cost a
// round trip per request and leave the login unguarded when Redis is down. Safe for
// concurrent use.
type loginGuard struct {
	log  zerolog.Logger
	now  func() time.Time
	free int // refusals before the first lock

	mu    sync.Mutex
	addrs map[string]*loginAddr
	lines *rate.Limiter // log lines of all addresses together (safe for concurrent use itself)
}

type loginAddr struct {
	failures int       // refusals since the last right login
	last     time.Time // the last refusal
	until    time.Time // locked out until
	unlogged int       // refusals not in a log line yet
	held     int       // requests answered 429 not in a log line yet
	logged   time.Time // the last log line
}

func newLoginGuard(log zerolog.Logger) *loginGuard {
	return &loginGuard{
		log: log, now: time.Now, free: loginFreeFailures,
		addrs: map[string]*loginAddr{},
		lines: rate.NewLimiter(rate.Every(time.Second), 20),
	}
}

// clientKey is the address a request's refusals are counted under: its IP, or for IPv6 its
// /64, which one client commonly holds whole. Behind a reverse proxy that is the proxy's.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// lockedFor is how long key is still locked out, counting the request held back; zero
// when it is not locked.
func (g *loginGuard) lockedFor(key string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.addrs[key]
	if a == nil {
		return 0
	}
	wait := a.until.Sub(g.now())
	if wait <= 0 {
		return 0
	}
	a.held++
	return wait
}

// accepted forgets key's refusals.
func (g *loginGuard) accepted(key string) {
	g.mu.Lock()
	delete(g.addrs, key)
	g.mu.Unlock()
}

// refused counts a refused login from key, locks key out once it has failed more than the
// free refusals, and logs (at most once per loginLogEvery per address) the refusals and
// the requests held back by a lock since the last line. Neither the password nor the user
// name tried is logged (people type one into the other); known_user says whether the user
// was right.
func (g *loginGuard) refused(key string, knownUser bool, r *http.Request) {
	g.mu.Lock()
	now := g.now()
	a := g.addrs[key]
	if a != nil && now.Sub(a.last) >= loginForget && !now.Before(a.until) {
		a = nil // forgotten: start afresh
	}
	if a == nil {
		g.makeRoom(now)
		a = &loginAddr{}
		g.addrs[key] = a
	}
	a.failures++
	a.last = now
	a.unlogged++
	var lock time.Duration
	if over := a.failures - g.free; over > 0 {
		lock = loginMaxLock
		if over <= 20 {
			lock = min(loginFirstLock<<(over-1), loginMaxLock)
		}
		a.until = now.Add(lock)
	}
	logIt := (a.logged.IsZero() || now.Sub(a.logged) >= loginLogEvery) && g.lines.AllowN(now, 1)
	n, held := a.unlogged, a.held
	if logIt {
		a.logged, a.unlogged, a.held = now, 0, 0
	}
	g.mu.Unlock()
	if logIt {
		ev := g.log.Warn().Str("remote", key).Int("refused", n).Int("held_back", held).Bool("known_user", knownUser).
			Str("method", r.Method).Str("path", r.URL.Path)
		if lock > 0 {
			ev = ev.Str("locked_for", lock.String())
		}
		ev.Msg("dashboard: login refused")
	}
}

// makeRoom keeps the map under loginMaxAddrs; g.mu is held.
func (g *loginGuard) makeRoom(now time.Time) {
	if len(g.addrs) < loginMaxAddrs {
		return
	}
	oldest, oldestKey := now, ""
	for k, a := range g.addrs {
		if now.Sub(a.last) >= loginForget && !now.Before(a.until) {
			delete(g.addrs, k)
			continue
		}
		if !a.last.After(oldest) {
			oldest, oldestKey = a.last, k
		}
	}
	if len(g.addrs) >= loginMaxAddrs {
		delete(g.addrs, oldestKey)
	}
}

// basicAuth asks for user and pass. Both are always compared, as SHA-256 digests of equal
// length, so the time a refusal takes tells nothing about which one was wrong or how long
// the right ones are. Refusals go to g; a request without credentials (a browser before its
// login prompt) is no refusal.
func basicAuth(next http.Handler, user, pass string, g *loginGuard) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := clientKey(r)
		if wait := g.lockedFor(key); wait > 0 {
			secs := int((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			http.Error(w, fmt.Sprintf("too many refused logins from your address: try again in %d s", secs), http.StatusTooManyRequests)
			return
		}
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		match := userOK & subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || match != 1 {
			if ok {
				g.refused(key, userOK == 1, r)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="erpresync dashboard"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		g.accepted(key)
		next.ServeHTTP(w, r)
	})
}
