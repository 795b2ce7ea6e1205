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
	refused := fmt.Errorf("get ticket: %w", &loginError{err: erpsync.ErrLoginRefused})
	ticket := &erpsync.ExceptionError{Type: "SoSecurityException", TicketRejected: true}
	notFound := &erpsync.HTTPError{StatusCode: http.StatusNotFound}
	loginNotFound := fmt.Errorf("get ticket: %w", &loginError{err: notFound})
	for _, tt := range []struct {
		mode string
		err  error
		want string // prefix of the fix; "" for none
	}{
		{modePassword, refused, "SuperOffice refused the login of SUPEROFFICE_USERNAME: check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD"},
		{modeSystemUser, refused, "SuperOffice refused the system-user login: check SUPEROFFICE_SYSTEM_TOKEN, SUPEROFFICE_PRIVATE_KEY_FILE"},
		{modeTicket, ticket, "SuperOffice rejected SUPEROFFICE_TICKET: check SUPEROFFICE_TICKET"},
		{modePassword, ticket, "SuperOffice rejected the ticket of a fresh login: check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD"},
		{modeTicket, notFound, "nothing answers at SUPEROFFICE_URL (HTTP 404)"},
		{modePassword, loginNotFound, "nothing answers at SUPEROFFICE_URL (HTTP 404)"},
		{modeSystemUser, loginNotFound, "nothing answers at SUPEROFFICE_LOGIN_URL (HTTP 404)"},
		{modeSystemUser, notFound, "nothing answers at SUPEROFFICE_URL (HTTP 404)"},
		{modePassword, &erpsync.HTTPError{StatusCode: http.StatusBadGateway}, ""},
		{modePassword, context.DeadlineExceeded, ""},
	} {
		got := fix(tt.mode, tt.err)
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("fix(%s, %v) = %q, want %q…", tt.mode, tt.err, got, tt.want)
		}
		if m := goName.FindString(got); m != "" {
			t.Errorf("fix(%s, %v) names %q", tt.mode, tt.err, m)
		}
	}
}
