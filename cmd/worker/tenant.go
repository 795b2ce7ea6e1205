package main

import (
	"context"
	"errors"
	"fmt"
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
	ticket := v.str("SUPEROFFICE_TICKET")
	user, pass := v.str("SUPEROFFICE_USERNAME"), v.str("SUPEROFFICE_PASSWORD")
	sysToken, keyFile := v.str("SUPEROFFICE_SYSTEM_TOKEN"), v.str("SUPEROFFICE_PRIVATE_KEY_FILE")
	ctxID, loginURL := v.str("SUPEROFFICE_CONTEXT_ID"), v.str("SUPEROFFICE_LOGIN_URL")
	appToken := v.str("SUPEROFFICE_APP_TOKEN")

	var modes []string
	if ticket != "" {
		modes = append(modes, "SUPEROFFICE_TICKET")
	}
	if user != "" || pass != "" {
		modes = append(modes, "SUPEROFFICE_USERNAME/SUPEROFFICE_PASSWORD")
	}
	if sysToken != "" || keyFile != "" || ctxID != "" || loginURL != "" {
		modes = append(modes, "SUPEROFFICE_SYSTEM_TOKEN/SUPEROFFICE_PRIVATE_KEY_FILE/SUPEROFFICE_CONTEXT_ID/SUPEROFFICE_LOGIN_URL")
	}
	switch len(modes) {
	case 0:
		return nil, errors.New("no SuperOffice credentials: set SUPEROFFICE_TICKET, or SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD (on-site), or SUPEROFFICE_SYSTEM_TOKEN, SUPEROFFICE_PRIVATE_KEY_FILE, SUPEROFFICE_CONTEXT_ID and SUPEROFFICE_LOGIN_URL (Online system user)")
	case 1:
	default:
		return nil, fmt.Errorf("contradictory SuperOffice credentials: %s are all set; set exactly one way to authenticate", strings.Join(modes, " and "))
	}

	httpClient := superofficeHTTPClient(timeout, wrap)
	out := &tenantSetup{API: api}
	var src auth.TicketSource
	switch {
	case ticket != "":
		src, out.Mode = auth.NewStaticTicket(ticket), modeTicket
	case user != "" || pass != "":
		if user == "" {
			return nil, errors.New("SUPEROFFICE_PASSWORD is set but SUPEROFFICE_USERNAME is not")
		}
		if pass == "" {
			return nil, errors.New("SUPEROFFICE_USERNAME is set but SUPEROFFICE_PASSWORD is not")
		}
		pa, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: base, UserName: user, Password: pass, AppToken: appToken, HTTPClient: httpClient})
		if err != nil {
			return nil, settingError(err)
		}
		src, out.Refreshes, out.Mode = loginSource{pa}, pa.Refreshes, modePassword
	default:
		for _, s := range []struct{ name, val string }{
			{"SUPEROFFICE_SYSTEM_TOKEN", sysToken}, {"SUPEROFFICE_PRIVATE_KEY_FILE", keyFile}, {"SUPEROFFICE_CONTEXT_ID", ctxID},
			{"SUPEROFFICE_LOGIN_URL", loginURL}, {"SUPEROFFICE_APP_TOKEN", appToken},
		} {
			if s.val == "" {
				return nil, fmt.Errorf("%s is not set; the Online system-user login needs SUPEROFFICE_SYSTEM_TOKEN, SUPEROFFICE_PRIVATE_KEY_FILE, SUPEROFFICE_CONTEXT_ID, SUPEROFFICE_LOGIN_URL and SUPEROFFICE_APP_TOKEN", s.name)
			}
		}
		pem, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("SUPEROFFICE_PRIVATE_KEY_FILE: %v", err)
		}
		su, err := auth.NewSystemUserAuth(auth.SystemUserAuthConfig{LoginURL: loginURL, SystemToken: sysToken, PrivateKey: pem, AppToken: appToken, ContextIdentifier: ctxID, HTTPClient: httpClient})
		if err != nil {
			return nil, settingError(err)
		}
		src, out.Refreshes, out.Mode = loginSource{su}, su.Refreshes, modeSystemUser
	}
	if out.Mode != modeTicket {
		out.Login = func(ctx context.Context) error { _, err := src.Ticket(ctx); return err }
	}
	switch api {
	case apiREST:
		c, err := rest.New(rest.Config{BaseURL: base, AppToken: appToken, Auth: src, HTTPClient: httpClient})
		if err != nil {
			return nil, settingError(err)
		}
		out.Client = c
	default:
		c, err := soap.New(soap.Config{BaseURL: base, AppToken: appToken, Auth: src, HTTPClient: httpClient, SOAP12: soap12})
		if err != nil {
			return nil, settingError(err)
		}
		out.Client = c
	}
	return out, nil
}

// tenantURL is SUPEROFFICE_URL, which the tenant's client and its flow control both need.
func tenantURL(v values) (string, error) {
	base := v.str("SUPEROFFICE_URL")
	if base == "" {
		return "", errors.New("SUPEROFFICE_URL is not set: the tenant base URL, such as https://sod.superoffice.com/Cust12345")
	}
	return base, nil
}
