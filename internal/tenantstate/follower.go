package tenantstate

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
)

// Bounds of the time between two questions to the state API, whatever its ValidUntil says.
const (
	// MinRecheck is the least time an answer is used: a ValidUntil nearer (or past) does not
	// make the fleet ask more often than this.
	MinRecheck = 10 * time.Second
	// MaxRecheck is the most time an answer of a running tenant is used.
	MaxRecheck = time.Hour
	// MaxPausedRecheck is the most time an answer of a tenant that is not running is used
	// (and how long a Suspend or Delete notification pauses before the state API is asked):
	// a pause outlasts the state by at most this long.
	MaxPausedRecheck = time.Minute
	// MinForceInterval is the least time between two forced questions (after a 421, a
	// connection error or a 503 from the tenant's host) for the whole fleet.
	MinForceInterval = 5 * time.Second
)

// Config configures New. One Follower per tenant.
type Config struct {
	// ContextID is the tenant's context identifier, e.g. "Cust12345". Required.
	ContextID string
	// Tenant is erpresync's ID of the tenant ("" the implicit tenant), so that Pauses can say
	// whose run a pause holds, and a tenant's reports show its own pauses only.
	Tenant string
	// Environment is the SuperOffice environment's base URL: https://sod.superoffice.com,
	// https://qaonline.superoffice.com or https://online.superoffice.com (where the state API,
	// the JWKS and the logins live). Empty: no state API; FixedURL is used as it is.
	Environment string
	// FixedURL is the tenant URL the SOAP and REST clients are configured with. With an
	// Environment it is the placeholder whose requests are sent to the tenant's current host
	// (any URL whose path holds the ContextID segment, e.g. the netserver_url claim
	// https://sod2.superoffice.com/Cust12345/Remote/Services88/); empty means
	// Environment + "/" + ContextID (BaseURL). Without an Environment it is required and
	// requests go to it unchanged; a 421 then fails with ErrTenantMoved.
	FixedURL string
	// Redis holds the answer shared by all workers. Required with an Environment.
	Redis redis.UniversalClient
	// HTTPClient asks the state API. It must not be the client whose transport is
	// Follower.Transport. Nil: a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives one line per state change and the warnings. Zero value: none.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now. Worker clocks must agree to well within
	// MinRecheck.
	Now func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.ContextID == "" || strings.ContainsAny(c.ContextID, "/?#{} "):
		return &erpsync.ConfigError{Field: "tenantstate.Config.ContextID", What: "tenant context identifier",
			Problem: fmt.Sprintf("%q: want the tenant's context identifier, such as Cust12345", c.ContextID)}
	case c.Environment == "" && c.FixedURL == "":
		return &erpsync.ConfigError{Field: "tenantstate.Config.Environment", What: "SuperOffice environment",
			Problem: "is missing, and so is a fixed tenant URL: set the environment (such as https://online.superoffice.com) or the tenant's URL"}
	case c.Environment != "" && c.Redis == nil:
		return &erpsync.ConfigError{Field: "tenantstate.Config.Redis", What: "tenant state's Redis client", Problem: "is missing"}
	}
	if c.Environment != "" {
		u, err := url.Parse(c.Environment)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return &erpsync.ConfigError{Field: "tenantstate.Config.Environment", What: "SuperOffice environment",
				Problem: fmt.Sprintf("%q: want a base URL without a path, such as https://online.superoffice.com", c.Environment)}
		}
	}
	return nil
}

// Follower follows one tenant's state and host. Safe for concurrent use.
type Follower struct {
	cfg    Config
	env    string   // Environment without a trailing slash; "" when fixed
	base   *url.URL // the placeholder tenant root: scheme, host, path through the ContextID segment
	rdb    redis.UniversalClient
	client *http.Client
	log    zerolog.Logger
	now    func() time.Time
	key    string // shared answer; lock and replay keys share its hash tag

	mu   sync.Mutex
	last record // the last answer this process saw (Status)
}

// New checks cfg and returns the tenant's Follower. It does not ask the state API: the
// first request through Transport (or Refresh) does.
func New(cfg Config) (*Follower, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Follower{cfg: cfg, env: strings.TrimRight(cfg.Environment, "/"), rdb: cfg.Redis,
		client: cfg.HTTPClient, log: cfg.Logger, now: cfg.Now,
		key: stateKey(cfg.ContextID)}
	if f.client == nil {
		f.client = &http.Client{Timeout: 10 * time.Second}
	}
	if f.now == nil {
		f.now = time.Now
	}
	placeholder := cfg.FixedURL
	if placeholder == "" {
		placeholder = f.env + "/" + cfg.ContextID
	}
	base, err := tenantRoot(placeholder, cfg.ContextID, f.env != "")
	if err != nil {
		return nil, &erpsync.ConfigError{Field: "tenantstate.Config.FixedURL", What: "tenant URL", Problem: err.Error()}
	}
	f.base = base
	return f, nil
}

// tenantRoot parses raw and, when following, cuts its path after the ContextID segment.
func tenantRoot(raw, contextID string, following bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%q: want an absolute http(s) URL, such as https://sod2.superoffice.com/%s", raw, contextID)
	}
	root := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimRight(u.Path, "/")}
	if !following {
		return root, nil
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i, s := range segs {
		if strings.EqualFold(s, contextID) {
			root.Path = "/" + strings.Join(segs[:i+1], "/")
			return root, nil
		}
	}
	return nil, fmt.Errorf("%q has no path segment %s: want the tenant's URL, such as https://sod2.superoffice.com/%s", raw, contextID, contextID)
}

// ContextID is the tenant's context identifier.
func (f *Follower) ContextID() string { return f.cfg.ContextID }

// Environment is the environment's base URL without a trailing slash; "" for a fixed tenant.
func (f *Follower) Environment() string { return f.env }

// BaseURL is the tenant URL to configure the SOAP and REST clients with (FixedURL, or
// Environment + "/" + ContextID); Transport sends its requests to the tenant's current host.
func (f *Follower) BaseURL() string { return f.base.String() }

// Status is what status pages and metrics show of a tenant's state.
type Status struct {
	// State is the last state seen; Unknown before the first answer.
	State State `json:"state"`
	// Running is State.Running(): requests go out.
	Running bool `json:"running"`
	// Since is when the fleet first saw State (zero before the first answer).
	Since time.Time `json:"since"`
	// NextCheck is when the state API is asked next.
	NextCheck time.Time `json:"next_check"`
	// Endpoint and API are the tenant's current SOAP root and WebAPI base.
	Endpoint string `json:"endpoint"`
	API      string `json:"api"`
	// Source is what set the state: "state API", or the notification that paused it.
	Source string `json:"source"`
	// LastError is the last failure to ask the state API ("" none).
	LastError string `json:"last_error,omitempty"`
}

// Status returns the last state this process saw (no I/O). A fixed tenant (no Environment)
// reports Running.
func (f *Follower) Status() Status {
	if f.env == "" {
		return Status{State: Running, Running: true, Endpoint: f.base.String(), Source: "fixed URL"}
	}
	f.mu.Lock()
	r := f.last
	f.mu.Unlock()
	return r.status()
}

func (f *Follower) remember(r record) {
	f.mu.Lock()
	prev := f.last
	f.last = r
	f.mu.Unlock()
	if prev.State != r.State || prev.Endpoint != r.Endpoint {
		f.log.Info().Str("tenant", f.cfg.ContextID).Str("state", r.State.String()).Str("endpoint", r.Endpoint).
			Str("source", r.Source).Msg("SuperOffice tenant state")
	}
}
