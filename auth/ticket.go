package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/httpcall"
)

// TicketSource supplies NetServer tickets (the SOAP Credentials/Ticket header, the REST
// "Authorization: SOTicket" header).
//
// Ticket returns the current ticket, logging in if there is none. Invalidate tells the
// source that NetServer rejected stale; a source that can renew drops it so that the next
// Ticket call fetches a new one, and ignores the call if it already holds a different
// ticket. Implementations must be safe for concurrent use.
type TicketSource interface {
	Ticket(ctx context.Context) (string, error)
	Invalidate(stale string)
}

// StaticTicket is a TicketSource with a fixed ticket, for tests and for tickets obtained
// elsewhere. Invalidate does nothing, so a rejected ticket surfaces as an error from the
// call (a transport does not resend the same ticket). It prints redacted and is safe for
// concurrent use.
type StaticTicket struct {
	ticket string
}

// NewStaticTicket returns a TicketSource that always supplies ticket.
func NewStaticTicket(ticket string) *StaticTicket { return &StaticTicket{ticket: ticket} }

// Ticket returns the fixed ticket; an empty one is an error.
func (s *StaticTicket) Ticket(context.Context) (string, error) {
	if s.ticket == "" {
		return "", errors.New("static ticket is empty")
	}
	return s.ticket, nil
}

// Invalidate does nothing: a fixed ticket cannot be renewed.
func (*StaticTicket) Invalidate(string) {}

// String prints the type with the ticket redacted. It has a value receiver so that a
// dereferenced StaticTicket prints redacted too.
func (s StaticTicket) String() string { return "auth.StaticTicket{" + httpcall.Redacted + "}" }

// GoString is String.
func (s StaticTicket) GoString() string { return s.String() }

// LoginFunc performs one login and returns the new ticket. TicketCache calls it.
type LoginFunc func(ctx context.Context) (string, error)

// refusedPause is how long a TicketCache answers with a refused login before it asks the
// login service again; it doubles with each further refusal, up to maxRefusedPause.
const (
	refusedPause    = 30 * time.Second
	maxRefusedPause = 10 * time.Minute
)

// staleRetry is how long a TicketCache keeps serving a ticket that reached its maximum age
// when fetching a fresh one failed (not refused) before it tries again. A ticket NetServer
// rejects is dropped at once (Invalidate), whatever its age.
const staleRetry = time.Minute

// loginTimeout bounds one login.
const loginTimeout = 30 * time.Second

// TicketCache is a TicketSource that caches the ticket a LoginFunc returns and shares it
// between concurrent callers. After Invalidate(stale) the next Ticket calls fetch exactly
// one new ticket (single flight): callers arriving while a login runs wait for it, and
// callers who later invalidate the same stale ticket change nothing. A failed login is
// not cached — the next Ticket call tries again — except a refused one (erpsync.ErrLoginRefused):
// wrong credentials stay wrong, so for a pause (30 s, doubling with each refusal up
// to 10 min) Ticket returns the refusal without asking the login service again, and a
// worker with hundreds of queued batches does not turn a configuration mistake into a
// login storm.
//
// The login runs detached from the context of the caller who triggered it (so one
// caller giving up does not fail the others), bounded by the login timeout; each caller
// stops waiting when its own context ends. Safe for concurrent use.
type TicketCache struct {
	login        LoginFunc
	maxAge       time.Duration
	loginTimeout time.Duration
	now          func() time.Time

	mu     sync.Mutex
	ticket string
	issued time.Time
	flight *loginFlight

	staleUntil   time.Time     // an aged ticket whose refresh failed is still served until then
	refused      error         // the last refusal, returned until refusedUntil
	refusedUntil time.Time     // zero when the last login was not refused
	refusedFor   time.Duration // the current pause; doubles with each refusal

	refreshes atomic.Int64
}

type loginFlight struct {
	done   chan struct{}
	ticket string
	err    error
}

// NewTicketCache wraps login in a cache. maxAge is how long a ticket is used before a
// fresh one is fetched even though nobody invalidated it; zero or negative means no age
// limit (NetServer tickets have a sliding expiry, and Invalidate handles the rest).
// Each login gets 30 s.
func NewTicketCache(login LoginFunc, maxAge time.Duration) *TicketCache {
	return &TicketCache{login: login, maxAge: maxAge, loginTimeout: loginTimeout, now: time.Now}
}

// Ticket returns the cached ticket, or waits for a login (starting one if none runs).
func (c *TicketCache) Ticket(ctx context.Context) (string, error) {
	c.mu.Lock()
	if now := c.now(); c.ticket != "" && (c.maxAge <= 0 || now.Sub(c.issued) < c.maxAge || now.Before(c.staleUntil)) {
		t := c.ticket
		c.mu.Unlock()
		return t, nil
	}
	if c.refused != nil && c.now().Before(c.refusedUntil) {
		err := c.refused
		c.mu.Unlock()
		return "", err
	}
	f := c.flight
	if f == nil {
		f = &loginFlight{done: make(chan struct{})}
		c.flight = f
		c.refreshes.Add(1)
		go c.run(context.WithoutCancel(ctx), f)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.ticket, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (c *TicketCache) run(ctx context.Context, f *loginFlight) {
	ctx, cancel := context.WithTimeout(ctx, c.loginTimeout)
	defer cancel()
	t, err := c.login(ctx)
	if err == nil && t == "" {
		err = errors.New("login returned an empty ticket")
	}
	c.mu.Lock()
	switch {
	case err == nil:
		c.ticket, c.issued, c.staleUntil = t, c.now(), time.Time{}
		c.refused, c.refusedUntil, c.refusedFor = nil, time.Time{}, 0
	case errors.Is(err, erpsync.ErrLoginRefused):
		t = ""
		c.refusedFor = min(max(2*c.refusedFor, refusedPause), maxRefusedPause)
		c.refused, c.refusedUntil = err, c.now().Add(c.refusedFor)
	case c.ticket != "":
		// Only aged out (nobody said it was rejected): a login service that is down for a
		// while does not stop calls the old ticket can still serve. Try again later.
		t, err = c.ticket, nil
		c.staleUntil = c.now().Add(staleRetry)
	default:
		t = ""
	}
	c.flight = nil
	c.mu.Unlock()
	f.ticket, f.err = t, err
	close(f.done)
}

// Invalidate drops the cached ticket if it is stale; a different (newer) ticket is kept.
func (c *TicketCache) Invalidate(stale string) {
	c.mu.Lock()
	if stale != "" && c.ticket == stale {
		c.ticket = ""
	}
	c.mu.Unlock()
}

// Refreshes returns how many logins the cache has started, the first one included, whether
// or not they succeeded. Use it as a metric: it should grow slowly.
func (c *TicketCache) Refreshes() int64 { return c.refreshes.Load() }

// String prints the cache state without the ticket.
func (c *TicketCache) String() string {
	c.mu.Lock()
	t := c.ticket
	c.mu.Unlock()
	return fmt.Sprintf("auth.TicketCache{Ticket:%s, MaxAge:%s, Refreshes:%d}", httpcall.RedactedIfSet(t), c.maxAge, c.Refreshes())
}

// GoString is String.
func (c *TicketCache) GoString() string { return c.String() }
