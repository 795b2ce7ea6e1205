package soap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/erpresync/erpresync/erpsync"
)

// DefaultMaxResponseBytes is the reply size cap when Config.MaxResponseBytes is zero.
const DefaultMaxResponseBytes = 4 << 20

const userAgent = "erpresync-soap/1"

// Config configures a Client. Only BaseURL and Auth are required.
type Config struct {
	// BaseURL is the tenant base URL, such as https://sod.superoffice.com/Cust12345 (Online)
	// or https://crm.example.com/SuperOffice (on-site). The client appends
	// /Remote/Services88/ErpSync.svc. The zero value is rejected.
	BaseURL string

	// AppToken is the application token (the app's client secret on Online), sent in the
	// ApplicationToken SOAP header. The zero value leaves the header out, which on-site
	// installations accept. It is never printed.
	AppToken string

	// Auth supplies tickets: StaticTicket, PasswordAuth, SystemUserAuth or your own
	// TicketSource. The zero value (nil) is rejected.
	Auth TicketSource

	// HTTPClient sends the requests. The zero value (nil) means a client of its own with a
	// 10 s connect timeout, a 10 s TLS handshake timeout, a 2 min response header timeout
	// and a 3 min overall timeout; callers bound each call further with its context.
	// Redirects are not followed unless HTTPClient sets its own CheckRedirect: a redirect is
	// returned as an *erpsync.HTTPError, since following it would turn the POST into a GET (301,
	// 302, 303) or resend the ticket and application token to the new location (307, 308).
	HTTPClient *http.Client

	// SOAP12 sends SOAP 1.2 envelopes (the namespace SuperOffice's generated examples use)
	// with Content-Type application/soap+xml; charset=utf-8; action="…". The zero value,
	// false, sends SOAP 1.1 with text/xml and a SOAPAction header, which is what NetServer's
	// basicHttpBinding endpoints accept; set it only for an endpoint known to speak 1.2.
	SOAP12 bool

	// MaxResponseBytes caps how much of a reply is read. The zero value means
	// DefaultMaxResponseBytes (4 MiB); a negative value is rejected. A longer reply fails
	// with erpsync.ErrResponseTooLarge.
	MaxResponseBytes int64

	// TicketErrorPattern is matched against ExceptionInfo's ExceptionType and Message to
	// decide that the ticket is invalid or expired. The zero value (nil) means
	// DefaultTicketErrorExpr.
	TicketErrorPattern *regexp.Regexp
}

func (c Config) validate() error {
	if c.BaseURL == "" {
		return errors.New("soap: Config.BaseURL is required: the tenant base URL, such as https://sod.superoffice.com/Cust12345")
	}
	if err := validateBaseURL(c.BaseURL); err != nil {
		return fmt.Errorf("soap: Config.BaseURL: %w", err)
	}
	if c.Auth == nil {
		return errors.New("soap: Config.Auth is required: use NewStaticTicket, NewPasswordAuth or NewSystemUserAuth")
	}
	if c.MaxResponseBytes < 0 {
		return errors.New("soap: Config.MaxResponseBytes must not be negative (0 means 4 MiB)")
	}
	if c.AppToken != "" && !validXMLText(c.AppToken) {
		return errors.New("soap: Config.AppToken contains characters XML cannot carry")
	}
	return nil
}

// validateBaseURL checks that s is an absolute http(s) URL without a service path.
func validateBaseURL(s string) error {
	u, err := parseHTTPURL(s)
	if err != nil {
		return err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not have a query or fragment")
	}
	if strings.Contains(strings.ToLower(u.Path), "/remote/") || strings.HasSuffix(strings.ToLower(u.Path), ".svc") {
		return errors.New("must be the tenant base (such as https://sod.superoffice.com/Cust12345), without /Remote/Services88/…")
	}
	return nil
}

// parseHTTPURL parses s and checks that it is an absolute http(s) URL with a host.
func parseHTTPURL(s string) (*url.URL, error) {
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

// String prints the configuration with secrets redacted.
func (c Config) String() string {
	return fmt.Sprintf("soap.Config{BaseURL:%q, AppToken:%s, Auth:%s, HTTPClient:%s, SOAP12:%t, MaxResponseBytes:%d, TicketErrorPattern:%s}",
		redactURL(c.BaseURL), redactedIfSet(c.AppToken), authString(c.Auth), setOrNil(c.HTTPClient != nil), c.SOAP12, c.MaxResponseBytes, patternString(c.TicketErrorPattern))
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Client calls NetServer's ErpSync service. It is safe for concurrent use; create one per
// tenant and share it.
type Client struct {
	erpSyncURL string
	appToken   string
	auth       TicketSource
	soap12     bool
	ticketRe   *regexp.Regexp
	http       *caller

	// After a freshly fetched ticket is rejected too, the problem is not the ticket (an
	// Online app not granted the ErpSync agent answers with the same security exception):
	// further ticket errors are returned without a new login until suspectUntil, a wait
	// that doubles from minSuspect up to maxSuspect with each rejected fresh ticket and is
	// cleared by any accepted call. distrusted is the fresh ticket that set the current
	// wait, so that the callers who all retried with it double the wait once, not once each.
	mu           sync.Mutex
	suspectUntil time.Time
	suspectFor   time.Duration
	distrusted   string
	now          func() time.Time
}

// The bounds of the pause in re-logins after a fresh ticket was rejected too: SuperOffice
// asks for no more than about one new system-user ticket an hour.
const (
	minSuspect = time.Minute
	maxSuspect = time.Hour
)

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	re := cfg.TicketErrorPattern
	if re == nil {
		re = defaultTicketErrorPattern
	}
	return &Client{
		erpSyncURL: serviceURL(cfg.BaseURL, pathErpSync),
		appToken:   cfg.AppToken,
		auth:       cfg.Auth,
		soap12:     cfg.SOAP12,
		ticketRe:   re,
		http:       newCaller(cfg.HTTPClient, cfg.MaxResponseBytes),
		now:        time.Now,
	}, nil
}

// String prints the endpoint, never secrets.
func (c *Client) String() string {
	return fmt.Sprintf("soap.Client{URL:%q, SOAP12:%t, Auth:%s}", redactURL(c.erpSyncURL), c.soap12, authString(c.auth))
}

// GoString is String.
func (c *Client) GoString() string { return c.String() }

const opForceResyncExternal = "ErpSync.ForceResyncExternal"

// ForceResyncExternal asks NetServer to resync the records that the given ERP external
// keys name on connection erpConnectionID, and returns its PluginResponse. A Result with
// IsOk=false is a business failure, returned with a nil error.
//
// keys must not be empty (ErrEmptyKeys: NetServer would resync everything; use
// ForceResyncAll) and each must pass erpsync.ValidateKey (else a *erpsync.KeyError naming its index);
// actor must be Valid. Nothing is sent when validation fails.
//
// The call is one attempt, except that when NetServer says the ticket is invalid or
// expired (see Config.TicketErrorPattern) the ticket is invalidated, a fresh one fetched
// and the call retried once; if that fails too, the *erpsync.ExceptionError is returned with
// TicketRejected set, and later ticket errors are returned without a new login for a pause
// (1 min, doubling up to 1 h with each further rejected fresh ticket, cleared by any
// accepted call), since the cause is then not the ticket. Errors are wrapped
// *erpsync.ExceptionError, *erpsync.FaultError, *erpsync.HTTPError, *erpsync.TransportError, *erpsync.ProtocolError,
// erpsync.ErrResponseTooLarge, the ticket source's error, or the context's error. The erpsync.Result is
// never shared and may be modified by the caller.
func (c *Client) ForceResyncExternal(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	if len(keys) == 0 {
		return nil, wrapOp(opForceResyncExternal, erpsync.ErrEmptyKeys)
	}
	for i, k := range keys {
		if err := erpsync.ValidateKey(k); err != nil {
			ke := err.(*erpsync.KeyError)
			ke.Index = i
			return nil, wrapOp(opForceResyncExternal, ke)
		}
	}
	return c.forceResync(ctx, erpConnectionID, actor, keys)
}

// ForceResyncAll sends ForceResyncExternal with an explicitly empty ExternalKeys array,
// which NetServer reads as "resync everything" for the connection and actor type. It is
// otherwise ForceResyncExternal.
func (c *Client) ForceResyncAll(ctx context.Context, erpConnectionID int, actor erpsync.ActorType) (*erpsync.Result, error) {
	return c.forceResync(ctx, erpConnectionID, actor, nil)
}

func (c *Client) forceResync(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	if erpConnectionID < 0 || int64(erpConnectionID) > 1<<31-1 {
		return nil, wrapOp(opForceResyncExternal, fmt.Errorf("ERP connection id %d out of range (0 to 2147483647)", erpConnectionID))
	}
	if err := actor.Validate(); err != nil {
		return nil, wrapOp(opForceResyncExternal, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrapOp(opForceResyncExternal, err)
	}
	ticket, err := c.ticket(ctx)
	if err != nil {
		return nil, wrapOp(opForceResyncExternal, err)
	}
	resp, err := c.forceResyncOnce(ctx, ticket, erpConnectionID, actor, keys)
	if !erpsync.IsTicketError(err) {
		if err == nil {
			c.trusted()
		}
		return resp, err
	}
	if c.suspect() {
		return nil, err
	}
	c.auth.Invalidate(ticket)
	fresh, terr := c.ticket(ctx)
	if terr != nil {
		return nil, wrapOp(opForceResyncExternal, terr)
	}
	if fresh == ticket {
		// The source cannot renew (StaticTicket) or its login handed back the ticket just
		// rejected: no point in resending, and no point in logging in again for every call.
		c.distrust(fresh)
		return nil, err
	}
	resp, err = c.forceResyncOnce(ctx, fresh, erpConnectionID, actor, keys)
	switch {
	case err == nil:
		c.trusted()
	case erpsync.IsTicketError(err):
		c.distrust(fresh)
	}
	return resp, err
}

// suspect reports whether re-logins are paused because a fresh ticket was rejected too.
func (c *Client) suspect() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now().Before(c.suspectUntil)
}

// distrust pauses re-logins after the fresh ticket was rejected: 1 min, doubling to 1 h
// with each further rejected fresh ticket. Concurrent callers rejected with the same fresh
// ticket count once.
func (c *Client) distrust(fresh string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if fresh == c.distrusted && now.Before(c.suspectUntil) {
		return
	}
	c.distrusted = fresh
	c.suspectFor = min(max(2*c.suspectFor, minSuspect), maxSuspect)
	c.suspectUntil = now.Add(c.suspectFor)
}

// trusted clears the pause after a call NetServer accepted.
func (c *Client) trusted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.suspectFor, c.suspectUntil, c.distrusted = 0, time.Time{}, ""
}

func (c *Client) ticket(ctx context.Context) (string, error) {
	t, err := c.auth.Ticket(ctx)
	if err != nil {
		return "", fmt.Errorf("get ticket: %w", err)
	}
	if t == "" {
		return "", errors.New("get ticket: ticket source returned an empty ticket")
	}
	return t, nil
}

func (c *Client) forceResyncOnce(ctx context.Context, ticket string, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	payload := make([]byte, 0, forceResyncSize(c.appToken, ticket, keys))
	payload = appendForceResyncExternal(payload, c.soap12, c.appToken, ticket, erpConnectionID, actor, keys)
	rep, err := c.http.post(ctx, c.erpSyncURL, c.soap12, actionForceResyncExternal, payload)
	if err != nil {
		return nil, wrapOp(opForceResyncExternal, err)
	}
	defer rep.release()
	red := redactor{c.appToken, ticket}
	resp, err := parseForceResync(rep.body.Bytes(), rep.status, c.ticketRe.MatchString)
	if err = rep.classify(err, red); err != nil {
		return nil, wrapOp(opForceResyncExternal, err)
	}
	return resp, nil
}

func wrapOp(op string, err error) error {
	return fmt.Errorf("soap: %s: %w", op, err)
}

// serviceURL joins the tenant base and a service path.
func serviceURL(base, path string) string {
	return strings.TrimRight(base, "/") + path
}

// caller does the HTTP part of a SOAP call: one POST, a capped read, typed errors.
type caller struct {
	hc       *http.Client
	maxBytes int64
	now      func() time.Time
}

func newCaller(hc *http.Client, maxBytes int64) *caller {
	switch {
	case hc == nil:
		hc = defaultHTTPClient()
	case hc.CheckRedirect == nil:
		cp := *hc // shares the Transport and its connection pool
		cp.CheckRedirect = noRedirects
		hc = &cp
	}
	if maxBytes == 0 {
		maxBytes = DefaultMaxResponseBytes
	}
	return &caller{hc: hc, maxBytes: maxBytes, now: time.Now}
}

// noRedirects is the CheckRedirect of the clients the package uses (see Config.HTTPClient).
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func defaultHTTPClient() *http.Client {
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

// reply is an HTTP reply read into a pooled buffer; release returns it.
type reply struct {
	status int
	header http.Header
	body   *bytes.Buffer
	now    time.Time
}

var replyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (r *reply) release() {
	if r.body != nil && r.body.Cap() <= 1<<20 {
		r.body.Reset()
		replyPool.Put(r.body)
	}
	r.body = nil
}

// post sends one SOAP request. SOAP 1.1 gets text/xml and a quoted SOAPAction header;
// SOAP 1.2 puts the action into the application/soap+xml content type.
func (c *caller) post(ctx context.Context, url string, soap12 bool, action string, payload []byte) (*reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	if soap12 {
		req.Header.Set("Content-Type", `application/soap+xml; charset=utf-8; action="`+action+`"`)
	} else {
		req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		req.Header.Set("SOAPAction", `"`+action+`"`)
	}
	return c.do(ctx, req)
}

// postJSON sends a JSON request (the system-user login).
func (c *caller) postJSON(ctx context.Context, url string, payload []byte) (*reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	return c.do(ctx, req)
}

func (c *caller) do(ctx context.Context, req *http.Request) (*reply, error) {
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > c.maxBytes {
		return nil, fmt.Errorf("reply of %d bytes exceeds the %d-byte cap: %w", resp.ContentLength, c.maxBytes, erpsync.ErrResponseTooLarge)
	}
	buf := replyPool.Get().(*bytes.Buffer)
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	rep := &reply{status: resp.StatusCode, header: resp.Header, body: buf, now: c.now()}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		rep.release()
		return nil, transportError(ctx, err)
	}
	if n > c.maxBytes {
		rep.release()
		return nil, fmt.Errorf("reply exceeds the %d-byte cap: %w", c.maxBytes, erpsync.ErrResponseTooLarge)
	}
	return rep, nil
}

// transportError wraps a failed exchange. A cancelled context is returned as itself (the
// caller gave up; nothing is wrong with the transport); a deadline is a timeout.
func transportError(ctx context.Context, err error) error {
	switch ctxErr := ctx.Err(); {
	case errors.Is(ctxErr, context.Canceled):
		return ctxErr
	case ctxErr != nil && !errors.Is(err, ctxErr):
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	return &erpsync.TransportError{Err: err}
}

// classify turns a parse result into the error callers see, given the HTTP status. A SOAP
// fault or a NetServer exception wins whatever the status; a reply that could not be
// parsed is an *erpsync.HTTPError for a non-2xx status and a *erpsync.ProtocolError for a 2xx one.
func (r *reply) classify(parseErr error, red redactor) error {
	ok := r.status >= 200 && r.status < 300
	if parseErr == nil {
		if ok {
			return nil
		}
		return r.httpError(red)
	}
	var pe *erpsync.ProtocolError
	if !errors.As(parseErr, &pe) {
		red.apply(parseErr)
		return parseErr
	}
	if !ok {
		return r.httpError(red)
	}
	return parseErr
}

func (r *reply) httpError(red redactor) *erpsync.HTTPError {
	return &erpsync.HTTPError{
		StatusCode:  r.status,
		ContentType: r.header.Get("Content-Type"),
		Body:        red.s(string(erpsync.Cut(r.body.Bytes(), erpsync.MaxErrorBody))),
		RetryAfter:  parseRetryAfter(r.header.Get("Retry-After"), r.now),
	}
}

// redactor replaces secrets that a server echoed back in text that ends up in errors.
type redactor []string

const redacted = "[REDACTED]"

// minSecretLen keeps very short secrets from redacting ordinary words.
const minSecretLen = 4

func (rd redactor) s(v string) string {
	for _, sec := range rd {
		if len(sec) >= minSecretLen && strings.Contains(v, sec) {
			v = strings.ReplaceAll(v, sec, redacted)
		}
	}
	return v
}

// apply redacts the text fields of the package's error types in err's chain.
func (rd redactor) apply(err error) {
	var ex *erpsync.ExceptionError
	if errors.As(err, &ex) {
		for i, x := 0, ex; x != nil && i <= maxInnerExceptions; i, x = i+1, x.Inner {
			x.Type, x.Message, x.FriendlyText, x.Source = rd.s(x.Type), rd.s(x.Message), rd.s(x.FriendlyText), rd.s(x.Source)
		}
	}
	var f *erpsync.FaultError
	if errors.As(err, &f) {
		f.Code, f.Subcode, f.Reason = rd.s(f.Code), rd.s(f.Subcode), rd.s(f.Reason)
	}
}

func redactedIfSet(s string) string {
	if s == "" {
		return `""`
	}
	return redacted
}

func setOrNil(set bool) string {
	if set {
		return "set"
	}
	return "<nil>"
}

func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid URL>"
	}
	return u.Redacted()
}

func patternString(re *regexp.Regexp) string {
	if re == nil {
		return "<nil>"
	}
	return strconv.Quote(re.String())
}

// authString prints a TicketSource without secrets: the package's own sources redact
// themselves; anything else is shown by type only.
func authString(a TicketSource) string {
	switch a := a.(type) {
	case nil:
		return "<nil>"
	case *StaticTicket, *PasswordAuth, *SystemUserAuth, *TicketCache:
		return a.(fmt.Stringer).String()
	default:
		return fmt.Sprintf("%T", a)
	}
}

// validXMLText reports whether s is valid UTF-8 made only of XML 1.0 characters.
func validXMLText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !erpsync.IsXMLChar(r) {
			return false
		}
	}
	return true
}
