package tenant

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/testwait"
)

// TestCheckLoginsAtMostParallel: the start-up login checks of many tenants go out at most
// parallel at once, every tenant's is tried, and once they are done no tenant holds an idle
// connection.
func TestCheckLoginsAtMostParallel(t *testing.T) {
	t.Parallel()
	sim, err := netserversim.New(netserversim.Config{Users: map[string]string{"ERPSYNC": testPassword}, AnyTenant: true})
	if err != nil {
		t.Fatal(err)
	}
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(sim)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	const n, parallel = 12, 3
	var file strings.Builder
	file.WriteString("tenants:\n")
	for i := range n {
		fmt.Fprintf(&file, "  - id: t%d\n    url: %s/t%d\n    auth: {username: ERPSYNC, password_env: ACME_PASSWORD}\n", i, srv.URL, i)
	}
	specs, err := Parse("tenants.yaml", []byte(file.String()), testEnv(fileEnv))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	inFlight, peak := 0, 0
	wrap := func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			inFlight++
			peak = max(peak, inFlight)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // a login that takes a moment, so that they overlap
			defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
			return rt.RoundTrip(r)
		})
	}
	ts := make([]*Tenant, n)
	for i, s := range specs {
		if ts[i], err = Build(s, BuildOptions{Wrap: wrap}); err != nil {
			t.Fatal(err)
		}
	}
	var logs strings.Builder
	var logMu sync.Mutex
	log := zerolog.New(zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	})))
	stop := CheckLogins(ts, parallel, time.Minute, log)
	oks := func() int { logMu.Lock(); defer logMu.Unlock(); return strings.Count(logs.String(), `"login ok"`) }
	// The log lines, not the simulator's count: a login the simulator has counted may not
	// have returned yet, and stop would cancel it.
	testwait.Until(t, "every tenant's login logged", 30*time.Second, func() bool { return oks() >= n })
	stop()
	if peak > parallel {
		t.Errorf("%d logins at once, want at most %d", peak, parallel)
	}
	if ok, logins := oks(), sim.Counts().Logins.PasswordOK; ok != n || logins != n {
		t.Errorf("%d \"login ok\" lines and %d logins, want %d each", ok, logins, n)
	}
	testwait.Until(t, "no connection left open", 10*time.Second, func() bool { return open.Load() == 0 })
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
