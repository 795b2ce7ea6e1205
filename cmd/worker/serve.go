package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
)

// workerSettings turns the resolved settings into an appConfig (without the SOAP client).
// Every error names the setting at fault.
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
	if c.ShutdownTimeout, err = v.duration("WORKER_SHUTDOWN_TIMEOUT", 1e9, true); err != nil {
		return c, err
	}
	if c.BusinessRetries, err = v.int("WORKER_BUSINESS_RETRIES", 0); err != nil {
		return c, err
	}
	if c.BusinessRetries == 0 {
		c.BusinessRetries = -1 // tasks: negative means none
	}
	if c.BusinessDelay, err = v.duration("WORKER_BUSINESS_RETRY_DELAY", 1e9, true); err != nil {
		return c, err
	}
	if c.ResultRetention, err = v.duration("WORKER_RESULT_RETENTION", 1e9, true); err != nil {
		return c, err
	}
	if c.BatchSize, err = v.int("WORKER_BATCH_SIZE", 1); err != nil {
		return c, err
	}
	if c.BatchSize > 1000 {
		return c, fmt.Errorf("WORKER_BATCH_SIZE=%d: at most 1000 keys per call", c.BatchSize)
	}
	if c.TrickleMaxDelay, err = v.duration("WORKER_TRICKLE_MAX_DELAY", 1e9, true); err != nil {
		return c, err
	}
	if c.TrickleGrace, err = v.duration("WORKER_TRICKLE_GRACE", 1e9, true); err != nil {
		return c, err
	}
	if c.DashboardRO, err = v.bool("DASHBOARD_READONLY"); err != nil {
		return c, err
	}
	c.DashboardUser, c.DashboardPass = v.str("DASHBOARD_USER"), v.str("DASHBOARD_PASSWORD")
	if (c.DashboardUser == "") != (c.DashboardPass == "") {
		return c, fmt.Errorf("set both DASHBOARD_USER and DASHBOARD_PASSWORD, or neither")
	}
	c.HTTPAddr = v.str("WORKER_HTTP_ADDR")
	return c, nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	v, err := parseSettings(fs, args, getenv)
	if err != nil {
		return 2
	}
	log, err := newLogger(stderr, v.str("LOG_FORMAT"), v.str("LOG_LEVEL"))
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	cfg, err := workerSettings(v)
	if err != nil {
		log.Error().Msgf("configuration: %v", err)
		return 2
	}
	s, err := newSOAP(v)
	if err != nil {
		log.Error().Msgf("configuration: %v", err)
		return 2
	}
	cfg.Resyncer, cfg.Refreshes, cfg.Logger = s.Client, s.Refreshes, log
	if cfg.extra, err = nightlySetup(v, log); err != nil {
		log.Error().Msgf("configuration: %v", err)
		return 2
	}
	if cfg.Listener, err = listen(cfg.HTTPAddr); err != nil {
		log.Error().Msgf("WORKER_HTTP_ADDR=%s: %v", cfg.HTTPAddr, err)
		return 2
	}
	if err := pingRedis(ctx, cfg.RedisOpt); err != nil {
		// Not fatal: asynq reconnects by itself, and /readyz reports it.
		log.Warn().Msgf("Redis not reachable yet (%v); the worker keeps trying", err)
	}
	log.Info().Str("superoffice_auth", s.Mode).Msg("configuration ok")
	a, err := startApp(cfg)
	if err != nil {
		log.Error().Err(err).Msg("start")
		return 2
	}
	return waitForSignal(ctx, a.httpErr, log, a.shutdown)
}

// waitForSignal blocks until SIGINT/SIGTERM (or ctx ends, or the HTTP listener fails), then
// runs stop. A second signal during stop exits at once with status 1.
func waitForSignal(ctx context.Context, httpErr <-chan error, log zerolog.Logger, stop func()) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
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
	ctx, cancel := context.WithTimeout(ctx, 3e9)
	defer cancel()
	return c.Ping(ctx).Err()
}

// cmdDashboard serves only the dashboard and the health endpoints.
func cmdDashboard(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("worker dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	v, err := parseSettings(fs, args, getenv)
	if err != nil {
		return 2
	}
	log, err := newLogger(stderr, v.str("LOG_FORMAT"), v.str("LOG_LEVEL"))
	if err != nil {
		fmt.Fprintf(stderr, "worker dashboard: %v\n", err)
		return 2
	}
	cfg, err := workerSettings(v)
	if err != nil {
		log.Error().Msgf("configuration: %v", err)
		return 2
	}
	ln, err := listen(cfg.HTTPAddr)
	if err != nil || ln == nil {
		log.Error().Msgf("WORKER_HTTP_ADDR=%s: the dashboard needs a listener (%v)", cfg.HTTPAddr, err)
		return 2
	}
	rdb := redisconn.Client(cfg.RedisOpt)
	defer rdb.Close()
	h, closeUI := newHTTPHandler(httpConfig{RedisOpt: cfg.RedisOpt, Redis: rdb, DashboardUser: cfg.DashboardUser, DashboardPass: cfg.DashboardPass, ReadOnly: cfg.DashboardRO})
	defer closeUI()
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- serveHTTP(ctx, ln, h) }()
	log.Info().Str("url", "http://"+ln.Addr().String()+dashboardPath+"/").Msg("dashboard listening")
	return waitForSignal(ctx, errc, log, func() { cancel(); <-errc })
}
