package main

import (
	"fmt"
	"sync"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/nightly"
)

// nightlySetup returns the hook that runs the nightly bulk-resync schedule (an asynq
// Scheduler firing nightly tasks, and their handler), or nil when NIGHTLY_CONFIG is empty.
// The configuration is read and checked here, before anything starts.
func nightlySetup(v values, log zerolog.Logger) (func(a *app, mux *asynq.ServeMux) (func(), error), error) {
	spec := v.str("NIGHTLY_CONFIG")
	if spec == "" {
		return nil, nil
	}
	cfg, err := nightly.LoadConfig(spec)
	if err != nil {
		return nil, fmt.Errorf("NIGHTLY_CONFIG: %v", err)
	}
	return func(a *app, mux *asynq.ServeMux) (func(), error) {
		queue := nightlyQueue(a.cfg.Queues)
		var mu sync.Mutex
		producers := map[string]*intake.Producer{}
		producer := func(tenant string) *intake.Producer {
			if a.deps.Tenants != nil && a.deps.Tenants.get(tenant) == nil {
				return nil // not served (any more): the firing fails and is retried
			}
			mu.Lock()
			defer mu.Unlock()
			if p := producers[tenant]; p != nil {
				return p
			}
			p, err := intake.NewProducer(intake.ProducerConfig{Redis: a.rdb, Tenant: tenant, Queue: queue, TaskOptions: []asynq.Option{asynq.Retention(a.cfg.ResultRetention)}})
			if err != nil { // only a tenant ID the tenants file would have refused
				log.Error().Err(err).Str("tenant", tenant).Msg("nightly: producer")
				return nil
			}
			producers[tenant] = p
			return p
		}
		h, err := nightly.NewHandler(nightly.HandlerConfig{Producers: producer, Redis: a.rdb, Logger: log, Metrics: nightly.NewMetrics(a.deps.Registry)})
		if err != nil {
			return nil, err
		}
		mux.Handle(nightly.TypeNightly, h)
		// The scheduler has a connection of its own: its Shutdown closes its client, and on a
		// shared one that fails and logs an error at every stop.
		sched := asynq.NewScheduler(a.cfg.RedisOpt, &asynq.SchedulerOpts{Logger: asynqLogger{log, a.deps.RedisOutage}, LogLevel: asynq.WarnLevel})
		ids, err := nightly.Register(sched, cfg, asynq.Queue(queue))
		if err != nil {
			return nil, fmt.Errorf("NIGHTLY_CONFIG: %v", err)
		}
		if err := sched.Start(); err != nil {
			return nil, fmt.Errorf("start the nightly scheduler: %w", err)
		}
		log.Info().Int("entries", len(ids)).Msg("nightly schedule registered")
		return sched.Shutdown, nil
	}, nil
}

// nightlyQueue is the queue nightly runs go to: the highest-priority one served, ties broken
// by name, so that it is the same after every restart (a run resubmitted to another queue
// would be refused).
func nightlyQueue(queues map[string]int) string {
	best, prio := "", 0
	for q, p := range queues {
		if p > prio || (p == prio && q < best) {
			best, prio = q, p
		}
	}
	if best == "" {
		return "erpresync"
	}
	return best
}
