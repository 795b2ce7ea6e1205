package tenant

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/tenantstate"
	"github.com/erpresync/erpresync/rest"
	"github.com/erpresync/erpresync/soap"
	"github.com/erpresync/erpresync/tasks"
)

// BuildOptions are what Build needs besides the Spec.
type BuildOptions struct {
	// Redis holds flow control's shared state. Nil: no flow control (Tenant.Flow is nil), as
	// for one call (worker call) or the demo.
	Redis redis.UniversalClient
	// FlowMetrics are the flow-control series the tenants of one process share (each series
	// labelled with its tenant); nil: a set of the tenant's own, registered with Registerer.
	FlowMetrics *flow.Metrics
	// Registerer receives flow control's metrics when FlowMetrics is nil; nil registers none.
	Registerer prometheus.Registerer
	// Logger receives flow control's breaker transitions and warnings. Zero value: none.
	Logger zerolog.Logger
	// Wrap, when not nil, wraps the HTTP transport under flow control (so it sees what goes
	// out on the network: calls, logins, repeats).
	Wrap func(http.RoundTripper) http.RoundTripper
	// Now is flow control's clock; nil: time.Now.
	Now func() time.Time
}

// Tenant is one tenant's live parts, built from its Spec: the client of its API, the ticket
// source behind it, its flow control and the one HTTP client under them. Its fields are
// read-only; it is safe for concurrent use. Close it when it is no longer used.
type Tenant struct {
	// Spec is what the tenant was built from.
	Spec Spec
	// Resyncer is the SuperOffice client: *soap.Client or *rest.Client.
	Resyncer tasks.Resyncer
	// API is APISOAP or APIREST.
	API string
	// Mode is ModeTicket, ModePassword or ModeSystemUser.
	Mode string
	// Refreshes counts the ticket source's logins; nil for a fixed ticket.
	Refreshes func() int64
	// Login fetches a ticket as a call would (cached for the calls); nil for a fixed ticket.
	Login func(ctx context.Context) error
	// AuthFix is what to check when SuperOffice refuses the credentials or, with a fixed
	// URL, answers 421 (Spec.HeldFix).
	AuthFix string
	// Name is the tenant's name in flow control, metrics and logs: for the implicit tenant
	// its URL's host and path in lower case (FlowName), for a tenant of the file "@" + ID.
	Name string
	// Flow is the tenant's flow control, under every request of Resyncer; nil without
	// BuildOptions.Redis.
	Flow *flow.Control
	// State follows the tenant's state and host (Spec.Environment): its transport is above
	// Flow, so every request goes to the tenant's current host and none while it is not
	// running. Nil without an Environment.
	State *tenantstate.Follower

	source    auth.TicketSource
	transport *idleTransport // under the client's wrappers, which CheckLogin releases
}

// Source is the tenant's ticket source: an *auth.StaticTicket, *auth.PasswordAuth or
// *auth.SystemUserAuth.
func (t *Tenant) Source() auth.TicketSource { return t.source }

// Build checks spec (Spec.Validate) and builds the tenant: its flow control on opts.Redis,
// the one HTTP client every request to the tenant goes through, the ticket source and the
// client of its API. Every error names the field at fault in spec's Naming. Nothing is sent
// to SuperOffice.
func Build(spec Spec, opts BuildOptions) (*Tenant, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	t := &Tenant{Spec: spec, API: spec.api(), Mode: spec.Mode(), AuthFix: spec.HeldFix(), Name: FlowName(spec)}
	if err := t.follow(opts); err != nil {
		return nil, err
	}
	wrap := opts.Wrap
	if opts.Redis != nil {
		fcfg := spec.flowConfig(t.Name, opts)
		if t.State != nil {
			fcfg.Explain = t.State.Explain
		}
		fc, err := flow.New(fcfg)
		if err != nil {
			return nil, spec.configError(err)
		}
		t.Flow = fc
		wrap = chain(opts.Wrap, fc.Transport)
	}
	if t.State != nil {
		wrap = chain(wrap, t.State.Transport)
	}
	if err := t.buildClient(wrap); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// follow makes t.State when the Spec names an Environment. The state is shared by the fleet
// in Redis, so without opts.Redis (one call, the demo) an Environment is refused: the
// tenant's current URL is given instead.
func (t *Tenant) follow(opts BuildOptions) error {
	s := t.Spec
	if s.Environment == "" {
		return nil
	}
	if opts.Redis == nil {
		return s.errorf(FieldEnvironment, "%s is set, but here there is no Redis to share the tenant's state through: give %s, the tenant's current URL, instead",
			s.name(FieldEnvironment), s.name(FieldURL))
	}
	f, err := tenantstate.New(tenantstate.Config{ContextID: s.ContextID, Tenant: s.ID, Environment: EnvironmentURL(s.Environment), FixedURL: s.URL,
		Redis: opts.Redis, Logger: opts.Logger, Now: opts.Now})
	if err != nil {
		return s.configError(err)
	}
	t.State = f
	return nil
}

// baseURL is the URL the clients are configured with: the Follower's with an Environment.
func (t *Tenant) baseURL() string {
	if t.State != nil {
		return t.State.BaseURL()
	}
	return t.Spec.URL
}

// Close stops the tenant's flow control (its slots' lease renewals). Calls in flight end
// by themselves.
func (t *Tenant) Close() {
	if t.Flow != nil {
		t.Flow.Close()
	}
}

// FlowName is the name of spec's tenant in flow control (its Redis keys), metrics and logs.
// The implicit tenant is named by its URL's host and path, lower case, so that every worker
// configured for it shares its limits whatever the spelling of the URL (and its keys stay
// as they were before tenants). A tenant of the file is "@" + ID: no URL's host starts
// with "@", so no two tenants share a name.
func FlowName(spec Spec) string {
	if spec.ID != "" {
		return flow.TenantName(spec.ID)
	}
	base := strings.TrimSpace(spec.URL)
	if base == "" && spec.Environment != "" {
		base = EnvironmentURL(spec.Environment) + "/" + spec.ContextID
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return strings.ToLower(base)
	}
	return strings.ToLower(u.Host + strings.TrimRight(u.Path, "/"))
}

// flowConfig is spec's flow control named name.
func (s Spec) flowConfig(name string, opts BuildOptions) flow.Config {
	return flow.Config{
		Redis: opts.Redis, Metrics: opts.FlowMetrics, Registerer: opts.Registerer, Logger: opts.Logger, Now: opts.Now, Tenant: name,
		Rate: s.RateLimit, Burst: s.RateBurst, Adaptive: s.RateAdaptive, MaxConcurrency: s.MaxConcurrency,
		Lease: s.SlotLease, TenantFailures: s.BreakerFailures, ProbeInitial: s.BreakerProbe, ProbeMax: s.BreakerProbeMax,
	}
}

// chain is inner, then outer, around a transport; either may be nil.
func chain(inner, outer func(http.RoundTripper) http.RoundTripper) func(http.RoundTripper) http.RoundTripper {
	if inner == nil {
		return outer
	}
	return func(rt http.RoundTripper) http.RoundTripper { return outer(inner(rt)) }
}

// buildClient builds the HTTP client, the ticket source and the client of the API.
func (t *Tenant) buildClient(wrap func(http.RoundTripper) http.RoundTripper) error {
	s := t.Spec
	httpClient, tr := newHTTPClient(s.timeout(), wrap)
	t.transport = tr
	src, err := s.ticketSource(httpClient, t)
	if err != nil {
		return err
	}
	if t.Mode != ModeTicket {
		t.Login = func(ctx context.Context) error { _, err := src.Ticket(ctx); return err }
	}
	if t.API == APIREST {
		c, err := rest.New(rest.Config{BaseURL: t.baseURL(), AppToken: s.AppToken.Reveal(), Auth: src, HTTPClient: httpClient})
		t.Resyncer = c
		return s.configError(err)
	}
	c, err := soap.New(soap.Config{BaseURL: t.baseURL(), AppToken: s.AppToken.Reveal(), Auth: src, HTTPClient: httpClient, SOAP12: s.SOAP12})
	t.Resyncer = c
	return s.configError(err)
}

// ticketSource is the ticket source of the one way to log in (Validate checked it is one),
// logging in through httpClient; it sets t's Refreshes.
func (s Spec) ticketSource(httpClient *http.Client, t *Tenant) (auth.TicketSource, error) {
	switch t.Mode {
	case ModeTicket:
		t.source = auth.NewStaticTicket(s.Ticket.Reveal())
		return t.source, nil
	case ModePassword:
		pa, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: t.baseURL(), UserName: s.Username, Password: s.Password.Reveal(),
			AppToken: s.AppToken.Reveal(), HTTPClient: httpClient})
		if err != nil {
			return nil, s.configError(err)
		}
		t.Refreshes, t.source = pa.Refreshes, pa
		return loginSource{pa}, nil
	}
	su, err := auth.NewSystemUserAuth(auth.SystemUserAuthConfig{LoginURL: s.loginURL(), SystemToken: s.SystemToken.Reveal(),
		PrivateKey: []byte(s.PrivateKey.Reveal()), AppToken: s.AppToken.Reveal(), ContextIdentifier: s.ContextID, HTTPClient: httpClient})
	if err != nil {
		return nil, s.configError(err)
	}
	t.Refreshes, t.source = su.Refreshes, su
	return loginSource{su}, nil
}

// libraryFields maps the fields of the libraries' configurations (erpsync.ConfigError.Field)
// to the Spec's field that feeds them.
var libraryFields = map[string]Field{
	"soap.Config.BaseURL": FieldURL, "rest.Config.BaseURL": FieldURL, "auth.PasswordAuthConfig.BaseURL": FieldURL, "flow.Config.Tenant": FieldURL,
	"soap.Config.AppToken": FieldAppToken, "rest.Config.AppToken": FieldAppToken, "auth.PasswordAuthConfig.AppToken": FieldAppToken,
	"auth.SystemUserAuthConfig.AppToken": FieldAppToken, "auth.PasswordAuthConfig.UserName": FieldUsername,
	"auth.PasswordAuthConfig.Password": FieldPassword, "auth.SystemUserAuthConfig.SystemToken": FieldSystemToken,
	"auth.SystemUserAuthConfig.PrivateKey": FieldPrivateKey, "auth.SystemUserAuthConfig.ContextIdentifier": FieldContextID,
	"auth.SystemUserAuthConfig.LoginURL": FieldLoginURL, "flow.Config.Rate": FieldRateLimit, "flow.Config.Burst": FieldRateBurst,
	"flow.Config.Adaptive": FieldRateAdaptive, "flow.Config.MaxConcurrency": FieldMaxConcurrency, "flow.Config.Lease": FieldSlotLease,
	"tenantstate.Config.FixedURL": FieldURL, "tenantstate.Config.Environment": FieldEnvironment, "tenantstate.Config.ContextID": FieldContextID,
	"flow.Config.TenantFailures": FieldBreakerFailures, "flow.Config.ProbeInitial": FieldBreakerProbe, "flow.Config.ProbeMax": FieldBreakerProbeMax,
}

// configError names the field at fault in a library's refusal (an *erpsync.ConfigError,
// which speaks of the value in words) by the Spec's name for it; any other error, and a
// field no Spec field feeds, is returned as it is.
func (s Spec) configError(err error) error {
	var ce *erpsync.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	if f, ok := libraryFields[ce.Field]; ok {
		return s.errorf(f, "%s", ce.Describe(s.name(f)))
	}
	return err
}

// newHTTPClient is the one HTTP client every request to a SuperOffice tenant goes through,
// whichever the transport: SOAP and REST calls, password and system-user logins, the repeat
// after a ticket refresh. It keeps keep-alive connections sized for the worker's
// concurrency and an overall timeout per request (timeout, which also bounds the wait for
// the response headers). wrap, when not nil, wraps the transport (flow control), so that it
// sees every one of those requests. The transport under the wrappers (idleTransport: made at
// the first request, let go when idle) is returned too.
func newHTTPClient(timeout time.Duration, wrap func(http.RoundTripper) http.RoundTripper) (*http.Client, *idleTransport) {
	tr := &idleTransport{timeout: timeout}
	var rt http.RoundTripper = tr
	if wrap != nil {
		rt = wrap(tr)
	}
	return &http.Client{Transport: rt, Timeout: timeout}, tr
}
