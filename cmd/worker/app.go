package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/intakeapi"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/erpresync/erpresync/internal/tenant"
	"github.com/erpresync/erpresync/retry"
	"github.com/erpresync/erpresync/tasks"
)

// appConfig is the worker's settings: plain values, parsed from the environment and flags
// by workerSettings (the demo then overrides a few). What is built from them and lives
// while the worker runs (clients, listener, registry, logger) is in appDeps.
type appConfig struct {
	RedisOpt        asynq.RedisConnOpt
	Concurrency     int
	Queues          map[string]int
	TrickleQueue    string // served strictly before Queues; "" for none
	ShutdownTimeout time.Duration
	BusinessRetries int
	BusinessDelay   time.Duration
	ResultRetention time.Duration
	BatchSize       int
	TrickleMaxDelay time.Duration
	TrickleGrace    time.Duration
	ReconcileEvery  time.Duration // how often archived tasks are checked against the ledger
	// LedgerRetention is how long finished runs stay in the ledger; zero keeps them for ever.
	LedgerRetention time.Duration
	// PruneEvery is how often the worker prunes the ledger; zero means once an hour.
	PruneEvery time.Duration
	// TaskCheckInterval is how long an idle worker waits before it looks for tasks again;
	// zero means asynq's default (1 s). Benchmarks lower it to measure throughput, not polls.
	TaskCheckInterval time.Duration
	HTTPAddr          string // the listener's address (WORKER_HTTP_ADDR); "off" for none
	DashboardUser     string
	DashboardPass     string
	DashboardRO       bool
	// DashboardOrigins are the origins besides the listener's own from which the dashboard
	// accepts changes (DASHBOARD_TRUSTED_ORIGINS), parsed once; nil: none.
	DashboardOrigins *http.CrossOriginProtection
	// IntakeTokens switch the HTTP intake API at /v1/ on; none: no intake API.
	IntakeTokens  []string
	IntakeMaxBody int64 // zero: intakeapi.DefaultMaxBody
	// IntakeBodyTimeout and IntakeSlotWait are intakeapi.Config's BodyTimeout and
	// SlotWait; zero: its defaults.
	IntakeBodyTimeout, IntakeSlotWait time.Duration
	// HTTPIdleTimeout closes keep-alive connections idle this long; zero: defaultIdleTimeout.
	HTTPIdleTimeout time.Duration
	IntakeQueue     string // zero: tasks.DefaultQueue
}

// appDeps is the live objects the running worker uses, built from the settings by serve
// and the demo (tests build their own): the tenant's client and what comes with it, and
// the process's listener, metrics registry, logger and hooks.
type appDeps struct {
	// The tenant.
	Resyncer  tasks.Resyncer
	AuthFix   string       // what the AUTH FAILURE line says to check; "" for tasks' default
	Refreshes func() int64 // the ticket source's refresh counter; nil if none
	// Flow is the tenant's flow control (its transport is under Resyncer already); nil: none.
	Flow *flow.Control
	// Tenants, when set, are the tenants served instead of the one above: each task goes to
	// the handler of its payload's tenant (tasks.Router).
	Tenants *fleet
	// StateChange is SuperOffice's state-change notifications endpoint, served on the
	// listener at tenantstate.NotificationsPath; nil when no tenant is followed.
	StateChange http.Handler

	// The process.
	Listener net.Listener         // already open; nil when HTTP is off
	Registry *prometheus.Registry // nil: a registry of the worker's own
	Logger   zerolog.Logger
	// RedisOutage, when set, keeps a Redis outage to a few log lines: asynq's warnings
	// and errors pass through it, and the worker pings Redis every redisWatchEvery to
	// log the outage's end. nil (tests, benchmarks) logs every line.
	RedisOutage *redisOutage
	// extra registers more task handlers (the nightly scheduler's) and returns a
	// shutdown function; nil for none.
	extra func(a *app, mux *asynq.ServeMux) (func(), error)
}

// app is a running worker: the asynq server, the ledger reconciliation, the HTTP listener.
type app struct {
	cfg      appConfig
	deps     appDeps
	rdb      redis.UniversalClient
	ledger   *ledger.Ledger
	insp     *asynq.Inspector
	srv      *asynq.Server
	metrics  *tasks.Metrics
	stopX    func()
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	httpErr  chan error
	closeUI  func()
	intake   *intakeapi.API // nil without the intake API
	stopOnce sync.Once

	// handlers are the served tenants' handlers (with deps.Tenants), built on first use and
	// dropped when the fleet changes.
	hmu      sync.Mutex
	handlers map[*tenant.Tenant]asynq.Handler
	lanes    *lanes.Queue // the tenants' lanes' dispatcher (with deps.Tenants)
}

// intakeDrain bounds how long shutdown waits for intake submissions already under way
// before it interrupts them (their runs then read incomplete until sent again).
const intakeDrain = 10 * time.Second

// startApp starts the worker: metrics, task handlers, the intake API, the asynq server,
// the background loops, the HTTP listener, in that order. On an error nothing is left
// running or open, except deps.Listener, which stays the caller's.
func startApp(cfg appConfig, deps appDeps) (_ *app, err error) {
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	a := &app{cfg: cfg, deps: deps, rdb: redisconn.Client(cfg.RedisOpt), insp: asynq.NewInspector(cfg.RedisOpt), httpErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			if a.stopX != nil {
				a.stopX()
			}
			a.insp.Close()
			a.rdb.Close()
		}
	}()
	a.ledger = ledger.NewLedger(a.rdb)
	a.registerMetrics()
	if err := a.newLanes(); err != nil {
		return nil, fmt.Errorf("lanes: %w", err)
	}
	mux, err := a.taskHandlers()
	if err != nil {
		return nil, err
	}
	intake, err := a.intakeAPI()
	if err != nil {
		return nil, err
	}
	// Built last: an asynq server that never started cannot be closed.
	a.srv = asynq.NewServer(cfg.RedisOpt, a.asynqConfig())
	if err = a.srv.Start(mux); err != nil {
		return nil, fmt.Errorf("start asynq server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.runLanes(ctx)
	a.startLoops(ctx)
	httpAddr := a.startHTTP(ctx, intake)
	deps.Logger.Info().Int("concurrency", cfg.Concurrency).Str("queues", queueList(servedQueues(cfg.Queues, cfg.TrickleQueue))).Str("http_addr", httpAddr).
		Bool("intake_api", intake != nil).Msg("worker started")
	return a, nil
}

// registerMetrics registers the process's, the queues' and the handler's metrics.
func (a *app) registerMetrics() {
	a.deps.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newQueueCollector(a.insp))
	a.metrics = tasks.NewMetrics(a.deps.Registry)
	if a.deps.Tenants != nil {
		a.deps.Registry.MustRegister(refreshesCollector{a.deps.Tenants})
	} else if a.deps.Refreshes != nil {
		a.metrics.TicketRefreshes(a.deps.Refreshes)
	}
}

// taskHandlers builds the resync handler and the mux that serves it (and extra's handlers,
// whose shutdown function it keeps in a.stopX).
func (a *app) taskHandlers() (*asynq.ServeMux, error) {
	mux := asynq.NewServeMux()
	if a.deps.Tenants != nil {
		a.handlers = map[*tenant.Tenant]asynq.Handler{}
		a.deps.Tenants.onChange(func() {
			a.hmu.Lock()
			clear(a.handlers)
			a.hmu.Unlock()
		})
		r := tasks.NewRouter(a.tenantHandler, a.deps.Logger)
		mux.Handle(tasks.TypeResync, r)
		mux.Handle(tasks.TypeTrickle, r)
		return mux, a.extraHandlers(mux)
	}
	hc := tasks.HandlerConfig{
		Resyncer:        a.deps.Resyncer,
		Ledger:          a.ledger,
		Redis:           a.rdb,
		BusinessRetries: a.cfg.BusinessRetries,
		AuthFix:         a.deps.AuthFix,
		ChildOptions:    []asynq.Option{asynq.Retention(a.cfg.ResultRetention)},
		Metrics:         a.metrics,
		Logger:          a.deps.Logger,
	}
	if a.deps.Flow != nil {
		hc.Flow = a.deps.Flow
	}
	h, err := tasks.NewHandler(hc)
	if err != nil {
		return nil, err
	}
	mux.Handle(tasks.TypeResync, h)
	mux.Handle(tasks.TypeTrickle, h)
	return mux, a.extraHandlers(mux)
}

// extraHandlers registers extra's handlers on mux and keeps their shutdown in a.stopX.
func (a *app) extraHandlers(mux *asynq.ServeMux) error {
	if a.deps.extra == nil {
		return nil
	}
	var err error
	a.stopX, err = a.deps.extra(a, mux)
	return err
}

// tenantHandler is the handler of served tenant id (nil when it is not served): the
// tenant's client, flow control, login wording, ledger and metrics, nothing of another's.
func (a *app) tenantHandler(id string) asynq.Handler {
	t := a.deps.Tenants.get(id)
	if t == nil {
		return nil
	}
	a.hmu.Lock()
	defer a.hmu.Unlock()
	if h := a.handlers[t]; h != nil {
		return h
	}
	hc := tasks.HandlerConfig{
		Tenant:          id,
		Resyncer:        t.Resyncer,
		Ledger:          a.ledger.Tenant(id),
		Redis:           a.rdb,
		BusinessRetries: a.cfg.BusinessRetries,
		AuthFix:         t.AuthFix,
		ChildOptions:    []asynq.Option{asynq.Retention(a.cfg.ResultRetention)},
		Metrics:         a.metrics.Tenant(id),
		Logger:          a.deps.Logger, // the handler names each batch's tenant itself: once per line
	}
	if t.Flow != nil {
		hc.Flow = t.Flow
	}
	h, err := tasks.NewHandler(hc)
	if err != nil { // only a missing client, ledger or Redis, all set above
		a.deps.Logger.Error().Err(err).Str("tenant", id).Msg("tenant handler")
		return nil
	}
	a.handlers[t] = a.laneDone(id, h)
	return a.handlers[t]
}

// intakeAPI is the HTTP intake API, or nil (not a nil *intakeapi.API) when there is no
// listener or no INTAKE_TOKENS.
func (a *app) intakeAPI() (http.Handler, error) {
	cfg := a.cfg
	tenants := intakeTenants(a.deps.Tenants)
	if a.deps.Listener == nil || len(cfg.IntakeTokens) == 0 && len(tenants) == 0 {
		return nil, nil
	}
	trickle := cfg.TrickleQueue
	if trickle == "" { // no trickle queue served: trickle keys go with the bulk
		trickle = cmp.Or(cfg.IntakeQueue, tasks.DefaultQueue)
	}
	api, err := intakeapi.New(intakeapi.Config{Redis: a.rdb, Queue: cfg.IntakeQueue, TrickleQueue: trickle, Tokens: cfg.IntakeTokens,
		Tenants: tenants, MaxBody: cfg.IntakeMaxBody, BodyTimeout: cfg.IntakeBodyTimeout, SlotWait: cfg.IntakeSlotWait, Logger: a.deps.Logger})
	if err != nil {
		return nil, err
	}
	if f := a.deps.Tenants; f != nil {
		f.onChange(func() {
			if err := api.SetTenants(intakeTenants(f)); err != nil {
				a.deps.Logger.Error().Err(err).Msg("intake API: the tenants' tokens were not changed")
			}
		})
	}
	a.intake = api
	return api, nil
}

// intakeTenants are the intake API's tenants: each served tenant of the tenants file with
// its intake tokens (the implicit tenant's are INTAKE_TOKENS, Config.Tokens).
func intakeTenants(f *fleet) []intakeapi.Tenant {
	if f == nil {
		return nil
	}
	var out []intakeapi.Tenant
	for _, t := range f.all() {
		if t.Spec.ID == "" || len(t.Spec.IntakeTokens) == 0 {
			continue
		}
		toks := make([]string, len(t.Spec.IntakeTokens))
		for i, s := range t.Spec.IntakeTokens {
			toks[i] = s.Reveal()
		}
		out = append(out, intakeapi.Tenant{ID: t.Spec.ID, Tokens: toks})
	}
	return out
}

// asynqConfig is the asynq server's configuration: the served queues, the retry delays, the
// trickle aggregation, the logger.
func (a *app) asynqConfig() asynq.Config {
	cfg, log := a.cfg, a.deps.Logger
	return asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   servedQueues(cfg.Queues, cfg.TrickleQueue),
		StrictPriority:           cfg.TrickleQueue != "",
		ShutdownTimeout:          cfg.ShutdownTimeout,
		RetryDelayFunc:           tasks.RetryDelay(tasks.DefaultAsynqPolicy(), businessPolicy(cfg.BusinessDelay, cfg.BusinessRetries)),
		IsFailure:                tasks.IsFailure,
		DelayedTaskCheckInterval: time.Second,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		GroupAggregator:          tasks.NewAggregator(tasks.AggregatorConfig{Logger: log, Options: []asynq.Option{asynq.Retention(cfg.ResultRetention)}}),
		GroupMaxSize:             cfg.BatchSize,
		GroupMaxDelay:            cfg.TrickleMaxDelay,
		GroupGracePeriod:         cfg.TrickleGrace,
		Logger:                   asynqLogger{log, a.deps.RedisOutage},
		LogLevel:                 asynq.WarnLevel,
	}
}

// startLoops starts the background loops until ctx ends: the ledger's reconciliation, the
// Redis watch (with RedisOutage) and the ledger's pruning (with a LedgerRetention).
func (a *app) startLoops(ctx context.Context) {
	a.goLoop(func() { a.reconcileLoop(ctx) })
	if a.deps.RedisOutage != nil {
		a.goLoop(func() { watchRedis(ctx, a.rdb, a.deps.RedisOutage, redisWatchEvery) })
	}
	if a.cfg.LedgerRetention > 0 {
		a.goLoop(func() { a.pruneLoop(ctx) })
	}
}

// goLoop runs f in a goroutine shutdown waits for.
func (a *app) goLoop(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// startHTTP serves the dashboard, the health endpoints, /metrics and intake (nil: none) on
// the listener until ctx ends, and returns its address ("off" without one). A listener
// that fails reports on a.httpErr.
func (a *app) startHTTP(ctx context.Context, intake http.Handler) string {
	ln := a.deps.Listener
	if ln == nil {
		return "off"
	}
	handler, closeUI := newHTTPHandler(httpConfig{
		RedisOpt: a.cfg.RedisOpt, Redis: a.rdb, Registry: a.deps.Registry,
		DashboardUser: a.cfg.DashboardUser, DashboardPass: a.cfg.DashboardPass, ReadOnly: a.cfg.DashboardRO,
		CrossOrigin: a.cfg.DashboardOrigins, Logger: a.deps.Logger, Intake: intake, StateChange: a.deps.StateChange,
	}.withTenants(a.deps.Tenants))
	a.closeUI = closeUI
	a.goLoop(func() {
		if err := serveHTTP(ctx, ln, handler, httpTimeouts{Idle: a.cfg.HTTPIdleTimeout, Body: a.cfg.IntakeBodyTimeout}); err != nil {
			a.httpErr <- err
		}
	})
	return ln.Addr().String()
}

// businessPolicy spaces the retries of a single key SuperOffice answered IsOk=false: delay
// first, doubling for each of the retries (tasks.DefaultBusinessPolicy() when delay is zero).
func businessPolicy(delay time.Duration, retries int) retry.Policy {
	p := tasks.DefaultBusinessPolicy()
	if delay <= 0 {
		return p
	}
	p.Initial = delay
	last := delay
	for i := 1; i < retries && last < 24*time.Hour; i++ {
		last *= 2
	}
	p.Max = max(p.Max, last)
	return p
}

// reconcileLoop records in the ledger any task asynq archived without the handler (a
// lease that expired on the last retry after a kill -9), so no dead letter is lost.
func (a *app) reconcileLoop(ctx context.Context) {
	every := a.cfg.ReconcileEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	queues := make([]string, 0, len(a.cfg.Queues)+1)
	for q := range servedQueues(a.cfg.Queues, a.cfg.TrickleQueue) {
		queues = append(queues, q)
	}
	everyTick(ctx, every, func() {
		n, err := a.ledger.ReconcileArchived(ctx, a.insp, queues...)
		if err != nil && ctx.Err() == nil {
			a.deps.Logger.Warn().Err(err).Msg("reconcile archived tasks with the ledger")
		} else if n > 0 {
			a.deps.Logger.Warn().Int("batches", n).Msg("reconciled archived tasks with the ledger (dead letters recorded, lost split halves enqueued)")
		}
	})
}

// everyTick calls fn every interval, the first time one interval from now, until ctx ends.
func everyTick(ctx context.Context, every time.Duration, fn func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}

// pruneLoop removes finished runs past LedgerRetention from the ledger: at start, then every
// PruneEvery. Several workers may prune at once (ledger.Ledger.Prune is safe for that).
func (a *app) pruneLoop(ctx context.Context) {
	every := a.cfg.PruneEvery
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, l := range a.ledgers() {
			a.prune(ctx, l)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ledgers are the ledgers of the served tenants: each tenant's own.
func (a *app) ledgers() []*ledger.Ledger {
	if a.deps.Tenants == nil {
		return []*ledger.Ledger{a.ledger}
	}
	ids := a.deps.Tenants.ids()
	out := make([]*ledger.Ledger, len(ids))
	for i, id := range ids {
		out[i] = a.ledger.Tenant(id)
	}
	return out
}

// prune removes l's runs finished longer than LedgerRetention ago, logging each.
func (a *app) prune(ctx context.Context, l *ledger.Ledger) {
	log := a.deps.Logger
	if id := l.TenantID(); id != "" {
		log = log.With().Str("tenant", id).Logger()
	}
	res, err := l.Prune(ctx, ledger.PruneOptions{OlderThan: a.cfg.LedgerRetention, Inspector: a.insp})
	if err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Int("runs", len(res.Runs)).Msg("prune the run ledger")
	}
	for _, r := range res.Runs {
		log.Info().Str("run", r.Run).Str("state", r.State).Int64("keys", r.TotalKeys).
			Int64("dead_letters", r.DeadLetters).Time("finished_at", r.FinishedAt).
			Str("retention", a.cfg.LedgerRetention.String()).Msg("pruned a finished run from the ledger")
	}
}

// shutdown stops the worker in this order:
//  1. the nightly scheduler (no new runs start);
//  2. asynq stops fetching new tasks;
//  3. in-flight calls get up to ShutdownTimeout to finish; asynq hands any task still
//     running back to Redis, where it runs again on the next start (the ledger keeps that
//     exactly-once);
//  4. the reconciliation and prune loops and the HTTP listener stop;
//  5. the Redis connections close.
//
// It may be called more than once; later calls do nothing.
func (a *app) shutdown() {
	a.stopOnce.Do(func() {
		if a.stopX != nil {
			a.stopX()
		}
		a.srv.Stop()
		a.srv.Shutdown()
		a.cancel()
		a.wg.Wait()
		if a.intake != nil {
			// Submissions whose bodies were whole went on without their clients: they end
			// (or are interrupted) before Redis closes under them.
			ctx, cancel := context.WithTimeout(context.Background(), intakeDrain)
			if err := a.intake.Drain(ctx); err != nil {
				a.deps.Logger.Warn().Msg("intake API: submissions still running at shutdown were interrupted; their runs read incomplete until sent again")
			}
			cancel()
		}
		if a.closeUI != nil {
			a.closeUI()
		}
		a.insp.Close()
		a.rdb.Close()
		a.deps.Logger.Info().Msg("worker stopped")
	})
}

// servedQueues is the queues asynq serves: the trickle queue (when not "") above every
// other, with StrictPriority, so trickle batches always go first.
func servedQueues(queues map[string]int, trickle string) map[string]int {
	if trickle == "" {
		return queues
	}
	out := make(map[string]int, len(queues)+1)
	top := 0
	for q, p := range queues {
		out[q] = p
		top = max(top, p)
	}
	out[trickle] = top + 1
	return out
}

// parseQueues reads "name[:priority],..." into asynq's map.
func parseQueues(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, prio, found := strings.Cut(part, ":")
		name = strings.TrimSpace(name)
		if name == "" {
			// asynq would drop the nameless queue and serve its "default" queue instead.
			return nil, fmt.Errorf("WORKER_QUEUES: %q: a queue needs a name", part)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("WORKER_QUEUES: queue %q is listed twice", name)
		}
		p := 1
		if found {
			n, err := strconv.Atoi(strings.TrimSpace(prio))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("WORKER_QUEUES: %q: priority must be a whole number >= 1", part)
			}
			p = n
		}
		out[name] = p
	}
	if len(out) == 0 {
		return nil, errors.New("WORKER_QUEUES is empty: name at least one queue, e.g. erpresync")
	}
	return out, nil
}

func queueList(q map[string]int) string {
	var names []string
	for n, p := range q {
		names = append(names, n+":"+strconv.Itoa(p))
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}
