package soap

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/httpcall"
	"github.com/erpresync/erpresync/internal/xmltext"
)

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

	// Auth supplies tickets: auth.StaticTicket, auth.PasswordAuth, auth.SystemUserAuth or
	// your own auth.TicketSource. The zero value (nil) is rejected.
	Auth auth.TicketSource

	// HTTPClient sends every request of the client, the repeat after a ticket refresh
	// included (give the ticket source's config the same client, so that whatever wraps
	// its Transport — flow control — counts logins too). The zero value (nil) means
	// httpcall.DefaultHTTPClient: a 10 s connect timeout, a 10 s TLS handshake timeout, a
	// 2 min response header timeout and a 3 min overall timeout; callers bound each call
	// further with its context. Redirects are not followed unless HTTPClient sets its own
	// CheckRedirect: a redirect is returned as an *erpsync.HTTPError, since following it
	// would turn the POST into a GET (301, 302, 303) or resend the ticket and application
	// token to the new location (307, 308).
	HTTPClient *http.Client

	// SOAP12 sends SOAP 1.2 envelopes (the namespace SuperOffice's generated examples use)
	// with Content-Type application/soap+xml; charset=utf-8; action="…". The zero value,
	// false, sends SOAP 1.1 with text/xml and a SOAPAction header, which is what NetServer's
	// basicHttpBinding endpoints accept; set it only for an endpoint known to speak 1.2.
	SOAP12 bool

	// MaxResponseBytes caps how much of a reply is read. The zero value means
	// httpcall.DefaultMaxResponseBytes (4 MiB); a negative value is rejected. A longer reply fails
	// with erpsync.ErrResponseTooLarge.
	MaxResponseBytes int64

	// TicketErrorPattern is matched against ExceptionInfo's ExceptionType and Message to
	// decide that the ticket is invalid or expired. The zero value (nil) means
	// defaultTicketErrorExpr.
	TicketErrorPattern *regexp.Regexp
}

func (c Config) validate() error {
	if c.BaseURL == "" {
		return &erpsync.ConfigError{Field: "soap.Config.BaseURL", What: "tenant base URL", Problem: "is required, such as https://sod.superoffice.com/Cust12345"}
	}
	if err := httpcall.ValidateBaseURL(c.BaseURL); err != nil {
		return &erpsync.ConfigError{Field: "soap.Config.BaseURL", What: "tenant base URL", Problem: err.Error()}
	}
	if c.Auth == nil {
		return &erpsync.ConfigError{Field: "soap.Config.Auth", What: "ticket source", Problem: "is required: a fixed ticket, a password login or an Online system-user login (package auth)"}
	}
	if c.MaxResponseBytes < 0 {
		return &erpsync.ConfigError{Field: "soap.Config.MaxResponseBytes", What: "reply size cap", Problem: "must not be negative (0 means 4 MiB)"}
	}
	if c.AppToken != "" && !xmltext.Valid(c.AppToken) {
		return &erpsync.ConfigError{Field: "soap.Config.AppToken", What: "application token", Problem: "contains characters XML cannot carry"}
	}
	return nil
}

// String prints the configuration with secrets redacted.
func (c Config) String() string {
	return fmt.Sprintf("soap.Config{BaseURL:%q, AppToken:%s, Auth:%s, HTTPClient:%s, SOAP12:%t, MaxResponseBytes:%d, TicketErrorPattern:%s}",
		httpcall.RedactURL(c.BaseURL), httpcall.RedactedIfSet(c.AppToken), auth.Describe(c.Auth), httpcall.SetOrNil(c.HTTPClient != nil), c.SOAP12, c.MaxResponseBytes, patternString(c.TicketErrorPattern))
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Client calls NetServer's ErpSync service. It is safe for concurrent use; create one per
// tenant and share it.
type Client struct {
	erpSyncURL string
	baseURL    string
	appToken   string
	session    *auth.Session
	soap12     bool
	ticketRe   *regexp.Regexp
	http       *httpcall.Client
}

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
		baseURL:    cfg.BaseURL,
		appToken:   cfg.AppToken,
		session:    auth.NewSession(cfg.Auth),
		soap12:     cfg.SOAP12,
		ticketRe:   re,
		http:       httpcall.New(cfg.HTTPClient, cfg.MaxResponseBytes),
	}, nil
}

// String prints the endpoint, never secrets.
func (c *Client) String() string {
	return fmt.Sprintf("soap.Client{URL:%q, SOAP12:%t, Auth:%s}", httpcall.RedactURL(c.erpSyncURL), c.soap12, auth.Describe(c.session.Source()))
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
// and the call retried once, as auth.Session describes; if that fails too, the
// *erpsync.ExceptionError is returned with TicketRejected set. Errors are wrapped
// *erpsync.ExceptionError, *erpsync.FaultError, *erpsync.HTTPError, *erpsync.TransportError, *erpsync.ProtocolError,
// erpsync.ErrResponseTooLarge, the ticket source's error, or the context's error. The erpsync.Result is
// never shared and may be modified by the caller.
func (c *Client) ForceResyncExternal(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	return c.forceResync(ctx, erpConnectionID, actor, keys, false)
}

// ForceResyncAll sends ForceResyncExternal with an explicitly empty ExternalKeys array,
// which NetServer reads as "resync everything" for the connection and actor type. It is
// otherwise ForceResyncExternal.
func (c *Client) ForceResyncAll(ctx context.Context, erpConnectionID int, actor erpsync.ActorType) (*erpsync.Result, error) {
	return c.forceResync(ctx, erpConnectionID, actor, nil, true)
}

func (c *Client) forceResync(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string, all bool) (*erpsync.Result, error) {
	resp, err := httpcall.ForceResync(ctx, erpConnectionID, actor, keys, all, c.session.Call, func(ctx context.Context, ticket string) (*erpsync.Result, error) {
		return c.forceResyncOnce(ctx, ticket, erpConnectionID, actor, keys)
	})
	if err != nil {
		return nil, wrapOp(opForceResyncExternal, err)
	}
	return resp, nil
}

func (c *Client) forceResyncOnce(ctx context.Context, ticket string, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	payload := make([]byte, 0, forceResyncSize(c.appToken, ticket, keys))
	payload = appendForceResyncExternal(payload, c.soap12, c.appToken, ticket, erpConnectionID, actor, keys)
	rep, err := c.http.Post(ctx, c.erpSyncURL, requestHeader(c.soap12, actionForceResyncExternal), payload)
	if err != nil {
		return nil, err
	}
	defer rep.Release()
	resp, err := parseForceResync(rep.Body(), rep.Status, c.ticketRe.MatchString)
	if err = rep.Classify(err, httpcall.Redactor{c.appToken, ticket}); err != nil {
		if he, ok := httpcall.IsMisdirected(err); ok {
			return nil, httpcall.Misdirected(c.baseURL, he)
		}
		return nil, err
	}
	return resp, nil
}

func wrapOp(op string, err error) error {
	return fmt.Errorf("soap: %s: %w", op, err)
}

// requestHeader is a SOAP request's header: SOAP 1.1 gets text/xml and a quoted SOAPAction
// header; SOAP 1.2 puts the action into the application/soap+xml content type.
func requestHeader(soap12 bool, action string) http.Header {
	if soap12 {
		return http.Header{"Content-Type": {`application/soap+xml; charset=utf-8; action="` + action + `"`}}
	}
	return http.Header{"Content-Type": {"text/xml; charset=utf-8"}, "SOAPAction": {`"` + action + `"`}}
}

// serviceURL joins the tenant base and a service path.
func serviceURL(base, path string) string { return httpcall.JoinURL(base, path) }

func patternString(re *regexp.Regexp) string {
	if re == nil {
		return "<nil>"
	}
	return strconv.Quote(re.String())
}

// Auth returns the ticket source the client was configured with.
func (c *Client) Auth() auth.TicketSource { return c.session.Source() }
