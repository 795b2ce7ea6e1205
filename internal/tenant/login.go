package tenant

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
)

// loginSource is the configured ticket source with its errors marked as the login's, so that
// a refused or misdirected login is told apart from a refused call (Fix).
type loginSource struct{ auth.TicketSource }

func (l loginSource) Ticket(ctx context.Context) (string, error) {
	t, err := l.TicketSource.Ticket(ctx)
	if err != nil {
		return "", &LoginError{Err: err}
	}
	return t, nil
}

// LoginError is an error of the tenant's login, not of the call that needed the ticket:
// a tenant's client returns its ticket source's errors so wrapped. Match it with errors.As.
type LoginError struct{ Err error }

func (e *LoginError) Error() string { return e.Err.Error() }

// Unwrap is the login's error.
func (e *LoginError) Unwrap() error { return e.Err }

// AuthFix is what to check when SuperOffice refuses the credentials, in the words of the
// way s logs in (Mode) and of its Naming.
func (s Spec) AuthFix() string {
	switch s.Mode() {
	case ModeTicket:
		return "check " + s.name(FieldTicket) + " (a fixed ticket expires; " + s.names("/", FieldUsername, FieldPassword) + " or an Online system user log in again by themselves)"
	case ModePassword:
		return "check " + s.names(" and ", FieldUsername, FieldPassword) + " (the on-site user's login), and that this user may use ErpSync"
	default:
		return "check " + s.name(FieldSystemToken) + ", " + s.name(FieldPrivateKey) + " (the app's key that signs it), " + s.name(FieldContextID) + " and " + s.name(FieldAppToken) + " of the Online system user"
	}
}

// movedFix is what a 421 from a tenant with a fixed URL calls for: it moved.
func (s Spec) movedFix() string {
	return "SuperOffice tenant " + cmp.Or(s.ContextID, s.ID, s.URL) + " moved to another host (HTTP 421): set " + s.names(" and ", FieldEnvironment, FieldContextID) +
		" so the worker follows it, or correct " + s.name(FieldURL)
}

// HeldFix is what the task handler's AUTH FAILURE line says (Tenant.AuthFix): AuthFix and,
// for an Online tenant with a fixed URL (no Environment), what a 421 means, since the
// handler holds a batch answered 421 like one whose credentials were refused.
func (s Spec) HeldFix() string {
	if s.Environment != "" {
		return s.AuthFix()
	}
	u, err := url.Parse(strings.TrimSpace(s.URL))
	if s.ContextID == "" && (err != nil || !strings.HasSuffix(strings.ToLower(u.Hostname()), ".superoffice.com")) {
		return s.AuthFix()
	}
	return s.AuthFix() + "; if SuperOffice answered 421: " + s.movedFix()
}

// Fix says what to change when err is SuperOffice refusing the login or the ticket, or
// nothing answering at the configured address; "" for any other error.
func (s Spec) Fix(err error) string {
	var he *erpsync.HTTPError
	var le *LoginError
	mode := s.Mode()
	switch {
	case errors.Is(err, erpsync.ErrLoginRefused):
		if mode == ModePassword {
			return "SuperOffice refused the login of " + s.name(FieldUsername) + ": check " + s.names(" and ", FieldUsername, FieldPassword)
		}
		return "SuperOffice refused the system-user login: " + s.AuthFix()
	case erpsync.IsTicketError(err):
		if mode == ModeTicket {
			return "SuperOffice rejected " + s.name(FieldTicket) + ": " + s.AuthFix()
		}
		return "SuperOffice rejected the ticket of a fresh login: " + s.AuthFix()
	case errors.As(err, &he) && he.StatusCode == http.StatusMisdirectedRequest:
		return s.movedFix()
	case errors.As(err, &he) && he.StatusCode == http.StatusNotFound:
		if errors.As(err, &le) && mode == ModeSystemUser {
			return "nothing answers at " + s.name(FieldLoginURL) + " (HTTP 404): check it, e.g. https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate"
		}
		return "nothing answers at " + s.name(FieldURL) + " (HTTP 404): check the tenant's path, e.g. https://sod.superoffice.com/Cust12345 (the base, without /Remote/… or /api/…)"
	}
	return ""
}

// WithFix is err's message on one line, led by what to change when Fix knows it.
func (s Spec) WithFix(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if f := s.Fix(err); f != "" {
		return f + " (" + msg + ")"
	}
	return msg
}

// CheckLogin tries the tenant's login once, in the background, and logs "login ok" or why
// it failed and what to change, so that wrong credentials show at start rather than at the
// first batch. It goes through the tenant's client, under flow control; a refusal is cached
// by the ticket source like any other. Nothing waits for it and it is not retried; the
// returned stop cancels it and waits for it to end. A fixed ticket has no login: nothing is
// tried. Once it is done, the tenant's idle connections are closed and, unless a request is
// in flight, its transport is let go (made again at the next request): a tenant with nothing
// to do holds neither (a thousand tenants would otherwise keep a connection each, with its
// two goroutines and 8 KiB of buffers, until the transport's idle timeout, and 2 KiB of the
// transport's bookkeeping for good).
func (t *Tenant) CheckLogin(timeout time.Duration, log zerolog.Logger) (stop func()) {
	return CheckLogins([]*Tenant{t}, 1, timeout, log)
}

// CheckLogins is CheckLogin for each of ts, at most parallel at once (less than one: one),
// in order: a fleet of a thousand tenants does not send a thousand logins in the same
// second (SuperOffice Online takes every system user's at one login service). Each login's
// timeout starts when it is sent. stop cancels those not done and waits for them to end.
func CheckLogins(ts []*Tenant, parallel int, timeout time.Duration, log zerolog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		var logins sync.WaitGroup
		defer logins.Wait()
		sem := make(chan struct{}, max(parallel, 1))
		for _, t := range ts {
			if t.Login == nil {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			logins.Go(func() {
				defer func() { <-sem }()
				t.checkLogin(ctx, timeout, log)
			})
		}
	})
	return func() { cancel(); wg.Wait() }
}

// checkLogin is one tenant's login check (CheckLogin).
func (t *Tenant) checkLogin(ctx context.Context, timeout time.Duration, log zerolog.Logger) {
	if t.Spec.ID != "" {
		log = log.With().Str("tenant", t.Spec.ID).Logger()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := t.Login(ctx)
	if t.transport != nil {
		t.transport.release()
	}
	switch {
	case err == nil:
		log.Info().Str("superoffice_auth", t.Mode).Msg("login ok")
	case errors.Is(err, erpsync.ErrLoginRefused):
		log.Error().Str("superoffice_auth", t.Mode).Err(err).Msg("login refused: " + t.AuthFix)
	case errors.Is(err, context.Canceled):
	default:
		log.Warn().Str("superoffice_auth", t.Mode).Msg("login at start failed: " + t.Spec.WithFix(err))
	}
}
