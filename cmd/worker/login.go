package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
)

// The ways of logging in to SuperOffice (tenantSetup.Mode); newTenant picks one from the
// settings that are set.
const (
	modeTicket     = "ticket"      // SUPEROFFICE_TICKET, a fixed ticket
	modePassword   = "password"    // SUPEROFFICE_USERNAME/SUPEROFFICE_PASSWORD, on-site
	modeSystemUser = "system-user" // SUPEROFFICE_SYSTEM_TOKEN and friends, Online
)

// loginSource is the configured ticket source with its errors marked as the login's, so that
// a refused or misdirected login is told apart from a refused call (fix).
type loginSource struct{ auth.TicketSource }

func (l loginSource) Ticket(ctx context.Context) (string, error) {
	t, err := l.TicketSource.Ticket(ctx)
	if err != nil {
		return "", &loginError{err: err}
	}
	return t, nil
}

// loginError is an error of the login (not of the call that needed the ticket).
type loginError struct{ err error }

func (e *loginError) Error() string { return e.err.Error() }
func (e *loginError) Unwrap() error { return e.err }

// authFix is what to check when SuperOffice refuses the credentials, in the words of the
// configured login.
func authFix(mode string) string {
	switch mode {
	case modeTicket:
		return "check SUPEROFFICE_TICKET (a fixed ticket expires; SUPEROFFICE_USERNAME/SUPEROFFICE_PASSWORD or an Online system user log in again by themselves)"
	case modePassword:
		return "check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD (the on-site user's login), and that this user may use ErpSync"
	default:
		return "check SUPEROFFICE_SYSTEM_TOKEN, SUPEROFFICE_PRIVATE_KEY_FILE (the app's key that signs it), SUPEROFFICE_CONTEXT_ID and SUPEROFFICE_APP_TOKEN of the Online system user"
	}
}

// fix says what to change when err is SuperOffice refusing the login or the ticket, or
// nothing answering at the configured address; "" for any other error.
func fix(mode string, err error) string {
	var he *erpsync.HTTPError
	var le *loginError
	switch {
	case errors.Is(err, erpsync.ErrLoginRefused):
		if mode == modePassword {
			return "SuperOffice refused the login of SUPEROFFICE_USERNAME: check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD"
		}
		return "SuperOffice refused the system-user login: " + authFix(mode)
	case erpsync.IsTicketError(err):
		if mode == modeTicket {
			return "SuperOffice rejected SUPEROFFICE_TICKET: " + authFix(mode)
		}
		return "SuperOffice rejected the ticket of a fresh login: " + authFix(mode)
	case errors.As(err, &he) && he.StatusCode == http.StatusNotFound:
		if errors.As(err, &le) && mode == modeSystemUser {
			return "nothing answers at SUPEROFFICE_LOGIN_URL (HTTP 404): check it, e.g. https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate"
		}
		return "nothing answers at SUPEROFFICE_URL (HTTP 404): check the tenant's path, e.g. https://sod.superoffice.com/Cust12345 (the base, without /Remote/… or /api/…)"
	}
	return ""
}

// withFix is err's message led by what to change, when fix knows it.
func withFix(mode string, err error) string {
	msg := oneLine(err.Error())
	if f := fix(mode, err); f != "" {
		return f + " (" + msg + ")"
	}
	return msg
}

// checkLogin tries the configured login once, in the background, and logs "login ok" or why
// it failed and what to change, so that wrong credentials show at start rather than at the
// first batch. It goes through the tenant's client, under flow control; a refusal is cached
// by the ticket source like any other. Nothing waits for it and it is not retried; the
// returned stop cancels it and waits for it to end. A fixed ticket has no login: nothing is
// tried.
func checkLogin(s *tenantSetup, timeout time.Duration, log zerolog.Logger) (stop func()) {
	if s.Login == nil {
		return func() {}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		err := s.Login(ctx)
		switch {
		case err == nil:
			log.Info().Str("superoffice_auth", s.Mode).Msg("login ok")
		case errors.Is(err, erpsync.ErrLoginRefused):
			log.Error().Str("superoffice_auth", s.Mode).Err(err).Msg("login refused: " + authFix(s.Mode))
		case errors.Is(err, context.Canceled):
		default:
			log.Warn().Str("superoffice_auth", s.Mode).Msg("login at start failed: " + withFix(s.Mode, err))
		}
	}()
	return func() { cancel(); wg.Wait() }
}
