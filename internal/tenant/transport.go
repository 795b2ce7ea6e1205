package tenant

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// idleTransport is a tenant's own HTTP transport (no connection is shared with another
// tenant), made at its first request and let go by release when no request is in flight:
// an idle tenant then holds no *http.Transport, whose bookkeeping (the maps of waiting and
// idle connections, kept once a request has been made) is about 2 KiB; a thousand idle
// tenants would hold 2 MiB for nothing. A request is in flight from RoundTrip until its
// response body is closed (or read to its end), or RoundTrip's error. Safe for concurrent
// use.
type idleTransport struct {
	timeout time.Duration // the response-header timeout

	mu       sync.Mutex
	tr       *http.Transport // nil until the first request, and after release
	inFlight int
}

// RoundTrip sends r through the transport, made now if there is none.
func (l *idleTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	if l.tr == nil {
		l.tr = newTransport(l.timeout)
	}
	tr := l.tr
	l.inFlight++
	l.mu.Unlock()
	resp, err := tr.RoundTrip(r)
	if err != nil || resp.Body == nil {
		l.done()
		return resp, err
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: l.done}
	return resp, nil
}

// done ends one request in flight.
func (l *idleTransport) done() {
	l.mu.Lock()
	l.inFlight--
	l.mu.Unlock()
}

// release closes the transport's idle connections and, when no request is in flight, lets
// the transport go (the next request makes a new one). A connection that becomes idle after
// this is closed too (http.Transport.CloseIdleConnections).
func (l *idleTransport) release() {
	l.mu.Lock()
	tr := l.tr
	if l.inFlight == 0 {
		l.tr = nil
	}
	l.mu.Unlock()
	if tr != nil {
		tr.CloseIdleConnections()
	}
}

// doneBody is a response body that ends its request (done, once) when it is closed or read
// to its end.
type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *doneBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.done)
	}
	return n, err
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// newTransport is the transport under a tenant's client: keep-alive connections sized for
// the worker's concurrency, timeout bounding the wait for the response headers.
func newTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}
}
