package tenantstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/erpresync/erpresync/internal/flow"
)

// ErrTenantMoved means a tenant with a fixed URL (no Environment to ask) answered 421: it
// lives on another host now.
var ErrTenantMoved = errors.New("SuperOffice tenant moved to another host")

// maxMisdirectedBody caps what is kept of a 421 reply handed back unchanged.
const maxMisdirectedBody = 4 << 10

// Transport returns an http.RoundTripper that sends every request for the tenant (a URL
// under BaseURL) through next (nil: http.DefaultTransport) to the tenant's current host: the
// path after the tenant root goes under the state's Api when it starts with /api, under its
// Endpoint otherwise. While the tenant is not running it sends nothing and returns a
// *flow.PausedError. A reply 421 makes the Follower ask the state API again and the request
// is repeated once on the host found (a 421 was not processed); after a connection error or
// a 503 it asks again at once and, when the tenant turns out not to be running, returns the
// *flow.PausedError instead of the failure (see Explain for flow control's side). Requests for other URLs (logins at the
// environment) pass unchanged. Each request reads the shared answer (one Redis GET), so a
// pause set by any worker holds the next request of every worker.
//
// It belongs above flow control's transport (Follower.Transport(control.Transport(base))):
// a paused tenant then takes no rate-limit token, slot or breaker probe, the repeat after a
// 421 is limited and counted like any request, and the breakers see the host actually
// called.
func (f *Follower) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{f: f, next: next}
}

type transport struct {
	f    *Follower
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	f := t.f
	rest, ok := f.under(req.URL)
	if !ok {
		return t.next.RoundTrip(req)
	}
	if f.env == "" {
		return t.fixed(req)
	}
	ctx := req.Context()
	r, err := f.current(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if !r.State.Running() {
			closeBody(req)
			return nil, f.paused(r)
		}
		out, err := retarget(req, r, rest, attempt > 0)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.next.RoundTrip(out)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				if pe := f.pausedAfter(ctx, r); pe != nil {
					return nil, pe
				}
			}
			return nil, err
		case resp.StatusCode == http.StatusServiceUnavailable:
			if pe := f.pausedAfter(ctx, r); pe != nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMisdirectedBody))
				resp.Body.Close()
				return nil, pe
			}
			return resp, nil
		case resp.StatusCode != http.StatusMisdirectedRequest || attempt > 0 || !canRepeat(req):
			return resp, nil
		}
		kept := keep(resp)
		again, err := f.resolve(ctx, newerThan(r), true)
		if err != nil || (again.State.Running() && again.Endpoint == r.Endpoint && again.API == r.API) {
			// Nowhere else to go (yet): the 421 is the answer.
			return kept, nil
		}
		f.log.Info().Str("tenant", f.cfg.ContextID).Str("from", r.Endpoint).Str("to", again.Endpoint).
			Msg("SuperOffice tenant moved: repeating the request on its new host")
		r = again
	}
}

// fixed sends req unchanged; a 421 becomes ErrTenantMoved.
func (t *transport) fixed(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMisdirectedBody))
	resp.Body.Close()
	return nil, fmt.Errorf("%w: %s answered 421 Misdirected Request; configure the SuperOffice environment of %s so the worker follows it (tenantstate.Config.Environment)",
		ErrTenantMoved, req.URL.Host, t.f.cfg.ContextID)
}

// pausedAfter asks the state API out of turn (deduplicated fleet-wide: at most once per
// MinForceInterval, and not again for a failure the fleet already asked about) after a
// request sent with answer r failed on r's host (a connection error, a 503). It returns the
// hold of a tenant found not running, nil for one that runs; an error of the state API is
// logged and the next request asks again.
func (f *Follower) pausedAfter(ctx context.Context, r record) *flow.PausedError {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	again, err := f.resolve(ctx, newerThan(r), true)
	if err != nil {
		f.log.Warn().Err(err).Str("tenant", f.cfg.ContextID).Msg("tenant state: asking again after a failed request")
		return nil
	}
	if again.State.Running() {
		return nil
	}
	return f.paused(again)
}

// Explain is flow.Config.Explain for the tenant: flow control asks it about a systemic
// failure (a connection error, a 5xx) of a request to the tenant before the failure counts
// toward the tenant's breaker. It asks the state API as the transport does after such a
// failure (the transport's own asking then reuses the answer) and returns the hold of a
// tenant that is not running, nil for one that runs or a fixed tenant: a failure the
// tenant's state explains is the pause's, not an outage's.
func (f *Follower) Explain(ctx context.Context) error {
	if f.env == "" {
		return nil
	}
	r, ok := ctx.Value(sentWithKey{}).(record)
	if !ok {
		var err error
		if r, err = f.read(ctx); err != nil {
			return nil
		}
	}
	if pe := f.pausedAfter(ctx, r); pe != nil {
		return pe
	}
	return nil
}

// sentWithKey carries, in a request's context, the answer the transport sent it with.
type sentWithKey struct{}

// under reports whether u is under the tenant root and returns the path after it.
func (f *Follower) under(u *url.URL) (string, bool) {
	if !strings.EqualFold(u.Scheme, f.base.Scheme) || !strings.EqualFold(u.Host, f.base.Host) {
		return "", false
	}
	if len(u.Path) < len(f.base.Path) || !strings.EqualFold(u.Path[:len(f.base.Path)], f.base.Path) {
		return "", false
	}
	rest := u.Path[len(f.base.Path):]
	if rest != "" && rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// retarget returns a copy of req for r's host: rest (the path after the tenant root) under
// Api when it is /api or below, else under Endpoint. again rewinds the body for a repeat.
func retarget(req *http.Request, r record, rest string, again bool) (*http.Request, error) {
	root := r.Endpoint
	if rest == "/api" || (len(rest) >= 5 && strings.EqualFold(rest[:5], "/api/")) {
		root, rest = r.API, rest[4:]
	}
	u, err := url.Parse(root)
	if err != nil {
		return nil, fmt.Errorf("tenant state: host %q: %w", root, err)
	}
	out := req.Clone(context.WithValue(req.Context(), sentWithKey{}, r))
	out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
	out.URL.Path, out.URL.RawPath = u.Path+rest, ""
	out.Host = ""
	if again && req.GetBody != nil {
		if out.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// canRepeat reports whether req's body can be sent again.
func canRepeat(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// keep reads a 421 reply (up to maxMisdirectedBody) so it can be handed back after the
// connection moved on.
func keep(resp *http.Response) *http.Response {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxMisdirectedBody))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp
}

// paused is the hold a request gets while the tenant is not running.
func (f *Follower) paused(r record) *flow.PausedError {
	now := f.now()
	since, next := time.UnixMilli(r.Since), time.UnixMilli(r.Next)
	return &flow.PausedError{
		Tenant:     f.cfg.ContextID,
		Since:      since,
		NextProbe:  next,
		Reason:     PauseReason(f.cfg.ContextID, r.State, since, next),
		RetryAfter: max(next.Sub(now), time.Second),
		ReasonOnly: true,
	}
}

// PauseReason is the one wording of a tenant's pause, e.g. "SuperOffice: tenant Cust12345
// in OfflineMaintenance since 03:12:05, next check 03:13:05" (UTC).
func PauseReason(contextID string, st State, since, next time.Time) string {
	return fmt.Sprintf("%s since %s, next check %s", PauseWhat(contextID, st),
		since.UTC().Format(time.TimeOnly), next.UTC().Format(time.TimeOnly))
}

// PauseWhat is PauseReason without its times, for pages that show them their own way:
// "SuperOffice: tenant Cust12345 in OfflineMaintenance".
func PauseWhat(contextID string, st State) string {
	return fmt.Sprintf("SuperOffice: tenant %s in %s", contextID, st)
}

// closeBody closes a request body a RoundTripper does not send (its contract).
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
