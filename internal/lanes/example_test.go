package lanes_test

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/lanes"
)

// Producers, every worker's dispatcher and the task handler share one Queue configuration
// on asynq's Redis.
func ExampleQueue() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	q, err := lanes.New(lanes.Config{
		Redis:    rdb,
		Queues:   []string{"erpresync"},
		LowWater: 2 * 4 * 10, // twice the fleet's slots: 4 workers, WORKER_CONCURRENCY 10
		// The tenant's flow control answers: rate-limit wait, breaker open, paused.
		Ready:       func(ctx context.Context, tenant string) time.Duration { return 0 },
		MaxInFlight: func(tenant string) int { return 4 },
		Known:       func(tenant string) bool { return tenant != "removed" },
	})
	if err != nil {
		panic(err)
	}
	defer q.Close()
	ctx := context.Background()

	// A producer hands a run's batches over in one call; IDs make it idempotent.
	conflicts, err := q.EnqueueMany(ctx, "cust12345", []lanes.Job{
		{ID: "run1:b1", Type: "erpsync:batch", Payload: []byte(`{"keys":["CUST-1"]}`), MaxRetry: 25, Retention: 168 * time.Hour},
		{ID: "run1:b2", Type: "erpsync:batch", Payload: []byte(`{"keys":["CUST-2"]}`), MaxRetry: 25, Retention: 168 * time.Hour},
	})
	_, _ = conflicts, err // conflicts: IDs handed over before

	// Every worker runs a dispatcher beside its asynq server...
	go q.Run(ctx)

	// ...and its handler says when a task has ended, so the tenant's cap frees a place.
	handler := func(ctx context.Context, t *asynq.Task) error {
		defer q.Done(ctx, "cust12345", t.ResultWriter().TaskID())
		return nil
	}
	_ = handler

	if err := q.Enqueue(ctx, "cust12345", lanes.Job{ID: "run1:b1", Type: "erpsync:batch"}); errors.Is(err, asynq.ErrTaskIDConflict) {
		_ = err // handed over before: nothing to do
	}
}
