package tasks_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/soap"
	"github.com/erpresync/erpresync/tasks"
)

func ExampleNewResyncTask() {
	b := tasks.Batch{Run: "nightly-2025-01-02", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer,
		Keys: []string{"10001", "10002"}, Seq: 42}
	t, err := tasks.NewResyncTask(b)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(t.Type())
	fmt.Println(tasks.BatchID(b.Run, b.Seq))
	fmt.Println(string(t.Payload()))
	// Output:
	// erpresync:resync
	// nightly-2025-01-02:b000042
	// {"run":"nightly-2025-01-02","erp_connection":3,"actor_type":"Customer","keys":["10001","10002"],"seq":42,"id":"nightly-2025-01-02:b000042"}
}

func ExampleClassify() {
	for _, err := range []error{
		&erpsync.HTTPError{StatusCode: 503},
		&erpsync.HTTPError{StatusCode: 429, RetryAfter: time.Minute},
		fmt.Errorf("login: %w", erpsync.ErrLoginRefused),
		&erpsync.KeyError{Index: 0, Key: "", Reason: "empty"},
		&tasks.BusinessError{ErrorCode: "ERP_REJECTED"},
		errors.New("something unexpected"),
	} {
		fmt.Printf("%-9s %v\n", tasks.Classify(err), err)
	}
	// Output:
	// transient HTTP 503 Service Unavailable
	// throttled HTTP 429 Too Many Requests (retry after 1m0s)
	// auth      login: login refused
	// permanent external key #0 "": empty
	// business  business failure ERP_REJECTED
	// transient something unexpected
}

// How cmd/worker wires the package into an asynq server.
func Example_worker() {
	var (
		rdb    redis.UniversalClient // the worker's Redis client
		client *soap.Client          // the SuperOffice client
		log    zerolog.Logger
	)
	h, err := tasks.NewHandler(tasks.HandlerConfig{
		Resyncer: client,
		Ledger:   ledger.NewLedger(rdb),
		Redis:    rdb,
		Metrics:  tasks.NewMetrics(nil), // pass prometheus.DefaultRegisterer or the worker's registry
		Logger:   log,
	})
	if err != nil {
		return
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Queues:                   map[string]int{tasks.DefaultQueue: 1},
		IsFailure:                tasks.IsFailure,
		RetryDelayFunc:           tasks.RetryDelay(tasks.DefaultAsynqPolicy(), tasks.DefaultBusinessPolicy()),
		GroupAggregator:          tasks.NewAggregator(tasks.AggregatorConfig{Logger: log}),
		GroupMaxSize:             tasks.DefaultBatchSize,
		GroupGracePeriod:         10 * time.Second,
		DelayedTaskCheckInterval: time.Second,
	})
	_ = srv.Start(h)
	// ... and every few minutes: ledger.NewLedger(rdb).ReconcileArchived(ctx, inspector)
}
