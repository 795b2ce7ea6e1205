package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/sotest"
)

var errRejected = &erpsync.ExceptionError{Type: "SoSecurityException", Message: "Ticket expired", TicketRejected: true}

// TestSessionCall: a rejected ticket is refreshed once and the call repeated once; a fixed
// ticket is not resent; a fresh ticket rejected too pauses re-logins until the pause ends.
func TestSessionCall(t *testing.T) {
	t.Parallel()
	t.Run("refresh once, then success", func(t *testing.T) {
		t.Parallel()
		var logins atomic.Int64
		s := NewSession(NewTicketCache(func(context.Context) (string, error) { return fmt.Sprint("t", logins.Add(1)), nil }, 0))
		var tickets []string
		r, err := s.Call(bg, func(_ context.Context, ticket string) (*erpsync.Result, error) {
			tickets = append(tickets, ticket)
			if ticket == "t1" {
				return nil, errRejected
			}
			return &erpsync.Result{IsOk: true}, nil
		})
		if err != nil || !r.IsOk || strings.Join(tickets, ",") != "t1,t2" {
			t.Fatalf("got %v, %v with tickets %v", r, err, tickets)
		}
	})
	t.Run("fixed ticket is not resent", func(t *testing.T) {
		t.Parallel()
		s := NewSession(NewStaticTicket("fixed"))
		var calls int
		_, err := s.Call(bg, func(context.Context, string) (*erpsync.Result, error) { calls++; return nil, errRejected })
		if !erpsync.IsTicketError(err) || calls != 1 {
			t.Fatalf("err %v after %d calls, want a ticket error after 1", err, calls)
		}
	})
	t.Run("pause after a rejected fresh ticket", func(t *testing.T) {
		t.Parallel()
		var logins atomic.Int64
		s := NewSession(NewTicketCache(func(context.Context) (string, error) { return fmt.Sprint("t", logins.Add(1)), nil }, 0))
		now := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
		s.SetClock(func() time.Time { return now })
		reject := func(context.Context, string) (*erpsync.Result, error) { return nil, errRejected }
		for range 3 {
			if _, err := s.Call(bg, reject); !erpsync.IsTicketError(err) {
				t.Fatal(err)
			}
		}
		if n := logins.Load(); n != 2 {
			t.Fatalf("%d logins for 3 rejected calls, want 2 (then a pause)", n)
		}
		now = now.Add(minSuspect)
		if _, err := s.Call(bg, reject); !erpsync.IsTicketError(err) || logins.Load() != 3 {
			t.Fatalf("after the pause: %v with %d logins, want 3", err, logins.Load())
		}
	})
	t.Run("ticket source error", func(t *testing.T) {
		t.Parallel()
		s := NewSession(NewTicketCache(func(context.Context) (string, error) { return "", errors.New("down") }, 0))
		if _, err := s.Call(bg, nil); err == nil || !strings.HasPrefix(err.Error(), "get ticket: ") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestPasswordLoginFaultsAndShapes: SOAP 1.1 and 1.2 faults, a BOM, Succeeded=false without
// an exception, and a refusal.
func TestPasswordLoginFaultsAndShapes(t *testing.T) {
	t.Parallel()
	loginOK := strings.Replace(string(sotest.ReadTestdata(t, "login_ok.xml")), "7T:TICKET-PLACEHOLDER==", "7T:fresh==", 1)
	tests := []struct {
		name   string
		status int
		body   string
		check  func(t *testing.T, ticket string, err error)
	}{
		{"ok with a BOM", 200, "\xEF\xBB\xBF" + loginOK, func(t *testing.T, ticket string, err error) {
			if err != nil || ticket != "7T:fresh==" {
				t.Fatalf("got %q, %v", ticket, err)
			}
		}},
		{"refused", 200, string(sotest.ReadTestdata(t, "login_refused.xml")), func(t *testing.T, _ string, err error) {
			if !errors.Is(err, erpsync.ErrLoginRefused) {
				t.Fatalf("err = %v", err)
			}
		}},
		{"SOAP 1.1 fault", 500, string(sotest.ReadTestdata(t, "response_fault11.xml")), func(t *testing.T, _ string, err error) {
			var f *erpsync.FaultError
			if !errors.As(err, &f) || !f.Sender || f.HTTPStatus != 500 {
				t.Fatalf("err = %v, want a sender fault", err)
			}
		}},
		{"SOAP 1.2 fault", 500, string(sotest.ReadTestdata(t, "response_fault12.xml")), func(t *testing.T, _ string, err error) {
			var f *erpsync.FaultError
			if !errors.As(err, &f) || f.Code == "" {
				t.Fatalf("err = %v, want a fault", err)
			}
		}},
		{"Succeeded=false without ExceptionInfo", 200, strings.Replace(loginOK, ">true</h:Succeeded>", ">false</h:Succeeded>", 1), wantProtocol},
		{"truncated", 200, loginOK[:len(loginOK)/2], wantProtocol},
		{"bad boolean", 200, strings.Replace(loginOK, "<AuthenticationSucceeded>true", "<AuthenticationSucceeded>yes", 1), wantProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := sotest.NewServer(t, sotest.CannedReply(tt.status, "text/xml; charset=utf-8", []byte(tt.body)))
			p, err := NewPasswordAuth(PasswordAuthConfig{BaseURL: srv.URL + "/Cust1", UserName: "u", Password: "p4ssw0rd", HTTPClient: &http.Client{}})
			if err != nil {
				t.Fatal(err)
			}
			ticket, err := p.Login(bg)
			tt.check(t, ticket, err)
		})
	}
}

func wantProtocol(t *testing.T, _ string, err error) {
	t.Helper()
	var pe *erpsync.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a *erpsync.ProtocolError", err)
	}
}

// FuzzLoginReply: the login reply parser never panics.
func FuzzLoginReply(f *testing.F) {
	for _, name := range []string{"login_ok.xml", "login_refused.xml", "response_exception.xml", "response_fault11.xml", "response_fault12.xml"} {
		f.Add(sotest.ReadTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = parseLoginReply(body, 200)
	})
}
