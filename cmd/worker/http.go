package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/intakeapi"
	"github.com/erpresync/erpresync/internal/tenantstate"
)

// dashboardPath is where asynqmon is mounted. asynqmon routes on the full path, so it is
// mounted without http.StripPrefix and told its RootPath.
const dashboardPath = "/monitoring"

type httpConfig struct {
	RedisOpt      asynq.RedisConnOpt
	Redis         redis.UniversalClient // for /readyz
	Registry      *prometheus.Registry  // nil: no /metrics
	DashboardUser string
	DashboardPass string
	ReadOnly      bool
	Intake        http.Handler // the intake API, mounted at /v1/; nil: none
	// Tenants are the served tenants' IDs for the runs page ("" the implicit tenant); nil:
	// the implicit tenant only.
	Tenants func() []string
	// StateChange is mounted at tenantstate.NotificationsPath; nil: none.
	StateChange http.Handler
	// CrossOrigin refuses the dashboard's and runs page's unsafe requests (POST, DELETE, …)
	// that a browser sends from another site; nil: one with no trusted origins.
	CrossOrigin *http.CrossOriginProtection
	// Logins slows and logs refused logins; nil: a fresh guard logging to Logger.
	Logins *loginGuard
	Logger zerolog.Logger // refused logins and cross-origin requests
}

// newHTTPHandler builds the worker's one listener: /metrics, /healthz, /readyz, the
// dashboard, the runs page and the intake API. The returned closer releases asynqmon's Redis connections.
func newHTTPHandler(cfg httpConfig) (http.Handler, func()) {
	if cfg.CrossOrigin == nil {
		cfg.CrossOrigin = http.NewCrossOriginProtection()
	}
	if cfg.Logins == nil {
		cfg.Logins = newLoginGuard(cfg.Logger)
	}
	mux := http.NewServeMux()
	if cfg.Registry != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := cfg.Redis.Ping(ctx).Err(); err != nil {
			http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mon := asynqmon.New(asynqmon.Options{RootPath: dashboardPath, RedisConnOpt: cfg.RedisOpt, ReadOnly: cfg.ReadOnly})
	mux.Handle(dashboardPath+"/", cfg.protect(mon))
	mux.Handle(dashboardPath, http.RedirectHandler(dashboardPath+"/", http.StatusMovedPermanently))
	mountRunsPage(mux, cfg)
	if cfg.Intake != nil {
		// Not behind the cross-origin check: the intake API takes only a bearer token, which
		// a browser never adds by itself, so another site's page cannot borrow a login.
		mux.Handle(intakeapi.Prefix, cfg.Intake)
	}
	if cfg.StateChange != nil {
		// No login and no cross-origin check: each notification carries a token SuperOffice
		// signed, which the handler verifies.
		mux.Handle(tenantstate.NotificationsPath, cfg.StateChange)
	}
	return mux, func() { mon.Close() }
}

// listen opens the listener early, so a taken port is reported before anything starts.
func listen(addr string) (net.Listener, error) {
	if addr == "off" || addr == "" {
		return nil, nil
	}
	return net.Listen("tcp", addr)
}

// Deadlines of the listener. A request body has its own, per read (INTAKE_BODY_TIMEOUT),
// since a million-key body is legitimately long.
const (
	// headerTimeout bounds reading a request's headers.
	headerTimeout = 10 * time.Second
	// defaultIdleTimeout is WORKER_HTTP_IDLE_TIMEOUT's zero value.
	defaultIdleTimeout = 2 * time.Minute
)

// httpTimeouts are the listener's settings: Idle is WORKER_HTTP_IDLE_TIMEOUT (zero:
// defaultIdleTimeout), Body INTAKE_BODY_TIMEOUT (zero: intakeapi.DefaultBodyTimeout).
type httpTimeouts struct{ Idle, Body time.Duration }

// serveHTTP serves until ctx ends, then shuts down gracefully; requests still running
// after a few seconds are cut off. A keep-alive connection idle for t.Idle is closed, so
// idle clients do not pile up connections. A request must arrive whole within
// headerTimeout + t.Body, so that a client stalling in a body no handler reads (a refused
// login, a 404, a 415) holds its connection no longer than that; the intake API moves the
// deadline on with every read of a body it does read.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, t httpTimeouts) error {
	if t.Idle <= 0 {
		t.Idle = defaultIdleTimeout
	}
	if t.Body <= 0 {
		t.Body = intakeapi.DefaultBodyTimeout
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, ReadTimeout: headerTimeout + t.Body, IdleTimeout: t.Idle}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return err
	}
	return nil
}

// queueCollector exports asynq's queue state (sizes by task state, latency, processed and
// failed counts) from the Inspector, on each scrape.
type queueCollector struct {
	insp *asynq.Inspector
	size *prometheus.Desc
	lat  *prometheus.Desc
	proc *prometheus.Desc
	fail *prometheus.Desc
	up   *prometheus.Desc
}

func newQueueCollector(insp *asynq.Inspector) *queueCollector {
	return &queueCollector{
		insp: insp,
		size: prometheus.NewDesc("erpresync_queue_tasks", "Tasks in an asynq queue by state.", []string{"queue", "state"}, nil),
		lat:  prometheus.NewDesc("erpresync_queue_latency_seconds", "Age of the oldest pending task in the queue.", []string{"queue"}, nil),
		proc: prometheus.NewDesc("erpresync_queue_processed_today", "Tasks processed today (asynq's daily counter).", []string{"queue"}, nil),
		fail: prometheus.NewDesc("erpresync_queue_failed_today", "Task attempts that failed today (asynq's daily counter).", []string{"queue"}, nil),
		up:   prometheus.NewDesc("erpresync_queue_scrape_ok", "1 when the queue state could be read from Redis.", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.lat
	ch <- c.proc
	ch <- c.fail
	ch <- c.up
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.insp.Queues()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ok := 1.0
	for _, q := range queues {
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			ok = 0
			continue
		}
		for state, n := range map[string]int{
			"active": info.Active, "pending": info.Pending, "aggregating": info.Aggregating,
			"scheduled": info.Scheduled, "retry": info.Retry, "archived": info.Archived, "completed": info.Completed,
		} {
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(n), q, state)
		}
		ch <- prometheus.MustNewConstMetric(c.lat, prometheus.GaugeValue, info.Latency.Seconds(), q)
		ch <- prometheus.MustNewConstMetric(c.proc, prometheus.GaugeValue, float64(info.Processed), q)
		ch <- prometheus.MustNewConstMetric(c.fail, prometheus.GaugeValue, float64(info.Failed), q)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, ok)
}
