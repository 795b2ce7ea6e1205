package soap

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// PasswordAuthConfig configures PasswordAuth. BaseURL, UserName and Password are required.
type PasswordAuthConfig struct {
	// BaseURL is the tenant base URL, as in Config.BaseURL; the login goes to
	// BaseURL + /Remote/Services88/SoPrincipal.svc. The zero value is rejected.
	BaseURL string

	// UserName is the NetServer user (an associate's login name). The zero value is rejected.
	UserName string

	// Password is the user's password. The zero value is rejected. It is never printed.
	Password string

	// AppToken is sent in the ApplicationToken header; the zero value leaves it out, which
	// on-site installations accept. It is never printed.
	AppToken string

	// HTTPClient sends the login request; the zero value (nil) means a default client as
	// for Config.HTTPClient.
	HTTPClient *http.Client

	// MaxAge is how long a ticket is used before logging in again although NetServer did
	// not reject it. The zero value means no age limit: on-site tickets have a sliding
	// expiry, and a rejected ticket is renewed on demand anyway.
	MaxAge time.Duration
}

func (c PasswordAuthConfig) validate() error {
	if c.BaseURL == "" {
		return errors.New("soap: PasswordAuthConfig.BaseURL is required: the tenant base URL")
	}
	if err := validateBaseURL(c.BaseURL); err != nil {
		return fmt.Errorf("soap: PasswordAuthConfig.BaseURL: %w", err)
	}
	if c.UserName == "" {
		return errors.New("soap: PasswordAuthConfig.UserName is required")
	}
	if c.Password == "" {
		return errors.New("soap: PasswordAuthConfig.Password is required")
	}
	if !validXMLText(c.UserName) || !validXMLText(c.Password) || !validXMLText(c.AppToken) {
		return errors.New("soap: PasswordAuthConfig: user name, password or app token contains characters XML cannot carry")
	}
	return nil
}

// String prints the configuration with secrets redacted.
func (c PasswordAuthConfig) String() string {
	return fmt.Sprintf("soap.PasswordAuthConfig{BaseURL:%q, UserName:%q, Password:%s, AppToken:%s, HTTPClient:%s, MaxAge:%s}",
		redactURL(c.BaseURL), c.UserName, redactedIfSet(c.Password), redactedIfSet(c.AppToken), setOrNil(c.HTTPClient != nil), c.MaxAge)
}

// GoString is String.
func (c PasswordAuthConfig) GoString() string { return c.String() }

// PasswordAuth is a TicketSource for on-site installations: it logs in with
// SoPrincipal.AuthenticateUsernamePassword (SOAP 1.1) and caches the ticket as TicketCache
// does. A refused login is erpsync.ErrLoginRefused. Safe for concurrent use.
type PasswordAuth struct {
	*TicketCache
	url      string
	userName string
	password string
	appToken string
	http     *caller
}

// NewPasswordAuth validates cfg and returns a PasswordAuth. It does not log in yet.
func NewPasswordAuth(cfg PasswordAuthConfig) (*PasswordAuth, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &PasswordAuth{
		url:      serviceURL(cfg.BaseURL, pathSoPrincipal),
		userName: cfg.UserName,
		password: cfg.Password,
		appToken: cfg.AppToken,
		http:     newCaller(cfg.HTTPClient, 0),
	}
	p.TicketCache = NewTicketCache(p.Login, cfg.MaxAge)
	return p, nil
}

const opAuthenticate = "SoPrincipal.AuthenticateUsernamePassword"

// Login performs one AuthenticateUsernamePassword call, bypassing the cache, and returns
// the ticket. AuthenticationSucceeded=false gives erpsync.ErrLoginRefused; other failures are the
// same error types as Client calls.
func (p *PasswordAuth) Login(ctx context.Context) (string, error) {
	payload := appendAuthenticateUsernamePassword(make([]byte, 0, 512+len(p.userName)+len(p.password)+len(p.appToken)), p.appToken, p.userName, p.password)
	rep, err := p.http.post(ctx, p.url, false, actionAuthenticateUsernamePassword, payload)
	if err != nil {
		return "", wrapOp(opAuthenticate, err)
	}
	defer rep.release()
	var ticket string
	var succeeded, found bool
	env, err := parseEnvelope(rep.body.Bytes(), authenticateBody(&ticket, &succeeded, &found))
	if err != nil {
		err = protocolError(rep.status, err)
	} else if err = env.err(rep.status, nil); err == nil {
		switch {
		case !found:
			err = &erpsync.ProtocolError{HTTPStatus: rep.status, Reason: "reply has no AuthenticateResponse"}
		case !succeeded:
			if rep.status >= 200 && rep.status < 300 {
				return "", wrapOp(opAuthenticate, fmt.Errorf("user %q: %w", p.userName, erpsync.ErrLoginRefused))
			}
		case ticket == "":
			err = &erpsync.ProtocolError{HTTPStatus: rep.status, Reason: "login succeeded but carries no ticket"}
		}
	}
	if err = rep.classify(err, redactor{p.password, p.appToken}); err != nil {
		return "", wrapOp(opAuthenticate, asRefusal(err))
	}
	return ticket, nil
}

// asRefusal marks an HTTP 401 or 403 from a login service as erpsync.ErrLoginRefused as well: the
// credentials were refused, and asking again at once will not change that.
func asRefusal(err error) error {
	var he *erpsync.HTTPError
	if errors.As(err, &he) && (he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: %w", erpsync.ErrLoginRefused, err)
	}
	return err
}

// String prints the login target, never the password, app token or ticket.
func (p *PasswordAuth) String() string {
	return fmt.Sprintf("soap.PasswordAuth{URL:%q, UserName:%q, Password:%s, Refreshes:%d}", redactURL(p.url), p.userName, redacted, p.Refreshes())
}

// GoString is String.
func (p *PasswordAuth) GoString() string { return p.String() }
