package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/tenant"
)

// TestLoginCheckedAtStart: the worker tries its login once at start, without holding up the
// start: a wrong password is logged as refused, naming the settings to fix, and a batch held
// for it says the same (not "client secret"); a right one logs "login ok".
func TestLoginCheckedAtStart(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	for _, tt := range []struct {
		name, password string
		want           []string // log lines that must appear, in any order
	}{
		{name: "wrong password", password: "not-the-password", want: []string{
			`"login refused: check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD`,
			`"AUTH FAILURE: SuperOffice refused our credentials; check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD`,
		}},
		{name: "right password", password: testPassword, want: []string{`"message":"login ok"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := redistest.New(t)
			env := workerEnv(db, sim)
			env["SUPEROFFICE_PASSWORD"] = tt.password
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			logw := lockedWriter{&mu, &bytes.Buffer{}}
			done := make(chan int, 1)
			go func() { done <- run(ctx, nil, &bytes.Buffer{}, logw, envFunc(env)) }()
			if tt.password != testPassword {
				// A batch for the worker: held for the auth failure, never dead-lettered.
				waitFor(t, 30*time.Second, func() (bool, string) {
					return strings.Contains(logw.String(), "worker started"), "worker not started:\n" + logw.String()
				})
				submit(t, db, "login-run", erpsync.ActorCustomer, testKeys("L", 2), 2)
			}
			waitFor(t, 30*time.Second, func() (bool, string) {
				out := logw.String()
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						return false, "log lacks " + w + ":\n" + out
					}
				}
				return true, ""
			})
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("exit %d, want 0:\n%s", code, logw.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatal("worker did not stop")
			}
			out := logw.String()
			for _, never := range []string{"client secret", tt.password} {
				if strings.Contains(out, never) {
					t.Errorf("log shows %q:\n%s", never, out)
				}
			}
		})
	}
}

// TestFix: what the worker tells an operator to change, for each way of logging in.
func TestFix(t *testing.T) {
	t.Parallel()
	refused := fmt.Errorf("get ticket: %w", &tenant.LoginError{Err: erpsync.ErrLoginRefused})
	ticket := &erpsync.ExceptionError{Type: "SoSecurityException", TicketRejected: true}
	notFound := &erpsync.HTTPError{StatusCode: http.StatusNotFound}
	loginNotFound := fmt.Errorf("get ticket: %w", &tenant.LoginError{Err: notFound})
	for _, tt := range []struct {
		mode string
		err  error
		want string // prefix of the fix; "" for none
	}{
		{tenant.ModePassword, refused, "SuperOffice refused the login of SUPEROFFICE_USERNAME: check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD"},
		{tenant.ModeSystemUser, refused, "SuperOffice refused the system-user login: check SUPEROFFICE_SYSTEM_TOKEN, SUPEROFFICE_PRIVATE_KEY_FILE"},
		{tenant.ModeTicket, ticket, "SuperOffice rejected SUPEROFFICE_TICKET: check SUPEROFFICE_TICKET"},
		{tenant.ModePassword, ticket, "SuperOffice rejected the ticket of a fresh login: check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD"},
		{tenant.ModeTicket, notFound, "nothing answers at SUPEROFFICE_URL (HTTP 404)"},
		{tenant.ModePassword, loginNotFound, "nothing answers at SUPEROFFICE_URL (HTTP 404)"},
		{tenant.ModeSystemUser, loginNotFound, "nothing answers at SUPEROFFICE_LOGIN_URL (HTTP 404)"},
		{tenant.ModeSystemUser, notFound, "nothing answers at SUPEROFFICE_URL (HTTP 404)"},
		{tenant.ModePassword, &erpsync.HTTPError{StatusCode: http.StatusBadGateway}, ""},
		{tenant.ModePassword, context.DeadlineExceeded, ""},
	} {
		got := implicitSpec(tt.mode).Fix(tt.err)
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("fix(%s, %v) = %q, want %q…", tt.mode, tt.err, got, tt.want)
		}
		if m := goName.FindString(got); m != "" {
			t.Errorf("fix(%s, %v) names %q", tt.mode, tt.err, m)
		}
	}
}

// implicitSpec is an implicit tenant that logs in by mode, named by the settings.
func implicitSpec(mode string) tenant.Spec {
	s := tenant.Spec{URL: "https://sod.superoffice.com/Cust12345", Naming: implicitNames}
	switch mode {
	case tenant.ModeTicket:
		s.Ticket = tenant.NewSecret("7T:x")
	case tenant.ModePassword:
		s.Username, s.Password = "u", tenant.NewSecret("p")
	default:
		s.SystemToken, s.PrivateKey, s.ContextID, s.LoginURL = tenant.NewSecret("t"), tenant.NewSecret("k"), "Cust12345", "https://sod.superoffice.com/Login"
	}
	return s
}
