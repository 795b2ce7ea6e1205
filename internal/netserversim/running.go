package netserversim

import (
	"context"
	"errors"
	"fmt"
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
	// RootURL is "http://host:port", where the Online login service and /_sim/ live.
	RootURL string

	hs       *http.Server
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
	root := "http://" + ln.Addr().String()
	rs := &Running{Server: srv, RootURL: root, URL: root, done: make(chan struct{})}
	if t := srv.cfg.tenantName(); t != "" {
		rs.URL = root + "/" + t
	}
	rs.hs = &http.Server{Handler: http.HandlerFunc(rs.serve)}
	go func() {
		defer close(rs.done)
		_ = rs.hs.Serve(ln) // returns http.ErrServerClosed after Close/Shutdown
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
		_ = rs.hs.Close()
		rs.inflight.Wait()
		<-rs.done
	})
}

// Shutdown stops accepting, waits until in-flight requests finish or ctx ends, then Closes.
func (rs *Running) Shutdown(ctx context.Context) error {
	err := rs.hs.Shutdown(ctx)
	rs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
