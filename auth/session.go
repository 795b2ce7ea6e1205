package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// The bounds of the pause in re-logins after a fresh ticket was rejected too: SuperOffice
// asks for no more than about one new system-user ticket an hour.
const (
	minSuspect = time.Minute
	maxSuspect = time.Hour
)

// Session is how both transports use a TicketSource: each call gets the current ticket;
// when the tenant rejects it (erpsync.IsTicketError: a SOAP ticket exception, a REST 401)
// the ticket is invalidated, a fresh one fetched and the call repeated once.
//
// When the fresh ticket is rejected too, the problem is not the ticket (an Online app not
// granted the ErpSync agent answers the same way): further rejections are returned without
// a new login for a pause of 1 min, doubling up to 1 h with each further rejected fresh
// ticket and cleared by any accepted call. Concurrent callers rejected with the same fresh
// ticket double the pause once, not once each. Safe for concurrent use.
type Session struct {
	src TicketSource

	mu           sync.Mutex
	suspectUntil time.Time
	suspectFor   time.Duration
	distrusted   string // the fresh ticket that set the current pause
	now          func() time.Time
}

// NewSession returns a Session over src.
func NewSession(src TicketSource) *Session {
	return &Session{src: src, now: time.Now}
}

// Source returns the TicketSource.
func (s *Session) Source() TicketSource { return s.src }

// SetClock replaces the clock of the re-login pause (for tests).
func (s *Session) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// Call runs call with a ticket, and once more with a fresh one if the first was rejected
// (see Session). A failure to get a ticket is returned wrapped as "get ticket: …"; call's
// errors are returned as they are.
func (s *Session) Call(ctx context.Context, call func(ctx context.Context, ticket string) (*erpsync.Result, error)) (*erpsync.Result, error) {
	ticket, err := s.ticket(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := call(ctx, ticket)
	if !erpsync.IsTicketError(err) {
		if err == nil {
			s.trusted()
		}
		return resp, err
	}
	if s.suspect() {
		return nil, err
	}
	s.src.Invalidate(ticket)
	fresh, terr := s.ticket(ctx)
	if terr != nil {
		return nil, terr
	}
	if fresh == ticket {
		// The source cannot renew (StaticTicket) or its login handed back the ticket just
		// rejected: no point in resending, and no point in logging in again for every call.
		s.distrust(fresh)
		return nil, err
	}
	resp, err = call(ctx, fresh)
	switch {
	case err == nil:
		s.trusted()
	case erpsync.IsTicketError(err):
		s.distrust(fresh)
	}
	return resp, err
}

func (s *Session) ticket(ctx context.Context) (string, error) {
	t, err := s.src.Ticket(ctx)
	if err != nil {
		return "", fmt.Errorf("get ticket: %w", err)
	}
	if t == "" {
		return "", errors.New("get ticket: ticket source returned an empty ticket")
	}
	return t, nil
}

// suspect reports whether re-logins are paused because a fresh ticket was rejected too.
func (s *Session) suspect() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now().Before(s.suspectUntil)
}

func (s *Session) distrust(fresh string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if fresh == s.distrusted && now.Before(s.suspectUntil) {
		return
	}
	s.distrusted = fresh
	s.suspectFor = min(max(2*s.suspectFor, minSuspect), maxSuspect)
	s.suspectUntil = now.Add(s.suspectFor)
}

func (s *Session) trusted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.suspectFor, s.suspectUntil, s.distrusted = 0, time.Time{}, ""
}

// Describe prints a TicketSource without secrets: the package's own sources redact
// themselves; anything else is shown by type only.
func Describe(a TicketSource) string {
	switch a := a.(type) {
	case nil:
		return "<nil>"
	case *StaticTicket, *PasswordAuth, *SystemUserAuth, *TicketCache:
		return a.(fmt.Stringer).String()
	default:
		return fmt.Sprintf("%T", a)
	}
}
