package flow

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
)

// Defaults of Config.
const (
	DefaultLease           = 30 * time.Second
	DefaultTenantFailures  = 5
	DefaultConnWindow      = 20
	DefaultConnThreshold   = 0.9
	DefaultProbeInitial    = 5 * time.Second
	DefaultProbeMax        = 5 * time.Minute
	DefaultCooldown        = time.Second
	DefaultMaxCooldown     = time.Hour
	defaultProbeLeaseExtra = 30 * time.Second
)

// Config configures New. Zero fields take the documented defaults.
type Config struct {
	// Redis holds the shared state. Required. Every key of one tenant carries the same hash
	// tag, so a Redis Cluster works.
	Redis redis.UniversalClient
	// Tenant names the SuperOffice tenant whose requests this Control limits, e.g. its
	// context id or URL. Required; workers calling the same tenant must use the same name.
	Tenant string
	// Rate is the limit in requests per second for all workers together; decimals are
	// allowed (0.5 is one request every two seconds). Zero: no rate limit.
	Rate float64
	// Burst is how many requests may go out at once after a quiet spell. Zero: 1.
	Burst int
	// Adaptive lowers the rate for all workers when SuperOffice throttles (a 429, or a 503
	// with Retry-After): the rate in force halves (not below Rate/MinAdaptiveShare), then
	// grows back by Rate/AdaptiveRecovery per second up to Rate. Needs Rate > 0.
	Adaptive bool
	// MaxConcurrency is how many requests of one ERP connection may be in flight at once,
	// over all workers. Zero: no cap.
	MaxConcurrency int
	// Lease is how long a concurrency slot stays taken without renewal: a killed worker's
	// slot comes back after at most this long. Zero: DefaultLease (30 s).
	Lease time.Duration
	// TenantFailures is how many systemic failures in a row (transport errors, maintenance
	// pages, 5xx other than an HTTP 500 NetServer itself answered with: a SOAP fault or the
	// WebAPI's error object), seen by any worker, open the tenant's breaker.
	// Zero: DefaultTenantFailures (5).
	TenantFailures int
	// Explain, when not nil, is asked about a systemic failure of a request (a transport
	// error, a 5xx that counts) before it counts toward the tenant's breaker, with the
	// request's context. A non-nil answer (the *PausedError of a tenant whose state says it
	// is not running: tenantstate.Follower.Explain) means the failure is explained: it is not
	// counted, and does not decide a probe.
	Explain func(ctx context.Context) error
	// ConnWindow is how many recent batches per ERP connection the connection breaker looks
	// at, and ConnThreshold the share of them that must have failed with one ErrorCode for
	// it to open (the window must be full). Zero: DefaultConnWindow (20),
	// DefaultConnThreshold (0.9). A negative ConnWindow turns the connection breaker off.
	ConnWindow    int
	ConnThreshold float64
	// ProbeInitial is the first wait of an open breaker before a probe; it doubles after
	// every failed probe up to ProbeMax. Zero: DefaultProbeInitial (5 s), DefaultProbeMax
	// (5 min).
	ProbeInitial time.Duration
	ProbeMax     time.Duration
	// ProbeLease is how long one probe may take before another worker may probe instead.
	// Zero: ProbeInitial + 30 s.
	ProbeLease time.Duration
	// MaxCooldown caps a Retry-After. Zero: DefaultMaxCooldown (1 h).
	MaxCooldown time.Duration
	// Metrics are the series this Control counts in, shared by the Controls of a process
	// (NewMetrics); nil: a set of its own, registered with Registerer.
	Metrics *Metrics
	// Registerer receives the metrics when Metrics is nil; nil registers none.
	Registerer prometheus.Registerer
	// Logger receives one line per breaker transition and the warnings. Zero value: none.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now. Worker clocks must agree to well within a lease.
	Now func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.Redis == nil:
		return &erpsync.ConfigError{Field: "flow.Config.Redis", What: "flow control's Redis client", Problem: "is missing"}
	case c.Tenant == "":
		return &erpsync.ConfigError{Field: "flow.Config.Tenant", What: "tenant name", Problem: "is empty: name the SuperOffice tenant, e.g. by its base URL"}
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return &erpsync.ConfigError{Field: "flow.Config.Rate", What: "rate limit", Problem: fmt.Sprintf("%v: want requests per second >= 0", c.Rate)}
	case c.Burst < 0:
		return &erpsync.ConfigError{Field: "flow.Config.Burst", What: "rate burst", Problem: fmt.Sprintf("%d: want >= 0", c.Burst)}
	case c.MaxConcurrency < 0:
		return &erpsync.ConfigError{Field: "flow.Config.MaxConcurrency", What: "concurrency cap", Problem: fmt.Sprintf("%d: want >= 0", c.MaxConcurrency)}
	case c.ConnThreshold < 0 || c.ConnThreshold > 1:
		return &erpsync.ConfigError{Field: "flow.Config.ConnThreshold", What: "connection breaker threshold", Problem: fmt.Sprintf("%v: want a share in (0, 1]", c.ConnThreshold)}
	case c.Lease != 0 && c.Lease < 300*time.Millisecond:
		return &erpsync.ConfigError{Field: "flow.Config.Lease", What: "slot lease", Problem: fmt.Sprintf("%s: want at least 300ms", c.Lease)}
	case c.Adaptive && c.Rate == 0:
		return &erpsync.ConfigError{Field: "flow.Config.Adaptive", What: "adaptive rate", Problem: "needs a rate limit to adapt"}
	}
	return nil
}

// Control is the flow control of one tenant. Safe for concurrent use; Close stops it.
type Control struct {
	cfg     Config
	rdb     redis.UniversalClient
	prefix  string
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	adapt   *adaptive // nil unless Config.Adaptive
	sem     *semaphore
	tenant  *breaker
	conns   func(conn int) *breaker
	metrics *Metrics
	log     zerolog.Logger
	now     func() time.Time
}

// New checks cfg, applies the defaults and returns a Control.
func New(cfg Config) (*Control, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.TenantFailures <= 0 {
		cfg.TenantFailures = DefaultTenantFailures
	}
	if cfg.ConnWindow == 0 {
		cfg.ConnWindow = DefaultConnWindow
	}
	if cfg.ConnThreshold == 0 {
		cfg.ConnThreshold = DefaultConnThreshold
	}
	if cfg.ProbeInitial <= 0 {
		cfg.ProbeInitial = DefaultProbeInitial
	}
	if cfg.ProbeMax <= 0 {
		cfg.ProbeMax = DefaultProbeMax
	}
	cfg.ProbeMax = max(cfg.ProbeMax, cfg.ProbeInitial)
	if cfg.ProbeLease <= 0 {
		cfg.ProbeLease = cfg.ProbeInitial + defaultProbeLeaseExtra
	}
	if cfg.MaxCooldown <= 0 {
		cfg.MaxCooldown = DefaultMaxCooldown
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	c := &Control{cfg: cfg, rdb: cfg.Redis, prefix: tenantPrefix(cfg.Tenant), log: cfg.Logger, now: now}
	if cfg.Rate > 0 {
		c.limiter = redis_rate.NewLimiter(cfg.Redis)
		// One request per 1/Rate seconds: GCRA's emission interval is Period/Rate.
		c.limit = redis_rate.Limit{Rate: 1, Burst: cfg.Burst, Period: time.Duration(float64(time.Second) / cfg.Rate)}
	}
	if cfg.Adaptive && cfg.Rate > 0 {
		c.adapt = newAdaptive(c)
	}
	c.tenant = c.newBreaker(0, cfg.TenantFailures, 1)
	// c.cfg, not cfg: a closure over cfg would keep a second copy of it on the heap.
	c.conns = func(conn int) *breaker { return c.newBreaker(conn, c.cfg.ConnWindow, c.cfg.ConnThreshold) }
	c.metrics = cfg.Metrics
	if c.metrics == nil {
		c.metrics = NewMetrics(cfg.Registerer) // nil: counted, not registered
	}
	c.metrics.add(c)
	c.sem = newSemaphore(c)
	return c, nil
}

// Close stops renewing leases; slots still held run out by themselves.
func (c *Control) Close() {
	c.metrics.remove(c)
	c.sem.close()
}

// tenantPrefix is the hash-tagged key prefix of a tenant; braces in the name would break
// the tag, so they become underscores.
func tenantPrefix(tenant string) string {
	return "{erpresync:flow:" + strings.NewReplacer("{", "_", "}", "_").Replace(tenant) + "}"
}

type connKey struct{}

// WithConnection returns ctx carrying the ERP connection a request belongs to; the
// concurrency cap counts requests per connection.
func WithConnection(ctx context.Context, conn int) context.Context {
	return context.WithValue(ctx, connKey{}, conn)
}

// Connection returns the ERP connection WithConnection put into ctx; 0 if none.
func Connection(ctx context.Context) int {
	n, _ := ctx.Value(connKey{}).(int)
	return n
}

// Admit asks the ERP connection's breaker whether a batch of conn may call, and returns
// ctx carrying the connection for the transport. A *PausedError when the breaker is open.
// When the batch is the breaker's probe, ctx carries the probe too: the transport lets the
// batch's requests pass the half-open breaker, and no other.
func (c *Control) Admit(ctx context.Context, conn int) (context.Context, error) {
	ctx = WithConnection(ctx, conn)
	if c.cfg.ConnWindow < 0 {
		return ctx, nil
	}
	probe, err := c.gate(ctx, []*breaker{c.conns(conn)}, []string{""}, true)
	if err != nil {
		return ctx, err
	}
	if probe != "" {
		ctx = context.WithValue(ctx, probeKey{}, connProbe{conn: conn, token: probe})
	}
	return ctx, nil
}

type probeKey struct{}

// connProbe is the probe of an ERP connection's breaker that Admit claimed for a batch.
type connProbe struct {
	conn  int
	token string
}

// breakers returns the breakers a request must pass, the tenant's last (the transport
// claims its probe; a connection's probe is claimed by Admit for a whole batch), and the
// probe tokens ctx holds for them.
func (c *Control) breakers(ctx context.Context) ([]*breaker, []string) {
	conn := Connection(ctx)
	if conn == 0 || c.cfg.ConnWindow < 0 {
		return []*breaker{c.tenant}, []string{""}
	}
	held := ""
	if p, ok := ctx.Value(probeKey{}).(connProbe); ok && p.conn == conn {
		held = p.token
	}
	return []*breaker{c.conns(conn), c.tenant}, []string{held, ""}
}

// Outcome reports a batch's answer to the ERP connection's breaker: ok, or the ErrorCode
// SuperOffice answered IsOk=false with. counted=false reports a failure that must not
// count toward opening the breaker (a split half, a retried poison key) but may decide a
// probe. Only the batch Admit made the probe (ctx as Admit returned it) decides a half-open
// breaker; another batch's late answer does not.
func (c *Control) Outcome(ctx context.Context, conn int, errorCode string, ok, counted bool) {
	if c.cfg.ConnWindow < 0 {
		return
	}
	out := ""
	if !ok {
		out = "!" + errorCode
	}
	probe := ""
	if p, isProbe := ctx.Value(probeKey{}).(connProbe); isProbe && p.conn == conn {
		probe = p.token
	}
	c.conns(conn).record(ctx, out, counted || ok, fmt.Sprintf("ErrorCode %q on nearly every batch", errorCode), probe)
}

// Paused returns the *PausedError of the tenant's or conn's open breaker, nil if both are
// closed (or Redis cannot say). It only looks: it never claims a probe.
func (c *Control) Paused(ctx context.Context, conn int) error {
	for _, b := range []*breaker{c.tenant, c.conns(conn)} {
		if b.conn != 0 && c.cfg.ConnWindow < 0 {
			continue
		}
		st, err := readState(ctx, c.rdb, b.state)
		if err != nil || st.State == StateClosed {
			continue
		}
		st.Tenant, st.ErpConnection = c.cfg.Tenant, b.conn
		return st.paused(c.now(), c.cfg.ProbeInitial)
	}
	return nil
}

// transition logs a breaker's state change and counts it.
func (c *Control) transition(conn int, from, to, reason string) {
	ev := c.log.Warn()
	if to == StateClosed {
		ev = c.log.Info()
	}
	scope := "SuperOffice"
	if conn != 0 {
		scope = fmt.Sprintf("ERP connection %d", conn)
	}
	msg := map[string]string{
		StateOpen:     "circuit breaker OPEN: " + scope + " unavailable; all workers hold their batches (no retries used, no dead letters)",
		StateHalfOpen: "circuit breaker half-open: probing " + scope,
		StateClosed:   "circuit breaker closed: " + scope + " answers again; the backlog drains",
	}[to]
	ev.Str("tenant", c.cfg.Tenant).Int("erp_connection", conn).Str("from", from).Str("to", to).Str("reason", reason).Msg(msg)
	c.countTransition(conn, to)
}

// Rate returns the rate limit in force in requests/s: Config.Rate, or less after throttling
// with Config.Adaptive; 0 for no limit.
func (c *Control) Rate(ctx context.Context) float64 {
	if c.adapt != nil {
		return c.adapt.current(ctx)
	}
	return c.cfg.Rate
}

// rateWait takes a token of the rate limit, waiting for at most until (zero: no limit).
func (c *Control) rateWait(ctx context.Context, until time.Time) error {
	if c.limiter == nil {
		return nil
	}
	limit := c.limitNow(ctx)
	waited := false
	for {
		res, err := c.limiter.Allow(ctx, c.prefix, limit)
		if err != nil {
			return fmt.Errorf("flow: rate limit: %w", err)
		}
		if res.Allowed > 0 {
			return nil
		}
		if !waited {
			waited = true
			c.countWait("rate")
		}
		d := res.RetryAfter
		if !until.IsZero() && c.now().Add(d).After(until) {
			return &WaitError{Reason: "rate limit", RetryAfter: max(d, time.Second)}
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}
