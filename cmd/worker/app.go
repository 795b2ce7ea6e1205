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

	"github.com/erpresync/erpresync/flow"
	"github.com/erpresync/erpresync/intakeapi"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/erpresync/erpresync/retry"
	"github.com/erpresync/erpresync/tasks"
)

// appConfig is everything the running worker needs; serve builds it from the settings, the
// demo from its embedded defaults.
type appConfig struct {
	RedisOpt        asynq.RedisConnOpt
	Resyncer        tasks.Resyncer
	AuthFix         string       // what the AUTH FAILURE line says to check; "" for tasks' default
	Refreshes       func() int64 // the ticket source's refresh counter; nil if none
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
	HTTPAddr          string
	DashboardUser     string
	DashboardPass     string
	DashboardRO       bool
	// DashboardOrigins are the origins besides the listener's own from which the dashboard
	// accepts changes (DASHBOARD_TRUSTED_ORIGINS); nil: none.
	DashboardOrigins *http.CrossOriginProtection
	Listener         net.Listener // already open; nil when HTTP is off
	// IntakeTokens switch the HTTP intake API at /v1/ on; none: no intake API.
	IntakeTokens  []string
	IntakeMaxBody int64 // zero: intakeapi.DefaultMaxBody
	// IntakeBodyTimeout and IntakeSlotWait are intakeapi.Config's BodyTimeout and
	// SlotWait; zero: its defaults.
	IntakeBodyTimeout, IntakeSlotWait time.Duration
	// HTTPIdleTimeout closes keep-alive connections idle this long; zero: defaultIdleTimeout.
	HTTPIdleTimeout time.Duration
	IntakeQueue     string // zero: tasks.DefaultQueue
	Registry        *prometheus.Registry
	Logger          zerolog.Logger
	// RedisOutage, when set, keeps a Redis outage to a few log lines: asynq's warnings
	// and errors pass through it, and the worker pings Redis every redisWatchEvery to
	// log the outage's end. nil (tests, benchmarks) logs every line.
	RedisOutage *redisOutage
	// Flow is the tenant's flow control (its transport is under Resyncer already); nil: none.
	Flow *flow.Control
	// extra registers more task handlers (the nightly scheduler's) and returns a
	// shutdown function; nil for none.
	extra func(a *app, mux *asynq.ServeMux) (func(), error)
}

// app is a running worker: the asynq server, the ledger reconciliation, the HTTP listener.
type app struct {
	cfg      appConfig
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
	stopOnce sync.Once
}

// startApp starts the worker. On an error nothing is left running or open, except
// cfg.Listener, which stays the caller's.
func startApp(cfg appConfig) (_ *app, err error) {
	log := cfg.Logger
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	a := &app{cfg: cfg, rdb: redisconn.Client(cfg.RedisOpt), insp: asynq.NewInspector(cfg.RedisOpt), httpErr: make(chan error, 1)}
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
	cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newQueueCollector(a.insp))
	a.metrics = tasks.NewMetrics(cfg.Registry)
	if cfg.Refreshes != nil {
		a.metrics.TicketRefreshes(cfg.Refreshes)
	}
	retention := asynq.Retention(cfg.ResultRetention)
	hc := tasks.HandlerConfig{
		Resyncer:        cfg.Resyncer,
		Ledger:          a.ledger,
		Redis:           a.rdb,
		BusinessRetries: cfg.BusinessRetries,
		AuthFix:         cfg.AuthFix,
		ChildOptions:    []asynq.Option{retention},
		Metrics:         a.metrics,
		Logger:          log,
	}
	if cfg.Flow != nil {
		hc.Flow = cfg.Flow
	}
	h, err := tasks.NewHandler(hc)
	if err != nil {
		return nil, err
	}
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeResync, h)
	mux.Handle(tasks.TypeTrickle, h)
	if cfg.extra != nil {
		if a.stopX, err = cfg.extra(a, mux); err != nil {
			return nil, err
		}
	}
	var intake http.Handler // stays nil (not a nil *intakeapi.API) unless INTAKE_TOKENS are set
	if cfg.Listener != nil && len(cfg.IntakeTokens) > 0 {
		trickle := cfg.TrickleQueue
		if trickle == "" { // no trickle queue served: trickle keys go with the bulk
			trickle = cmp.Or(cfg.IntakeQueue, tasks.DefaultQueue)
		}
		api, err := intakeapi.New(intakeapi.Config{Redis: a.rdb, Queue: cfg.IntakeQueue, TrickleQueue: trickle, Tokens: cfg.IntakeTokens,
			MaxBody: cfg.IntakeMaxBody, BodyTimeout: cfg.IntakeBodyTimeout, SlotWait: cfg.IntakeSlotWait, Logger: log})
		if err != nil {
			return nil, err
		}
		intake = api
	}
	// Built last: an asynq server that never started cannot be closed.
	a.srv = asynq.NewServer(cfg.RedisOpt, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   servedQueues(cfg.Queues, cfg.TrickleQueue),
		StrictPriority:           cfg.TrickleQueue != "",
		ShutdownTimeout:          cfg.ShutdownTimeout,
		RetryDelayFunc:           tasks.RetryDelay(tasks.DefaultAsynqPolicy(), businessPolicy(cfg.BusinessDelay, cfg.BusinessRetries)),
		IsFailure:                tasks.IsFailure,
		DelayedTaskCheckInterval: time.Second,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		GroupAggregator:          tasks.NewAggregator(tasks.AggregatorConfig{Logger: log, Options: []asynq.Option{retention}}),
		GroupMaxSize:             cfg.BatchSize,
		GroupMaxDelay:            cfg.TrickleMaxDelay,
		GroupGracePeriod:         cfg.TrickleGrace,
		Logger:                   asynqLogger{log, cfg.RedisOutage},
		LogLevel:                 asynq.WarnLevel,
	})
	if err = a.srv.Start(mux); err != nil {
		return nil, fmt.Errorf("start asynq server: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.reconcileLoop(ctx)
	}()
	if cfg.RedisOutage != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			watchRedis(ctx, a.rdb, cfg.RedisOutage, redisWatchEvery)
		}()
	}
	if cfg.LedgerRetention > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.pruneLoop(ctx)
		}()
	}
	httpAddr := "off"
	if cfg.Listener != nil {
		httpAddr = cfg.Listener.Addr().String()
		handler, closeUI := newHTTPHandler(httpConfig{
			RedisOpt: cfg.RedisOpt, Redis: a.rdb, Registry: cfg.Registry,
			DashboardUser: cfg.DashboardUser, DashboardPass: cfg.DashboardPass, ReadOnly: cfg.DashboardRO,
			CrossOrigin: cfg.DashboardOrigins, Logger: log, Intake: intake,
		})
		a.closeUI = closeUI
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := serveHTTP(ctx, cfg.Listener, handler, cfg.HTTPIdleTimeout); err != nil {
				a.httpErr <- err
			}
		}()
	}
	log.Info().Int("concurrency", cfg.Concurrency).Str("queues", queueList(servedQueues(cfg.Queues, cfg.TrickleQueue))).Str("http_addr", httpAddr).
		Bool("intake_api", len(cfg.IntakeTokens) > 0 && cfg.Listener != nil).Msg("worker started")
	return a, nil
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
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := a.ledger.ReconcileArchived(ctx, a.insp, queues...)
		if err != nil && ctx.Err() == nil {
			a.cfg.Logger.Warn().Err(err).Msg("reconcile archived tasks with the ledger")
		} else if n > 0 {
			a.cfg.Logger.Warn().Int("batches", n).Msg("reconciled archived tasks with the ledger (dead letters recorded, lost split halves enqueued)")
		}
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
		res, err := a.ledger.Prune(ctx, ledger.PruneOptions{OlderThan: a.cfg.LedgerRetention, Inspector: a.insp})
		if err != nil && ctx.Err() == nil {
			a.cfg.Logger.Warn().Err(err).Int("runs", len(res.Runs)).Msg("prune the run ledger")
		}
		for _, r := range res.Runs {
			a.cfg.Logger.Info().Str("run", r.Run).Str("state", r.State).Int64("keys", r.TotalKeys).
				Int64("dead_letters", r.DeadLetters).Time("finished_at", r.FinishedAt).
				Str("retention", a.cfg.LedgerRetention.String()).Msg("pruned a finished run from the ledger")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
		if a.closeUI != nil {
			a.closeUI()
		}
		a.insp.Close()
		a.rdb.Close()
		a.cfg.Logger.Info().Msg("worker stopped")
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
