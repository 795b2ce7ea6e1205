package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/soap"
)

// soapSetup is a SOAP client with the ticket source behind it, so the worker can export
// the source's refresh counter.
type soapSetup struct {
	Client    *soap.Client
	Refreshes func() int64 // nil for a fixed ticket
	Mode      string       // "ticket", "password" or "system-user"
}

// newSOAP builds the SuperOffice client from the settings. Every missing or contradictory
// setting is reported by name, before any call is made.
func newSOAP(v values) (*soapSetup, error) {
	base := v.str("SUPEROFFICE_URL")
	if base == "" {
		return nil, errors.New("SUPEROFFICE_URL is not set: the tenant base URL, such as https://sod.superoffice.com/Cust12345")
	}
	soap12, err := v.bool("SUPEROFFICE_SOAP12")
	if err != nil {
		return nil, err
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

	httpClient := soapHTTPClient(timeout)
	out := &soapSetup{}
	var src auth.TicketSource
	switch {
	case ticket != "":
		src, out.Mode = auth.NewStaticTicket(ticket), "ticket"
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
		src, out.Refreshes, out.Mode = pa, pa.Refreshes, "password"
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
		src, out.Refreshes, out.Mode = su, su.Refreshes, "system-user"
	}
	c, err := soap.New(soap.Config{BaseURL: base, AppToken: appToken, Auth: src, HTTPClient: httpClient, SOAP12: soap12})
	if err != nil {
		return nil, settingError(err)
	}
	out.Client = c
	return out, nil
}

// settingError renames the soap package's field names to the settings an operator sets.
func settingError(err error) error {
	r := strings.NewReplacer(
		"soap: Config.BaseURL", "SUPEROFFICE_URL", "soap: PasswordAuthConfig.BaseURL", "SUPEROFFICE_URL",
		"soap: Config.AppToken", "SUPEROFFICE_APP_TOKEN", "soap: SystemUserAuthConfig.LoginURL", "SUPEROFFICE_LOGIN_URL",
		"soap: SystemUserAuthConfig.PrivateKey", "SUPEROFFICE_PRIVATE_KEY_FILE", "soap: SystemUserAuthConfig.AppToken", "SUPEROFFICE_APP_TOKEN",
	)
	return errors.New(r.Replace(err.Error()))
}
