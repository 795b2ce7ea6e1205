package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/httpcall"
	"github.com/erpresync/erpresync/internal/xmltext"
)

// PathSoPrincipal is the login service's path below the tenant base URL.
const pathSoPrincipal = "/Remote/Services88/SoPrincipal.svc"

// PasswordAuthConfig configures PasswordAuth. BaseURL, UserName and Password are required.
type PasswordAuthConfig struct {
	// BaseURL is the tenant base URL, as the transports take it; the login goes to
	// BaseURL + /Remote/Services88/SoPrincipal.svc whichever transport uses the ticket.
	// The zero value is rejected.
	BaseURL string

	// UserName is the NetServer user (an associate's login name). The zero value is rejected.
	UserName string

	// Password is the user's password. The zero value is rejected. It is never printed.
	Password string

	// AppToken is sent in the ApplicationToken header; the zero value leaves it out, which
	// on-site installations accept. It is never printed.
	AppToken string

	// HTTPClient sends every login request, so that whatever wraps its Transport (flow
	// control) counts logins too. The zero value (nil) means httpcall.DefaultHTTPClient
	// (10 s connect, 3 min overall timeout, no redirects followed).
	HTTPClient *http.Client

	// MaxAge is how long a ticket is used before logging in again although NetServer did
	// not reject it. The zero value means no age limit: on-site tickets have a sliding
	// expiry, and a rejected ticket is renewed on demand anyway.
	MaxAge time.Duration
}

func (c PasswordAuthConfig) validate() error {
	if c.BaseURL == "" {
		return &erpsync.ConfigError{Field: "auth.PasswordAuthConfig.BaseURL", What: "tenant base URL", Problem: "is required, such as https://sod.superoffice.com/Cust12345"}
	}
	if err := httpcall.ValidateBaseURL(c.BaseURL); err != nil {
		return &erpsync.ConfigError{Field: "auth.PasswordAuthConfig.BaseURL", What: "tenant base URL", Problem: err.Error()}
	}
	if c.UserName == "" {
		return &erpsync.ConfigError{Field: "auth.PasswordAuthConfig.UserName", What: "user name", Problem: "is required"}
	}
	if c.Password == "" {
		return &erpsync.ConfigError{Field: "auth.PasswordAuthConfig.Password", What: "password", Problem: "is required"}
	}
	for _, f := range []struct{ field, what, val string }{
		{"UserName", "user name", c.UserName}, {"Password", "password", c.Password}, {"AppToken", "application token", c.AppToken},
	} {
		if !xmltext.Valid(f.val) {
			return &erpsync.ConfigError{Field: "auth.PasswordAuthConfig." + f.field, What: f.what, Problem: "contains characters XML cannot carry"}
		}
	}
	return nil
}

// String prints the configuration with secrets redacted.
func (c PasswordAuthConfig) String() string {
	return fmt.Sprintf("auth.PasswordAuthConfig{BaseURL:%q, UserName:%q, Password:%s, AppToken:%s, HTTPClient:%s, MaxAge:%s}",
		httpcall.RedactURL(c.BaseURL), c.UserName, httpcall.RedactedIfSet(c.Password), httpcall.RedactedIfSet(c.AppToken), httpcall.SetOrNil(c.HTTPClient != nil), c.MaxAge)
}

// GoString is String.
func (c PasswordAuthConfig) GoString() string { return c.String() }

// PasswordAuth is a TicketSource for on-site installations: it logs in with
// SoPrincipal.AuthenticateUsernamePassword (SOAP 1.1; the ticket it returns serves the REST
// API as well) and caches the ticket as TicketCache does. A refused login is
// erpsync.ErrLoginRefused. Safe for concurrent use.
type PasswordAuth struct {
	*TicketCache
	url      string
	userName string
	password string
	appToken string
	http     *httpcall.Client
}

// NewPasswordAuth validates cfg and returns a PasswordAuth. It does not log in yet.
func NewPasswordAuth(cfg PasswordAuthConfig) (*PasswordAuth, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &PasswordAuth{
		url:      httpcall.JoinURL(cfg.BaseURL, pathSoPrincipal),
		userName: cfg.UserName,
		password: cfg.Password,
		appToken: cfg.AppToken,
		http:     httpcall.New(cfg.HTTPClient, 0),
	}
	p.TicketCache = NewTicketCache(p.Login, cfg.MaxAge)
	return p, nil
}

const opAuthenticate = "SoPrincipal.AuthenticateUsernamePassword"

// Login performs one AuthenticateUsernamePassword call, bypassing the cache, and returns
// the ticket. AuthenticationSucceeded=false, and HTTP 401 or 403, give
// erpsync.ErrLoginRefused; other failures are the transports' error types
// (*erpsync.ExceptionError, *erpsync.FaultError, *erpsync.HTTPError, *erpsync.TransportError,
// *erpsync.ProtocolError).
func (p *PasswordAuth) Login(ctx context.Context) (string, error) {
	payload := appendLoginEnvelope(make([]byte, 0, 512+len(p.userName)+len(p.password)+len(p.appToken)), p.appToken, p.userName, p.password)
	hdr := http.Header{
		"Content-Type": {"text/xml; charset=utf-8"},
		"SOAPAction":   {`"` + actionAuthenticateUsernamePassword + `"`},
	}
	rep, err := p.http.Post(ctx, p.url, hdr, payload)
	if err != nil {
		return "", wrapOp(opAuthenticate, err)
	}
	defer rep.Release()
	lr, err := parseLoginReply(rep.Body(), rep.Status)
	if err == nil {
		switch {
		case !lr.found:
			err = &erpsync.ProtocolError{HTTPStatus: rep.Status, Reason: "reply has no AuthenticateResponse"}
		case !lr.succeeded:
			if rep.OK() {
				return "", wrapOp(opAuthenticate, fmt.Errorf("user %q: %w", p.userName, erpsync.ErrLoginRefused))
			}
		case lr.ticket == "":
			err = &erpsync.ProtocolError{HTTPStatus: rep.Status, Reason: "login succeeded but carries no ticket"}
		}
	}
	if err = rep.Classify(err, httpcall.Redactor{p.password, p.appToken}); err != nil {
		return "", wrapOp(opAuthenticate, asRefusal(err))
	}
	return lr.ticket, nil
}

// asRefusal marks an HTTP 401 or 403 from a login service as erpsync.ErrLoginRefused as
// well: the credentials were refused, and asking again at once will not change that.
func asRefusal(err error) error {
	var he *erpsync.HTTPError
	if errors.As(err, &he) && (he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: %w", erpsync.ErrLoginRefused, err)
	}
	return err
}

// String prints the login target, never the password, app token or ticket.
func (p *PasswordAuth) String() string {
	return fmt.Sprintf("auth.PasswordAuth{URL:%q, UserName:%q, Password:%s, Refreshes:%d}", httpcall.RedactURL(p.url), p.userName, httpcall.Redacted, p.Refreshes())
}

// GoString is String.
func (p *PasswordAuth) GoString() string { return p.String() }

func wrapOp(op string, err error) error {
	return fmt.Errorf("auth: %s: %w", op, err)
}
