package rest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/httpcall"
)

// PathForceResyncExternal is the agent method's path below the tenant base URL.
const pathForceResyncExternal = "/api/v1/Agents/ErpSync/ForceResyncExternal"

// Config configures a Client. Only BaseURL and Auth are required.
type Config struct {
	// BaseURL is the tenant base URL, such as https://sod2.superoffice.com/Cust12345
	// (Online; the numbered host the tenant state API names) or
	// https://crm.example.com/SuperOffice (on-site). The client appends
	// /api/v1/Agents/ErpSync/ForceResyncExternal. The zero value is rejected.
	BaseURL string

	// AppToken is the application token (the app's client secret on Online), sent in the
	// SO-AppToken header. The zero value leaves the header out, which on-site installations
	// accept. It is never printed.
	AppToken string

	// Auth supplies tickets, sent as "Authorization: SOTicket <ticket>": auth.StaticTicket,
	// auth.PasswordAuth, auth.SystemUserAuth or your own auth.TicketSource. The zero value
	// (nil) is rejected.
	Auth auth.TicketSource

	// HTTPClient sends every request of the client, the repeat after a ticket refresh
	// included (give the ticket source's config the same client, so that whatever wraps
	// its Transport — flow control — counts logins too). The zero value (nil) means
	// httpcall.DefaultHTTPClient. Redirects are not followed unless HTTPClient sets its own
	// CheckRedirect: a redirect is returned as an *erpsync.HTTPError.
	HTTPClient *http.Client

	// MaxResponseBytes caps how much of a reply is read. The zero value means
	// httpcall.DefaultMaxResponseBytes (4 MiB); a negative value is rejected. A longer reply
	// fails with erpsync.ErrResponseTooLarge.
	MaxResponseBytes int64
}

func (c Config) validate() error {
	if c.BaseURL == "" {
		return &erpsync.ConfigError{Field: "rest.Config.BaseURL", What: "tenant base URL", Problem: "is required, such as https://sod.superoffice.com/Cust12345"}
	}
	if err := httpcall.ValidateBaseURL(c.BaseURL); err != nil {
		return &erpsync.ConfigError{Field: "rest.Config.BaseURL", What: "tenant base URL", Problem: err.Error()}
	}
	if c.Auth == nil {
		return &erpsync.ConfigError{Field: "rest.Config.Auth", What: "ticket source", Problem: "is required: a fixed ticket, a password login or an Online system-user login (package auth)"}
	}
	if c.MaxResponseBytes < 0 {
		return &erpsync.ConfigError{Field: "rest.Config.MaxResponseBytes", What: "reply size cap", Problem: "must not be negative (0 means 4 MiB)"}
	}
	if strings.ContainsAny(c.AppToken, "\r\n\x00") {
		return &erpsync.ConfigError{Field: "rest.Config.AppToken", What: "application token", Problem: "contains characters an HTTP header cannot carry"}
	}
	return nil
}

// String prints the configuration with secrets redacted.
func (c Config) String() string {
	return fmt.Sprintf("rest.Config{BaseURL:%q, AppToken:%s, Auth:%s, HTTPClient:%s, MaxResponseBytes:%d}",
		httpcall.RedactURL(c.BaseURL), httpcall.RedactedIfSet(c.AppToken), auth.Describe(c.Auth), httpcall.SetOrNil(c.HTTPClient != nil), c.MaxResponseBytes)
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Client calls the ErpSync agent over the WebAPI. It is safe for concurrent use; create
// one per tenant and share it.
type Client struct {
	url      string
	base     string
	tenant   string // the base URL's path (Cust12345 on Online), for messages
	appToken string
	session  *auth.Session
	http     *httpcall.Client
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.BaseURL)
	return &Client{
		url:      httpcall.JoinURL(cfg.BaseURL, pathForceResyncExternal),
		base:     cfg.BaseURL,
		tenant:   strings.Trim(u.Path, "/"),
		appToken: cfg.AppToken,
		session:  auth.NewSession(cfg.Auth),
		http:     httpcall.New(cfg.HTTPClient, cfg.MaxResponseBytes),
	}, nil
}

// String prints the endpoint, never secrets.
func (c *Client) String() string {
	return fmt.Sprintf("rest.Client{URL:%q, Auth:%s}", httpcall.RedactURL(c.url), auth.Describe(c.session.Source()))
}

// GoString is String.
func (c *Client) GoString() string { return c.String() }

const opForceResyncExternal = "ErpSync.ForceResyncExternal"

// ForceResyncExternal asks the ErpSync agent to resync the records that the given ERP
// external keys name on connection erpConnectionID, and returns its PluginResponse. A
// Result with IsOk=false is a business failure, returned with a nil error.
//
// The request is checked by erpsync.ValidateRequest first (erpsync.ErrEmptyKeys for an
// empty key list, which would resync everything: use ForceResyncAll; a *erpsync.KeyError
// naming the index of a bad key); nothing is sent when it fails. The call is one attempt,
// except that a 401 invalidates the ticket and repeats the call once with a fresh one, as
// auth.Session describes. The errors are those the package documentation lists, the
// ticket source's error, or the context's error, each wrapped. The Result is never shared.
func (c *Client) ForceResyncExternal(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	return c.forceResync(ctx, erpConnectionID, actor, keys, false)
}

// ForceResyncAll sends ForceResyncExternal with an explicitly empty ExternalKeys array,
// which the agent reads as "resync everything" for the connection and actor type. It is
// otherwise ForceResyncExternal.
func (c *Client) ForceResyncAll(ctx context.Context, erpConnectionID int, actor erpsync.ActorType) (*erpsync.Result, error) {
	return c.forceResync(ctx, erpConnectionID, actor, nil, true)
}

func (c *Client) forceResync(ctx context.Context, erpConnectionID int, actor erpsync.ActorType, keys []string, all bool) (*erpsync.Result, error) {
	var payload []byte // built once, after the request is checked, and sent again on a retry
	resp, err := httpcall.ForceResync(ctx, erpConnectionID, actor, keys, all, c.session.Call, func(ctx context.Context, ticket string) (*erpsync.Result, error) {
		if payload == nil {
			payload = appendRequest(make([]byte, 0, requestSize(keys)), erpConnectionID, actor, keys)
		}
		return c.once(ctx, ticket, payload)
	})
	if err != nil {
		return nil, wrapOp(err)
	}
	return resp, nil
}

func (c *Client) once(ctx context.Context, ticket string, payload []byte) (*erpsync.Result, error) {
	if strings.ContainsAny(ticket, "\r\n\x00") {
		return nil, errors.New("ticket contains characters an HTTP header cannot carry")
	}
	hdr := http.Header{
		"Content-Type":  {"application/json; charset=utf-8"},
		"Accept":        {"application/json"},
		"Authorization": {"SOTicket " + ticket},
	}
	if c.appToken != "" {
		hdr["SO-AppToken"] = []string{c.appToken}
	}
	rep, err := c.http.Post(ctx, c.url, hdr, payload)
	if err != nil {
		return nil, err
	}
	defer rep.Release()
	return c.interpret(rep, httpcall.Redactor{c.appToken, ticket})
}

// interpret turns a reply into a Result or an error (see the package documentation).
func (c *Client) interpret(rep *httpcall.Reply, red httpcall.Redactor) (*erpsync.Result, error) {
	if rep.OK() {
		resp, err := decodeResponse(rep.Body(), rep.Status)
		if err != nil {
			redactProtocol(err, red)
			return nil, rep.Classify(err, red)
		}
		return resp, nil
	}
	he := rep.HTTPError(red)
	ex := decodeError(rep.Body())
	if ex != nil {
		red.Apply(ex)
	}
	switch rep.Status {
	case http.StatusUnauthorized:
		if ex == nil {
			ex = &erpsync.ExceptionError{Type: "Unauthorized", Message: "the ticket is invalid or has expired"}
		}
		ex.TicketRejected = true
		return nil, fmt.Errorf("%w: %w", he, ex)
	case http.StatusForbidden:
		err := fmt.Errorf("tenant %q refused the call (%w): the application is not granted the ErpSync agent, which is Online Restricted; a tenant administrator must grant it to the app", c.tenant, he)
		if ex != nil {
			err = fmt.Errorf("%w: %w", err, ex)
		}
		return nil, err
	case http.StatusMisdirectedRequest:
		return nil, httpcall.Misdirected(c.base, he)
	}
	if ex != nil {
		return nil, fmt.Errorf("%w: %w", he, ex)
	}
	return nil, he
}

// redactProtocol redacts the underlying error text of a *erpsync.ProtocolError.
func redactProtocol(err error, red httpcall.Redactor) {
	var pe *erpsync.ProtocolError
	if errors.As(err, &pe) && pe.Err != nil {
		pe.Err = errors.New(red.S(pe.Err.Error()))
	}
}

func wrapOp(err error) error {
	return fmt.Errorf("rest: %s: %w", opForceResyncExternal, err)
}

// Auth returns the ticket source the client was configured with.
func (c *Client) Auth() auth.TicketSource { return c.session.Source() }
