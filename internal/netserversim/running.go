package netserversim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// Running is a Server listening on a real TCP port, like httptest.Server. Its embedded
// *Server gives direct access to faults, tickets and counts.
type Running struct {
	*Server

	// URL is the tenant base URL without a trailing slash, e.g.
	// "http://127.0.0.1:41234/Cust12345"; a client appends "/Remote/Services88/ErpSync.svc".
	URL string
	// RootURL is "http://host:port", where the Online login service, the state API and
	// /_sim/ live: the environment (EnvironmentURL).
	RootURL string
	// HostURLs are the tenant hosts' base URLs ("http://host:port"), one per Config.Hosts;
	// URL starts on HostURLs[0]. Nil when Config.Hosts is 0.
	HostURLs []string

	hs       []*http.Server
	done     chan struct{}
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	once     sync.Once
}

// Start listens on cfg.Addr (default "127.0.0.1:0") and serves New(cfg) until Close.
func Start(cfg Config) (*Running, error) {
	srv, err := New(cfg)
	if err != nil {
		return nil, err
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("netserversim: listen %s: %w", addr, err)
	}
	lns := []net.Listener{ln}
	for range srv.cfg.Hosts {
		// Each tenant host on the environment's interface, on a port of its own.
		h, err := net.Listen("tcp", net.JoinHostPort(ln.Addr().(*net.TCPAddr).IP.String(), "0"))
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("netserversim: listen for a tenant host: %w", err)
		}
		lns = append(lns, h)
	}
	root := "http://" + ln.Addr().String()
	rs := &Running{Server: srv, RootURL: root, URL: root, done: make(chan struct{})}
	farm := make([]string, 0, srv.cfg.Hosts)
	for _, l := range lns[1:] {
		farm = append(farm, l.Addr().String())
		rs.HostURLs = append(rs.HostURLs, "http://"+l.Addr().String())
	}
	srv.hosts.attach(ln.Addr().String(), farm)
	if len(rs.HostURLs) > 0 {
		rs.URL = rs.HostURLs[0]
	}
	if t := srv.cfg.tenantName(); t != "" {
		rs.URL += "/" + t
	}
	var wg sync.WaitGroup
	for _, l := range lns {
		hs := &http.Server{Handler: http.HandlerFunc(rs.serve)}
		rs.hs = append(rs.hs, hs)
		wg.Go(func() { _ = hs.Serve(l) }) // returns http.ErrServerClosed after Close/Shutdown
	}
	go func() {
		wg.Wait()
		close(rs.done)
	}()
	return rs, nil
}

// MustStart is Start that panics on error, for tests (as httptest.NewServer does).
func MustStart(cfg Config) *Running {
	rs, err := Start(cfg)
	if err != nil {
		panic(err)
	}
	return rs
}

func (rs *Running) serve(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	rs.inflight.Add(1)
	rs.mu.Unlock()
	defer rs.inflight.Done()
	rs.Server.ServeHTTP(w, r)
}

// ErpSyncURL is URL + "/Remote/Services88/ErpSync.svc".
// RESTURL is the WebAPI ForceResyncExternal endpoint.
func (rs *Running) RESTURL() string { return rs.URL + "/api/v1/Agents/ErpSync/ForceResyncExternal" }

func (rs *Running) ErpSyncURL() string { return rs.URL + "/Remote/Services88/ErpSync.svc" }

// SoPrincipalURL is URL + "/Remote/Services88/SoPrincipal.svc".
func (rs *Running) SoPrincipalURL() string { return rs.URL + "/Remote/Services88/SoPrincipal.svc" }

// LoginURL is the Online system-user login: RootURL + "/Login/api/PartnerSystemUser/Authenticate".
func (rs *Running) LoginURL() string { return rs.RootURL + "/Login/api/PartnerSystemUser/Authenticate" }

// JWKSURL is RootURL + "/login/.well-known/jwks".
func (rs *Running) JWKSURL() string { return rs.RootURL + "/login/.well-known/jwks" }

// Close stops listening, closes every connection (cancelling handlers that wait on latency or
// slow bodies) and returns once all handlers have finished. It is idempotent.
func (rs *Running) Close() {
	rs.once.Do(func() {
		rs.mu.Lock()
		rs.closed = true
		rs.mu.Unlock()
		for _, hs := range rs.hs {
			_ = hs.Close()
		}
		rs.inflight.Wait()
		<-rs.done
	})
}

// Shutdown stops accepting, waits until in-flight requests finish or ctx ends, then Closes.
func (rs *Running) Shutdown(ctx context.Context) error {
	var errs []error
	for _, hs := range rs.hs {
		errs = append(errs, hs.Shutdown(ctx))
	}
	err := errors.Join(errs...)
	rs.Close()
	if err != nil && errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// StateURL is the state API for the tenant: RootURL + "/api/state/" + tenant.
func (rs *Running) StateURL() string { return rs.RootURL + "/api/state/" + rs.cfg.tenantName() }

// Notify POSTs a signed state-change notification (see Server.Notification) as JSON to url,
// as SuperOffice does to an app's "Customer state change" URL, and returns the answer's
// status code.
func (rs *Running) Notify(ctx context.Context, url string, change ChangeType) (int, error) {
	n, err := rs.Notification(change)
	if err != nil {
		return 0, err
	}
	return PostNotification(ctx, url, n)
}

// PostNotification POSTs n as JSON to url and returns the answer's status code; tests use it
// to send forged or altered notifications.
func PostNotification(ctx context.Context, url string, n Notification) (int, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("netserversim: notify %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
