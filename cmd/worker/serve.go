package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/erpresync/erpresync/internal/tenant"
)

// workerSettings turns the resolved settings into an appConfig. Every error names the
// setting at fault.
func workerSettings(v values) (appConfig, error) {
	var c appConfig
	var err error
	if c.RedisOpt, err = redisconn.Parse(v.str("REDIS_URL"), v.str("REDIS_CLUSTER_ADDRS")); err != nil {
		return c, err
	}
	if c.Concurrency, err = v.int("WORKER_CONCURRENCY", 1); err != nil {
		return c, err
	}
	if c.Queues, err = parseQueues(v.str("WORKER_QUEUES")); err != nil {
		return c, err
	}
	if c.TrickleQueue = v.str("WORKER_TRICKLE_QUEUE"); c.TrickleQueue == "off" {
		c.TrickleQueue = ""
	} else if _, dup := c.Queues[c.TrickleQueue]; dup {
		return c, fmt.Errorf("WORKER_TRICKLE_QUEUE=%s is listed in WORKER_QUEUES too: the trickle queue is served before those, so name it once", c.TrickleQueue)
	}
	if c.ShutdownTimeout, err = v.duration("WORKER_SHUTDOWN_TIMEOUT", time.Second, true); err != nil {
		return c, err
	}
	if c.BusinessRetries, err = v.int("WORKER_BUSINESS_RETRIES", 0); err != nil {
		return c, err
	}
	if c.BusinessRetries == 0 {
		c.BusinessRetries = -1 // tasks: negative means none
	}
	if c.BusinessDelay, err = v.duration("WORKER_BUSINESS_RETRY_DELAY", time.Second, true); err != nil {
		return c, err
	}
	if c.ResultRetention, err = v.duration("WORKER_RESULT_RETENTION", time.Second, true); err != nil {
		return c, err
	}
	if c.LedgerRetention, err = ledger.ParseRetention(v.str("LEDGER_RETENTION")); err != nil {
		return c, fmt.Errorf("LEDGER_RETENTION: %w", err)
	}
	if c.BatchSize, err = v.int("WORKER_BATCH_SIZE", 1); err != nil {
		return c, err
	}
	if c.BatchSize > 1000 {
		return c, fmt.Errorf("WORKER_BATCH_SIZE=%d: at most 1000 keys per call", c.BatchSize)
	}
	if c.TrickleMaxDelay, err = v.duration("WORKER_TRICKLE_MAX_DELAY", time.Second, true); err != nil {
		return c, err
	}
	if c.TrickleGrace, err = v.duration("WORKER_TRICKLE_GRACE", time.Second, true); err != nil {
		return c, err
	}
	if c.DashboardRO, err = v.bool("DASHBOARD_READONLY"); err != nil {
		return c, err
	}
	c.DashboardUser, c.DashboardPass = v.str("DASHBOARD_USER"), v.str("DASHBOARD_PASSWORD")
	if (c.DashboardUser == "") != (c.DashboardPass == "") {
		return c, errors.New("set both DASHBOARD_USER and DASHBOARD_PASSWORD, or neither")
	}
	if err = checkDashboardPassword(c.DashboardPass); err != nil {
		return c, err
	}
	if c.DashboardOrigins, err = parseTrustedOrigins(v.str("DASHBOARD_TRUSTED_ORIGINS")); err != nil {
		return c, err
	}
	c.HTTPAddr = v.str("WORKER_HTTP_ADDR")
	if err = intakeSettings(v, &c); err != nil {
		return c, err
	}
	if c.HTTPIdleTimeout, err = v.duration("WORKER_HTTP_IDLE_TIMEOUT", time.Second, false); err != nil {
		return c, err
	}
	if c.IntakeQueue = v.str("INTAKE_QUEUE"); c.IntakeQueue == "" {
		return c, errors.New("INTAKE_QUEUE is empty: name the queue, e.g. erpresync")
	}
	return c, nil
}

// intakeSettings reads the intake API's tokens and request limits into c (whose HTTPAddr
// is read already).
func intakeSettings(v values, c *appConfig) error {
	var err error
	if tokens := v.str("INTAKE_TOKENS"); tokens != "" {
		if c.HTTPAddr == "off" {
			return errors.New("INTAKE_TOKENS is set, but WORKER_HTTP_ADDR=off: the intake API needs the listener")
		}
		for _, t := range strings.Split(tokens, ",") {
			c.IntakeTokens = append(c.IntakeTokens, strings.TrimSpace(t))
		}
		if err := tenant.CheckIntakeTokens("INTAKE_TOKENS", c.IntakeTokens); err != nil {
			return err
		}
	}
	if c.IntakeMaxBody, err = v.size("INTAKE_MAX_BODY", 1); err != nil {
		return err
	}
	if c.IntakeBodyTimeout, err = v.duration("INTAKE_BODY_TIMEOUT", time.Second, false); err != nil {
		return err
	}
	if c.IntakeSlotWait, err = v.duration("INTAKE_SLOT_WAIT", time.Second, false); err != nil {
		return err
	}
	return nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	// Signals are caught from the start: asynq runs tasks as soon as the server starts, and
	// a SIGTERM that arrives then must take the orderly path too.
	sigs := notifySignals()
	defer signal.Stop(sigs)
	v, cfg, deps, code, ok := setupCommand("worker", allSettings, func(*flag.FlagSet) { usage(stderr) }, args, stderr, getenv)
	if !ok {
		return code
	}
	log := deps.Logger
	// Flow control has its own Redis client: it outlives the app, whose shutdown lets
	// in-flight calls finish through it.
	frdb := redisconn.Client(cfg.RedisOpt)
	defer frdb.Close()
	deps.Registry = prometheus.NewRegistry()
	tctx, stopTenants := context.WithCancel(ctx)
	defer stopTenants()
	fl, err := serveTenants(tctx, v, getenv, tenant.BuildOptions{Redis: frdb, FlowMetrics: flow.NewMetrics(deps.Registry), Logger: log})
	if err != nil {
		log.Error().Msgf("configuration: %v", err)
		return 2
	}
	defer fl.close()
	deps.Tenants = fl
	if v.str("TENANTS_CONFIG") != "" && cfg.TaskCheckInterval == 0 {
		// The lanes keep the queues short, so an idle asynq processor that sleeps asynq's
		// default second would leave a tenant's freshly dispatched batches waiting for it.
		cfg.TaskCheckInterval = lanesTaskCheck
	}
	if err := followTenants(tctx, &deps, fl); err != nil {
		log.Error().Msgf("configuration: %v", err)
		return 2
	}
	if deps.extra, err = nightlySetup(v, log); err != nil {
		log.Error().Msgf("configuration: %v", err)
		return 2
	}
	if deps.Listener, err = listen(cfg.HTTPAddr); err != nil {
		log.Error().Msgf("WORKER_HTTP_ADDR=%s: %v", cfg.HTTPAddr, err)
		return 2
	}
	closeListener := func() {
		if deps.Listener != nil {
			deps.Listener.Close()
		}
	}
	if err := pingRedis(ctx, cfg.RedisOpt); err != nil {
		if redisRefused(err) {
			closeListener()
			log.Error().Msgf("REDIS_URL: Redis refused the connection: %v", err)
			return 2
		}
		// Not fatal: asynq reconnects by itself, and /readyz reports it.
		log.Warn().Msgf("Redis not reachable yet (%v); the worker keeps trying", err)
	}
	served := fl.all()
	for _, s := range served {
		log.Info().Str("superoffice_api", s.API).Str("superoffice_auth", s.Mode).Str("tenant", s.Name).Float64("rate_limit", s.Spec.RateLimit).
			Int("max_concurrency", s.Spec.MaxConcurrency).Msg("configuration ok")
	}
	stopLogins := tenant.CheckLogins(served, loginChecksAtOnce, loginCheckTimeout, log)
	defer stopLogins()
	a, err := startApp(cfg, deps)
	if err != nil {
		closeListener()
		log.Error().Err(err).Msg("start")
		return 2
	}
	return waitForSignal(ctx, sigs, a.httpErr, log, a.shutdown)
}

// loginChecksAtOnce is how many tenants' logins are tried at start at once (CheckLogins):
// a thousand tenants' checks take seconds instead of flooding SuperOffice in one.
const loginChecksAtOnce = 8

// loginCheckTimeout bounds the login tried at start (CheckLogin), waits for flow control
// included.
const loginCheckTimeout = 2 * time.Minute

// notifySignals starts catching SIGINT and SIGTERM; the caller ends it with signal.Stop.
func notifySignals() chan os.Signal {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	return sigs
}

// waitForSignal blocks until a signal arrives on sigs (or ctx ends, or the HTTP listener
// fails), then runs stop. A second signal during stop exits at once with status 1.
func waitForSignal(ctx context.Context, sigs <-chan os.Signal, httpErr <-chan error, log zerolog.Logger, stop func()) int {
	code := 0
	select {
	case sig := <-sigs:
		log.Info().Str("signal", sig.String()).Msg("shutting down; a second signal exits at once")
	case <-ctx.Done():
	case err := <-httpErr:
		log.Error().Err(err).Msg("HTTP listener failed; shutting down")
		code = 2
	}
	done := make(chan struct{})
	go func() {
		stop()
		close(done)
	}()
	select {
	case <-done:
	case sig := <-sigs:
		log.Warn().Str("signal", sig.String()).Msg("second signal: exiting now; unfinished tasks return to Redis when their lease expires")
		os.Exit(1)
	}
	return code
}

func pingRedis(ctx context.Context, opt asynq.RedisConnOpt) error {
	c := redisconn.Client(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// redisRefused reports whether err is Redis answering that this configuration is wrong (a
// password it does not accept, a database it does not have), which waiting will not fix;
// an unreachable, loading or busy Redis is waited out. Redis error codes are the protocol's,
// so they are matched by prefix (as go-redis does).
func redisRefused(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, code := range []string{"NOAUTH", "WRONGPASS", "NOPERM", "ERR AUTH", "ERR Client sent AUTH", "ERR invalid password", "ERR DB index", "ERR invalid DB index"} {
		if strings.HasPrefix(rerr.Error(), code) {
			return true
		}
	}
	return false
}

// setupCommand is the common start of the long-running commands: it parses the settings,
// builds the logger (go-redis's lines go through it too) and the worker settings; deps
// holds the logger and the Redis outage filter. ok=false means: exit with code, the reason
// already printed.
func setupCommand(name string, in scope, help func(*flag.FlagSet), args []string, stderr io.Writer, getenv func(string) string) (v values, cfg appConfig, deps appDeps, code int, ok bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { help(fs) }
	v, err := parseScoped(in, fs, args, getenv)
	if err != nil {
		return nil, cfg, deps, parseExit(err), false
	}
	log, err := newLogger(stderr, v.str("LOG_FORMAT"), v.str("LOG_LEVEL"))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return nil, cfg, deps, 2, false
	}
	outage := newRedisOutage(log)
	redis.SetLogger(outage)
	deps = appDeps{Logger: log, RedisOutage: outage}
	if err := noArgs(fs); err != nil {
		log.Error().Msgf("configuration: %v", err)
		return nil, cfg, deps, 2, false
	}
	if cfg, err = workerSettings(v); err != nil {
		log.Error().Msgf("configuration: %v", err)
		return nil, cfg, deps, 2, false
	}
	return v, cfg, deps, 0, true
}

// cmdDashboard serves the dashboard, the health endpoints and /metrics with the queue
// metrics (erpresync_queue_*, read from Redis like the dashboard's numbers) and its own
// process metrics; the counters of calls, keys and retries come from the workers.
func cmdDashboard(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	sigs := notifySignals()
	defer signal.Stop(sigs)
	help := func(fs *flag.FlagSet) {
		fmt.Fprint(stderr, `Usage: worker dashboard [flags]

Serves the asynqmon dashboard at /monitoring/, /metrics (queue sizes, latency and daily
counts, read from Redis) and /healthz, /readyz on WORKER_HTTP_ADDR, until SIGTERM.
Exit status: 0 after a signal; 2 usage, configuration or listener error.

Flags:
`)
		fs.PrintDefaults()
	}
	_, cfg, deps, code, ok := setupCommand("worker dashboard", dashboardSettings, help, args, stderr, getenv)
	if !ok {
		return code
	}
	log := deps.Logger
	ln, err := listen(cfg.HTTPAddr)
	if err != nil {
		log.Error().Msgf("WORKER_HTTP_ADDR=%s: %v", cfg.HTTPAddr, err)
		return 2
	}
	if ln == nil {
		log.Error().Msgf("WORKER_HTTP_ADDR=%s: the dashboard needs a listener", cfg.HTTPAddr)
		return 2
	}
	rdb := redisconn.Client(cfg.RedisOpt)
	defer rdb.Close()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchRedis(watchCtx, rdb, deps.RedisOutage, redisWatchEvery)
	}()
	defer func() { stopWatch(); <-watched }() // before rdb closes
	insp := asynq.NewInspector(cfg.RedisOpt)
	defer insp.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newQueueCollector(insp))
	h, closeUI := newHTTPHandler(httpConfig{RedisOpt: cfg.RedisOpt, Redis: rdb, Registry: reg, DashboardUser: cfg.DashboardUser, DashboardPass: cfg.DashboardPass, ReadOnly: cfg.DashboardRO,
		CrossOrigin: cfg.DashboardOrigins, Logger: log})
	defer closeUI()
	log.Info().Str("url", "http://"+ln.Addr().String()+dashboardPath+"/").Msg("dashboard listening")
	return serveUntilSignal(ctx, sigs, ln, h, cfg.HTTPIdleTimeout, log)
}

// serveUntilSignal serves h on ln until a signal arrives or ctx ends (status 0), or the
// listener fails (status 2).
func serveUntilSignal(ctx context.Context, sigs <-chan os.Signal, ln net.Listener, h http.Handler, idle time.Duration, log zerolog.Logger) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := serveHTTP(ctx, ln, h, httpTimeouts{Idle: idle}); err != nil {
			errc <- err
		}
	}()
	return waitForSignal(ctx, sigs, errc, log, func() { cancel(); <-done })
}
