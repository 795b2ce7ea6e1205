package flow

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
)

// Transport returns an http.RoundTripper that sends every request through next (nil:
// http.DefaultTransport) under the tenant's flow control, in this order: the breakers (the
// tenant's, and the ERP connection's of the request, see WithConnection; a *PausedError
// when one is open), the shared cool-down, a concurrency slot of the request's ERP
// connection, a token of the rate limit, and the breakers again: whatever opened while the
// request waited holds it back, and a request that goes out while a breaker is half-open is
// its one probe, for all workers. The slot is held until the response body is closed or
// read to its end.
//
// A wait is cut short with a *WaitError when it would not end by the middle of the time
// left to the request's deadline (http.Client.Timeout counts too), so that the call
// itself keeps time to run.
func (c *Control) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{c: c, next: next}
}

type transport struct {
	c    *Control
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	ctx := req.Context()
	var until time.Time
	if dl, ok := ctx.Deadline(); ok {
		until = c.now().Add(dl.Sub(c.now()) / 2)
	}
	bs, held := c.breakers(ctx)
	// A first look holds the request back before it waits for anything.
	if _, err := c.gate(ctx, bs, held, false); err != nil {
		closeBody(req)
		return nil, err
	}
	if err := c.cooldownWait(ctx, until); err != nil {
		closeBody(req)
		return nil, err
	}
	var sl *slot
	if c.cfg.MaxConcurrency > 0 {
		var err error
		if sl, err = c.sem.acquire(ctx, Connection(ctx), c.cfg.MaxConcurrency, until); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	fail := func(err error) (*http.Response, error) {
		if sl != nil {
			sl.release()
		}
		closeBody(req)
		return nil, err
	}
	if err := c.rateWait(ctx, until); err != nil {
		return fail(err)
	}
	// The decision that counts: nothing waits between it and the send.
	probe, err := c.gate(ctx, bs, held, true)
	if err != nil {
		return fail(err)
	}
	c.countRequest()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		if sl != nil {
			sl.release()
		}
		if (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) && !c.explained(ctx) {
			c.tenant.record(ctx, "fail", true, "transport: "+trim(err.Error()), probe)
		}
		return nil, err
	}
	t.observe(ctx, resp, probe)
	if sl != nil {
		resp.Body = &slotBody{ReadCloser: resp.Body, sl: sl}
	}
	return resp, nil
}

// observe feeds a response to the cool-down and the tenant's breaker; probe is the token of
// the tenant's probe the request was ("" none).
func (t *transport) observe(ctx context.Context, resp *http.Response, probe string) {
	c := t.c
	ra, hasRA := erpsync.RetryAfter(resp.Header.Get("Retry-After"), c.now())
	s := resp.StatusCode
	if s == http.StatusTooManyRequests || (s == http.StatusServiceUnavailable && hasRA) {
		if !hasRA {
			ra = DefaultCooldown
		}
		c.setCooldown(ctx, min(ra, c.cfg.MaxCooldown))
		if c.adapt != nil {
			c.adapt.decrease(ctx)
		}
	}
	switch {
	case s >= 500 && s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported && !netServerAnswered(resp):
		if !c.explained(ctx) {
			c.tenant.record(ctx, "fail", true, "HTTP "+strconv.Itoa(s)+" "+http.StatusText(s), probe)
		}
	case s == http.StatusTooManyRequests:
		// Throttling is not an outage: the cool-down handles it.
	default:
		c.tenant.record(ctx, "", true, "", probe)
	}
}

// explained reports whether Config.Explain accounts for a systemic failure of the request
// of ctx (the tenant's state), so that it does not count toward the tenant's breaker.
func (c *Control) explained(ctx context.Context) bool {
	if c.cfg.Explain == nil {
		return false
	}
	err := c.cfg.Explain(ctx)
	if err != nil {
		c.log.Info().Str("tenant", c.cfg.Tenant).Str("because", err.Error()).Msg("flow: a failure the tenant's state explains: not counted toward the breaker")
	}
	return err != nil
}

// netServerAnswered reports whether a 5xx reply came from NetServer itself rather than from
// what stands in front of it (IIS, a proxy, a maintenance page): an HTTP 500 carrying the
// SOAP fault WCF sends (XML) or the WebAPI's error object (JSON, §8 of the protocol notes).
// Then the tenant is up, whichever API answered; the error's class decides the batch.
func netServerAnswered(resp *http.Response) bool {
	if resp.StatusCode != http.StatusInternalServerError {
		return false
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch mt {
	case "text/xml", "application/xml", "application/soap+xml", "application/json", "text/json":
		return true
	}
	return false
}

// slotBody gives the concurrency slot back when the body is closed or read to its end.
type slotBody struct {
	io.ReadCloser
	sl *slot
}

func (b *slotBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.sl.release()
	}
	return n, err
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.sl.release()
	return err
}

// closeBody closes a request body a RoundTripper does not send (its contract).
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func (c *Control) cooldownKey() string { return c.prefix + ":cooldown" }

// setCooldownScript: KEYS cooldown; ARGV until ms, ttl ms. Keeps the later of two cool-downs.
var setCooldownScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 0
`)

// setCooldown makes every worker hold off the tenant for d.
func (c *Control) setCooldown(ctx context.Context, d time.Duration) {
	until := c.now().Add(d)
	err := setCooldownScript.Run(context.WithoutCancel(ctx), c.rdb, []string{c.cooldownKey()}, until.UnixMilli(), max(d.Milliseconds(), 1)).Err()
	if err != nil {
		c.log.Warn().Err(err).Msg("flow: could not record a cool-down")
		return
	}
	c.log.Info().Str("tenant", c.cfg.Tenant).Dur("retry_after", d).Msg("SuperOffice asked to slow down: all workers hold off")
}

// cooldownWait waits out a cool-down in force, for at most until (zero: no limit).
func (c *Control) cooldownWait(ctx context.Context, until time.Time) error {
	v, err := c.rdb.Get(ctx, c.cooldownKey()).Int64()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return err
	}
	end := time.UnixMilli(v)
	d := end.Sub(c.now())
	if d <= 0 {
		return nil
	}
	c.countWait("cooldown")
	if !until.IsZero() && end.After(until) {
		return &WaitError{Reason: "cool-down", RetryAfter: max(d, time.Second)}
	}
	return sleep(ctx, d)
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}
