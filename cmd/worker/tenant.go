package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/rest"
	"github.com/erpresync/erpresync/soap"
	"github.com/erpresync/erpresync/tasks"
)

// The transports SUPEROFFICE_API chooses between.
const (
	apiSOAP = "soap"
	apiREST = "rest"
)

// tenantSetup is the SuperOffice client of the chosen transport with the ticket source
// behind it, so the worker can export the source's refresh counter. This file is the only
// place in the worker that names a transport package.
type tenantSetup struct {
	Client    tasks.Resyncer // *soap.Client or *rest.Client
	API       string         // apiSOAP or apiREST
	Refreshes func() int64   // nil for a fixed ticket
	Mode      string         // modeTicket, modePassword or modeSystemUser
	// Login fetches a ticket as a call would (cached for the calls); nil for a fixed ticket.
	Login func(ctx context.Context) error
}

// newTenant builds the SuperOffice client from the settings. Every missing or contradictory
// setting is reported by name, before any call is made. Logins and calls share one HTTP
// client (superofficeHTTPClient), and wrap (nil: none) puts flow control under its
// Transport, so it sees every request.
func newTenant(v values, wrap wrapTransport) (*tenantSetup, error) {
	base, err := tenantURL(v)
	if err != nil {
		return nil, err
	}
	api := strings.ToLower(strings.TrimSpace(v.str("SUPEROFFICE_API")))
	if api != apiSOAP && api != apiREST {
		return nil, fmt.Errorf("SUPEROFFICE_API=%q: want soap or rest", v.str("SUPEROFFICE_API"))
	}
	soap12, err := v.bool("SUPEROFFICE_SOAP12")
	if err != nil {
		return nil, err
	}
	if soap12 && api == apiREST {
		return nil, errors.New("SUPEROFFICE_SOAP12 is set but SUPEROFFICE_API=rest: SOAP 1.2 applies to the SOAP transport only")
	}
	timeout, err := v.duration("SUPEROFFICE_TIMEOUT", time.Second, false)
	if err != nil {
		return nil, err
	}
	cr := readCredentials(v)
	if err := cr.oneWay(); err != nil {
		return nil, err
	}
	httpClient := superofficeHTTPClient(timeout, wrap)
	out := &tenantSetup{API: api}
	src, err := cr.ticketSource(base, httpClient, out)
	if err != nil {
		return nil, err
	}
	if out.Mode != modeTicket {
		out.Login = func(ctx context.Context) error { _, err := src.Ticket(ctx); return err }
	}
	if out.Client, err = newTransport(api, base, cr.appToken, src, httpClient, soap12); err != nil {
		return nil, err
	}
	return out, nil
}

// credentials are the settings of the ways to log in to SuperOffice.
type credentials struct {
	ticket, user, pass, sysToken, keyFile, ctxID, loginURL, appToken string
}

func readCredentials(v values) credentials {
	return credentials{
		ticket: v.str("SUPEROFFICE_TICKET"),
		user:   v.str("SUPEROFFICE_USERNAME"), pass: v.str("SUPEROFFICE_PASSWORD"),
		sysToken: v.str("SUPEROFFICE_SYSTEM_TOKEN"), keyFile: v.str("SUPEROFFICE_PRIVATE_KEY_FILE"),
		ctxID: v.str("SUPEROFFICE_CONTEXT_ID"), loginURL: v.str("SUPEROFFICE_LOGIN_URL"),
		appToken: v.str("SUPEROFFICE_APP_TOKEN"),
	}
}

// oneWay checks that the settings name exactly one way to log in: a fixed ticket, a user
// name and password, or an Online system user.
func (c credentials) oneWay() error {
	var modes []string
	if c.ticket != "" {
		modes = append(modes, "SUPEROFFICE_TICKET")
	}
	if c.user != "" || c.pass != "" {
		modes = append(modes, "SUPEROFFICE_USERNAME/SUPEROFFICE_PASSWORD")
	}
	if c.sysToken != "" || c.keyFile != "" || c.ctxID != "" || c.loginURL != "" {
		modes = append(modes, "SUPEROFFICE_SYSTEM_TOKEN/SUPEROFFICE_PRIVATE_KEY_FILE/SUPEROFFICE_CONTEXT_ID/SUPEROFFICE_LOGIN_URL")
	}
	switch len(modes) {
	case 0:
		return errors.New("no SuperOffice credentials: set SUPEROFFICE_TICKET, or SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD (on-site), or SUPEROFFICE_SYSTEM_TOKEN, SUPEROFFICE_PRIVATE_KEY_FILE, SUPEROFFICE_CONTEXT_ID and SUPEROFFICE_LOGIN_URL (Online system user)")
	case 1:
		return nil
	default:
		return fmt.Errorf("contradictory SuperOffice credentials: %s are all set; set exactly one way to authenticate", strings.Join(modes, " and "))
	}
}

// ticketSource is the ticket source of the one way to log in (oneWay checked it is one),
// logging in on base through httpClient; it sets out's Mode and Refreshes.
func (c credentials) ticketSource(base string, httpClient *http.Client, out *tenantSetup) (auth.TicketSource, error) {
	switch {
	case c.ticket != "":
		out.Mode = modeTicket
		return auth.NewStaticTicket(c.ticket), nil
	case c.user != "" || c.pass != "":
		if c.user == "" {
			return nil, errors.New("SUPEROFFICE_PASSWORD is set but SUPEROFFICE_USERNAME is not")
		}
		if c.pass == "" {
			return nil, errors.New("SUPEROFFICE_USERNAME is set but SUPEROFFICE_PASSWORD is not")
		}
		pa, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: base, UserName: c.user, Password: c.pass, AppToken: c.appToken, HTTPClient: httpClient})
		if err != nil {
			return nil, settingError(err)
		}
		out.Refreshes, out.Mode = pa.Refreshes, modePassword
		return loginSource{pa}, nil
	}
	for _, s := range []struct{ name, val string }{
		{"SUPEROFFICE_SYSTEM_TOKEN", c.sysToken}, {"SUPEROFFICE_PRIVATE_KEY_FILE", c.keyFile}, {"SUPEROFFICE_CONTEXT_ID", c.ctxID},
		{"SUPEROFFICE_LOGIN_URL", c.loginURL}, {"SUPEROFFICE_APP_TOKEN", c.appToken},
	} {
		if s.val == "" {
			return nil, fmt.Errorf("%s is not set; the Online system-user login needs SUPEROFFICE_SYSTEM_TOKEN, SUPEROFFICE_PRIVATE_KEY_FILE, SUPEROFFICE_CONTEXT_ID, SUPEROFFICE_LOGIN_URL and SUPEROFFICE_APP_TOKEN", s.name)
		}
	}
	pem, err := os.ReadFile(c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("SUPEROFFICE_PRIVATE_KEY_FILE: %v", err)
	}
	su, err := auth.NewSystemUserAuth(auth.SystemUserAuthConfig{LoginURL: c.loginURL, SystemToken: c.sysToken, PrivateKey: pem, AppToken: c.appToken, ContextIdentifier: c.ctxID, HTTPClient: httpClient})
	if err != nil {
		return nil, settingError(err)
	}
	out.Refreshes, out.Mode = su.Refreshes, modeSystemUser
	return loginSource{su}, nil
}

// newTransport is the client of the chosen transport (apiSOAP or apiREST); soap12 applies
// to SOAP only.
func newTransport(api, base, appToken string, src auth.TicketSource, httpClient *http.Client, soap12 bool) (tasks.Resyncer, error) {
	if api == apiREST {
		c, err := rest.New(rest.Config{BaseURL: base, AppToken: appToken, Auth: src, HTTPClient: httpClient})
		if err != nil {
			return nil, settingError(err)
		}
		return c, nil
	}
	c, err := soap.New(soap.Config{BaseURL: base, AppToken: appToken, Auth: src, HTTPClient: httpClient, SOAP12: soap12})
	if err != nil {
		return nil, settingError(err)
	}
	return c, nil
}

// tenantURL is SUPEROFFICE_URL, which the tenant's client and its flow control both need.
func tenantURL(v values) (string, error) {
	base := v.str("SUPEROFFICE_URL")
	if base == "" {
		return "", errors.New("SUPEROFFICE_URL is not set: the tenant base URL, such as https://sod.superoffice.com/Cust12345")
	}
	return base, nil
}
