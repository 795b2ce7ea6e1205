// Package httpcall is the HTTP exchange every SuperOffice request goes through: the SOAP
// and REST transports and the logins of package auth. One POST, no redirects followed, a
// capped read into a pooled buffer, transport failures mapped to *erpsync.TransportError
// and unexpected replies to *erpsync.HTTPError (with Retry-After and a truncated, redacted
// body).
//
// Every request is sent with the *http.Client the caller configured, so a RoundTripper
// wrapped around its Transport (a rate limiter, a concurrency cap, metrics) sees each
// request to the tenant: calls, logins and the repeat after a ticket refresh alike.
package httpcall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// DefaultMaxResponseBytes is the reply size cap when a Client is made with maxBytes zero.
const DefaultMaxResponseBytes = 4 << 20

// UserAgent is sent with every request.
const UserAgent = "erpresync/1"

// Client sends requests. It is safe for concurrent use.
type Client struct {
	hc       *http.Client
	maxBytes int64
	now      func() time.Time
}

// New returns a Client that sends with hc and reads at most maxBytes of a reply (zero
// means DefaultMaxResponseBytes). A nil hc means DefaultHTTPClient. When hc sets no
// CheckRedirect, a copy that shares hc's Transport (and its connection pool) is used with
// redirects disabled: following one would turn the POST into a GET (301, 302, 303) or
// resend the ticket and application token to another host (307, 308); the redirect is
// returned as an *erpsync.HTTPError instead.
func New(hc *http.Client, maxBytes int64) *Client {
	switch {
	case hc == nil:
		hc = DefaultHTTPClient()
	case hc.CheckRedirect == nil:
		cp := *hc
		cp.CheckRedirect = noRedirects
		hc = &cp
	}
	if maxBytes == 0 {
		maxBytes = DefaultMaxResponseBytes
	}
	return &Client{hc: hc, maxBytes: maxBytes, now: time.Now}
}

// SetClock replaces the clock that Retry-After dates are measured against (for tests).
func (c *Client) SetClock(now func() time.Time) { c.now = now }

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// DefaultHTTPClient is the client used when none is configured: a 10 s connect timeout, a
// 10 s TLS handshake timeout, a 2 min response header timeout, a 3 min overall timeout,
// and no redirects followed.
func DefaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       3 * time.Minute,
		CheckRedirect: noRedirects,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute,
			ExpectContinueTimeout: time.Second,
		},
	}
}

// Reply is an HTTP reply read into a pooled buffer; Release returns the buffer.
type Reply struct {
	Status int
	Header http.Header
	body   *bytes.Buffer
	now    time.Time
}

var replyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Body returns the reply body; it is valid until Release.
func (r *Reply) Body() []byte { return r.body.Bytes() }

// OK reports whether the status is 2xx.
func (r *Reply) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Release returns the body buffer to the pool. The Reply must not be used afterwards.
func (r *Reply) Release() {
	if r.body != nil && r.body.Cap() <= 1<<20 {
		r.body.Reset()
		replyPool.Put(r.body)
	}
	r.body = nil
}

// Post sends one POST of payload to url with the given headers (User-Agent is added) and
// reads the reply. Errors are an *erpsync.TransportError, the context's cancellation,
// erpsync.ErrResponseTooLarge (wrapped, naming the cap) or a request-building error; a
// reply of any status is returned as a Reply.
func (c *Client) Post(ctx context.Context, url string, header http.Header, payload []byte) (*Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("User-Agent", UserAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, TransportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > c.maxBytes {
		return nil, fmt.Errorf("reply of %d bytes exceeds the %d-byte cap: %w", resp.ContentLength, c.maxBytes, erpsync.ErrResponseTooLarge)
	}
	buf := replyPool.Get().(*bytes.Buffer)
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	rep := &Reply{Status: resp.StatusCode, Header: resp.Header, body: buf, now: c.now()}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		rep.Release()
		return nil, TransportError(ctx, err)
	}
	if n > c.maxBytes {
		rep.Release()
		return nil, fmt.Errorf("reply exceeds the %d-byte cap: %w", c.maxBytes, erpsync.ErrResponseTooLarge)
	}
	return rep, nil
}

// TransportError wraps a failed exchange. A cancelled context is returned as itself (the
// caller gave up; nothing is wrong with the transport); a deadline is a timeout.
func TransportError(ctx context.Context, err error) error {
	switch ctxErr := ctx.Err(); {
	case errors.Is(ctxErr, context.Canceled):
		return ctxErr
	case ctxErr != nil && !errors.Is(err, ctxErr):
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	return &erpsync.TransportError{Err: err}
}

// Classify turns a parse result into the error callers see, given the reply's status. An
// answer the parser understood (a SOAP fault, a NetServer exception, a REST error object:
// any error that is not an *erpsync.ProtocolError) wins whatever the status, with its text
// redacted; a reply that could not be parsed is an *erpsync.HTTPError for a non-2xx status
// and the *erpsync.ProtocolError for a 2xx one; a parsed reply with a non-2xx status is an
// *erpsync.HTTPError.
func (r *Reply) Classify(parseErr error, red Redactor) error {
	if parseErr == nil {
		if r.OK() {
			return nil
		}
		return r.HTTPError(red)
	}
	var pe *erpsync.ProtocolError
	if !errors.As(parseErr, &pe) {
		red.Apply(parseErr)
		return parseErr
	}
	if !r.OK() {
		return r.HTTPError(red)
	}
	return parseErr
}

// HTTPError describes the reply as an *erpsync.HTTPError: its status, content type,
// Retry-After and the start of its body (erpsync.MaxErrorBody bytes), redacted.
func (r *Reply) HTTPError(red Redactor) *erpsync.HTTPError {
	retryAfter, _ := erpsync.RetryAfter(r.Header.Get("Retry-After"), r.now)
	return &erpsync.HTTPError{
		StatusCode:  r.Status,
		ContentType: r.Header.Get("Content-Type"),
		Body:        red.S(string(erpsync.Cut(r.body.Bytes(), erpsync.MaxErrorBody))),
		RetryAfter:  retryAfter,
	}
}

// ParseHTTPURL parses s and checks that it is an absolute http(s) URL with a host.
func ParseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("must start with https:// or http://")
	}
	if u.Host == "" {
		return nil, errors.New("has no host")
	}
	return u, nil
}

// ValidateBaseURL checks that s is an absolute http(s) tenant base URL without a query,
// a fragment or a service path.
func ValidateBaseURL(s string) error {
	u, err := ParseHTTPURL(s)
	if err != nil {
		return err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not have a query or fragment")
	}
	p := strings.ToLower(u.Path)
	if strings.Contains(p, "/remote/") || strings.HasSuffix(p, ".svc") || strings.Contains(p, "/api/") {
		return errors.New("must be the tenant base (such as https://sod.superoffice.com/Cust12345), without /Remote/Services88/… or /api/v1/…")
	}
	return nil
}

// JoinURL joins the tenant base and a service path.
func JoinURL(base, path string) string {
	return strings.TrimRight(base, "/") + path
}

// Misdirected explains a 421 Misdirected Request from SuperOffice Online ("Wrong subdomain
// used to access tenant"): tenants move between numbered hosts (sod2, online3, …), and a
// call to the old host is refused. The error names the tenant and the host, says where the
// current host is found (the tenant state API), and wraps he.
func Misdirected(baseURL string, he *erpsync.HTTPError) error {
	tenant, host, state := "", "", "SuperOffice's tenant state API"
	if u, err := url.Parse(baseURL); err == nil {
		host = u.Host
		tenant = strings.Trim(u.Path, "/")
		if i := strings.LastIndexByte(tenant, '/'); i >= 0 {
			tenant = tenant[i+1:]
		}
		if env, ok := strings.CutSuffix(u.Hostname(), ".superoffice.com"); ok {
			env = strings.TrimRight(env, "0123456789")
			state += " (GET https://" + env + ".superoffice.com/api/state/" + tenant + ")"
		}
	}
	return fmt.Errorf("tenant %s is no longer served by host %s (%w): the tenant moved to another host; %s names the current one; correct the tenant base URL (SUPEROFFICE_URL)",
		tenant, host, he, state)
}

// IsMisdirected reports whether err is an *erpsync.HTTPError with status 421.
func IsMisdirected(err error) (*erpsync.HTTPError, bool) {
	var he *erpsync.HTTPError
	if errors.As(err, &he) && he.StatusCode == http.StatusMisdirectedRequest {
		return he, true
	}
	return nil, false
}

// Attempt is one ForceResyncExternal call with the given ticket.
type Attempt func(ctx context.Context, ticket string) (*erpsync.Result, error)

// ForceResync is what the SOAP and REST transports share of a ForceResyncExternal call:
// the request is checked by erpsync.ValidateRequest and the context for cancellation, and
// nothing is sent when either fails; then withTicket (auth.Session.Call, which repeats a
// call once with a fresh ticket when the ticket is rejected) makes the attempt. Errors come
// back unwrapped, for the transport to name itself.
func ForceResync(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string, all bool,
	withTicket func(context.Context, func(context.Context, string) (*erpsync.Result, error)) (*erpsync.Result, error), attempt Attempt) (*erpsync.Result, error) {
	if err := erpsync.ValidateRequest(erpConnectionID, actor, keys, all); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return withTicket(ctx, attempt)
}
