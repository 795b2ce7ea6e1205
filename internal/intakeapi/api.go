package intakeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/tasks"
)

// Limits and defaults of Config.
const (
	// DefaultMaxBody is Config.MaxBody's zero value: 256 MiB, about 20 million keys of a
	// dozen characters.
	DefaultMaxBody int64 = 256 << 20
	// MaxTrickleBody caps a POST /v1/keys body: trickle intake is for a few keys at a
	// time; bulk goes through PUT /v1/runs/{run}/keys.
	MaxTrickleBody int64 = 1 << 20
	// DefaultMaxSubmissions is Config.MaxSubmissions's zero value.
	DefaultMaxSubmissions = 4
	// DefaultBodyTimeout is Config.BodyTimeout's zero value.
	DefaultBodyTimeout = 30 * time.Second
	// DefaultSlotWait is Config.SlotWait's zero value.
	DefaultSlotWait = 30 * time.Second
	// DefaultSubmitTimeout is Config.SubmitTimeout's zero value: ample for MaxBody's 20
	// million keys (about one million a second with Redis at hand).
	DefaultSubmitTimeout = 30 * time.Minute
	// DefaultRunsLimit is how many runs GET /v1/runs lists without ?limit.
	DefaultRunsLimit = 20
	// MaxRunsLimit is the largest ?limit GET /v1/runs accepts.
	MaxRunsLimit = 1000
	// Origin names the API as a run's producer in the ledger (RunMeta.Source).
	Origin = "http"
	// MinTokenLength is the shortest token New accepts: a bearer token is a password
	// that every request carries, so it must not be guessable.
	MinTokenLength = 16
)

// Config configures the API.
type Config struct {
	// Redis holds asynq's queues and the ledger; required. The API never closes it.
	Redis redis.UniversalClient
	// Queue is the asynq queue the API enqueues into. Zero value: tasks.DefaultQueue.
	Queue string
	// TrickleQueue is the queue of trickle keys (POST /v1/keys), which the worker serves
	// before the bulk queues. Zero value: tasks.TrickleQueue.
	TrickleQueue string
	// Tokens are the bearer tokens of the implicit tenant (INTAKE_TOKENS), let in on the
	// routes under Prefix that are not a tenant's; each at least MinTokenLength characters.
	// The API keeps only their SHA-256 digests, as of Tenants' tokens. Tokens and Tenants
	// together need at least one token.
	Tokens []string
	// Tenants are the tenants served besides the implicit one, each on its routes under
	// TenantPrefix+ID with its own tokens (SetTenants replaces them at run time). Zero
	// value: the implicit tenant only.
	Tenants []Tenant
	// MaxBody caps a PUT body in bytes; a bigger one is refused with 413. Zero value:
	// DefaultMaxBody.
	MaxBody int64
	// TempDir is where PUT bodies are spooled while they arrive (as much disk as the body).
	// Zero value: os.TempDir().
	TempDir string
	// MaxSubmissions is how many PUT bodies are enqueued at once (each on Concurrency
	// goroutines). A body is spooled to disk before it waits for one of these slots, so a
	// slow client holds none; one that finds them all taken for SlotWait is answered 503
	// with Retry-After. Zero value: DefaultMaxSubmissions.
	MaxSubmissions int
	// BodyTimeout is the longest a request body may pause: every read must bring a byte
	// within it, else the request fails with 408 and nothing is enqueued. It bounds a
	// stalled client, not a long body. Zero value: DefaultBodyTimeout.
	BodyTimeout time.Duration
	// SlotWait is how long a whole body waits for a submission slot before it is answered
	// 503. Zero value: DefaultSlotWait.
	SlotWait time.Duration
	// SubmitTimeout bounds a submission once its body is whole; from then on it no longer
	// depends on the client's connection. Zero value: DefaultSubmitTimeout.
	SubmitTimeout time.Duration
	// Concurrency is intake.ProducerConfig.Concurrency. Zero value: intake.DefaultConcurrency.
	Concurrency int
	// Logger receives one line per submission and per failed request; never a token.
	// Zero value: zerolog's zero Logger, which logs nothing.
	Logger zerolog.Logger
	// Now is the clock of the reports' rates. Zero value: time.Now.
	Now func() time.Time
}

// API serves the intake routes. It is an http.Handler, safe for concurrent use.
type API struct {
	cfg  Config
	insp *asynq.Inspector
	// access is the tokens and each tenant's scope; setMu serializes SetTenants.
	access atomic.Pointer[access]
	setMu  sync.Mutex
	mux    *http.ServeMux
	slots  chan struct{} // one per PUT being taken in

	// Submissions detached from their clients (a whole body is in) run under life, which
	// Drain ends; mu guards draining and the count of those in flight, work.
	life     context.Context
	stop     context.CancelFunc
	mu       sync.Mutex
	draining bool
	work     sync.WaitGroup
	// beforeSubmit, when set (in tests), runs as a detached submission starts.
	beforeSubmit func()
}

// errDraining refuses work that arrives while the API drains (the worker shutting down).
var errDraining = errors.New("the worker is shutting down")

// detach starts a piece of work that must finish whatever the client does, but not outlive
// Drain: its context is life's, with the deadline SubmitTimeout, and done must be called
// when it ends. It fails with errDraining once Drain has begun.
func (a *API) detach() (ctx context.Context, done func(), err error) {
	a.mu.Lock()
	if a.draining {
		a.mu.Unlock()
		return nil, nil, errDraining
	}
	a.work.Add(1)
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(a.life, a.cfg.SubmitTimeout)
	if a.beforeSubmit != nil {
		a.beforeSubmit()
	}
	return ctx, func() { cancel(); a.work.Done() }, nil
}

// Drain refuses new submissions (503) and waits for those in flight to finish, until ctx
// ends; then it interrupts them (each stops at a batch boundary, its run incomplete until
// sent again) and waits for them to return. The worker calls it before it closes Redis.
func (a *API) Drain(ctx context.Context) error {
	a.mu.Lock()
	a.draining = true
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.work.Wait(); close(done) }()
	select {
	case <-done:
		a.stop()
		return nil
	case <-ctx.Done():
	}
	a.stop()
	<-done
	return ctx.Err()
}

// route is one endpoint. The OpenAPI document is checked against this table by a test:
// every route documented, every documented operation served.
type route struct {
	method, path string
	public       bool // served without a token
	tenant       bool // a tenant's route, under TenantPrefix+"{tenant}/"
	handle       func(a *API, w http.ResponseWriter, r *http.Request)
}

var routes = withTenantRoutes([]route{
	{method: http.MethodPut, path: "/v1/runs/{run}/keys", handle: (*API).putKeys},
	{method: http.MethodPost, path: "/v1/keys", handle: (*API).postKeys},
	{method: http.MethodGet, path: "/v1/runs", handle: (*API).listRuns},
	{method: http.MethodGet, path: "/v1/runs/{run}", handle: (*API).getRun},
	{method: http.MethodGet, path: "/v1/runs/{run}/dead", handle: (*API).getDead},
	{method: http.MethodGet, path: "/v1/openapi.json", public: true, handle: (*API).openAPI},
})

// Prefix is the path every route starts with; cmd/worker mounts the API there.
const Prefix = "/v1/"

// New returns the API. It does not contact Redis.
func New(cfg Config) (*API, error) {
	if cfg.Redis == nil {
		return nil, errors.New("intakeapi: Config.Redis is required")
	}
	if len(cfg.Tokens) == 0 && len(cfg.Tenants) == 0 {
		return nil, errors.New("intakeapi: no tokens: give at least one")
	}
	if cfg.MaxBody < 0 {
		return nil, fmt.Errorf("intakeapi: MaxBody %d: must not be negative", cfg.MaxBody)
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxSubmissions < 0 {
		return nil, fmt.Errorf("intakeapi: MaxSubmissions %d: must not be negative", cfg.MaxSubmissions)
	}
	if cfg.MaxSubmissions == 0 {
		cfg.MaxSubmissions = DefaultMaxSubmissions
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"BodyTimeout", &cfg.BodyTimeout, DefaultBodyTimeout}, {"SlotWait", &cfg.SlotWait, DefaultSlotWait}, {"SubmitTimeout", &cfg.SubmitTimeout, DefaultSubmitTimeout}} {
		if *d.v < 0 {
			return nil, fmt.Errorf("intakeapi: %s %s: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.Queue == "" {
		cfg.Queue = tasks.DefaultQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &API{cfg: cfg, insp: asynq.NewInspectorFromRedisClient(cfg.Redis), mux: http.NewServeMux(),
		slots: make(chan struct{}, cfg.MaxSubmissions)}
	a.life, a.stop = context.WithCancel(context.Background())
	acc, err := a.newAccess(cfg.Tokens, cfg.Tenants, nil)
	if err != nil {
		return nil, err
	}
	a.access.Store(acc)
	a.cfg.Tenants = nil // SetTenants replaces them; the access holds what is current
	for _, rt := range routes {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.handle(a, w, r) })
		if rt.public {
			a.mux.Handle(rt.method+" "+rt.path, h)
		} else {
			a.mux.Handle(rt.method+" "+rt.path, a.authorize(rt.tenant, h))
		}
	}
	return a, nil
}

// ServeHTTP routes r. Paths and methods the API does not serve get a JSON 404 or 405
// (after the token check, so that callers without one learn nothing of the routes).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r) // which sets the path values, as Handler does not
		return
	}
	if _, _, ok := a.authenticate(w, r); !ok {
		return
	}
	// The mux's own answer (404, 405 with Allow, a redirect for an unclean path), in JSON.
	c := &captured{h: w.Header()}
	h.ServeHTTP(c, r)
	switch c.code {
	case http.StatusMethodNotAllowed:
		writeError(w, c.code, &apiError{Message: fmt.Sprintf("%s %s: method not allowed here (allowed: %s)", r.Method, r.URL.Path, c.h.Get("Allow"))})
	case http.StatusNotFound:
		writeError(w, c.code, &apiError{Message: fmt.Sprintf("%s %s: no such route; GET %sopenapi.json lists them", r.Method, r.URL.Path, Prefix)})
	default:
		w.WriteHeader(c.code)
	}
}

// captured keeps the status of a response and drops its body.
type captured struct {
	h    http.Header
	code int
}

func (c *captured) Header() http.Header { return c.h }
func (c *captured) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *captured) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}
