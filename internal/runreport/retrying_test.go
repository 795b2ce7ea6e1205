package runreport_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

func TestRetryingBatches(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	client := asynq.NewClient(db.Opt())
	defer client.Close()
	// The last is tenant T's run called r: not the implicit tenant's r.
	for i, q := range []struct{ tenant, run, queue string }{{"", "r", "qa"}, {"", "r", "qb"}, {"", "other", "qa"}, {"T", "r", "qa"}} {
		task, err := tasks.NewResyncTask(tasks.Batch{Tenant: q.tenant, Run: q.run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: []string{"K1"}, Seq: i})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task, asynq.Queue(q.queue)); err != nil {
			t.Fatal(err)
		}
	}
	srv := asynq.NewServer(db.Opt(), asynq.Config{Queues: map[string]int{"qa": 1, "qb": 1}, Concurrency: 3, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour }})
	if err := srv.Start(asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
		b, _ := tasks.ParseBatch(task.Payload())
		if b.Seq == 1 { // run r's batch in queue qb: SuperOffice refused the login
			return &tasks.Error{Class: tasks.ClassAuth, Keys: 1, Err: erpsync.ErrLoginRefused}
		}
		return fmt.Errorf("HTTP 503 for batch %d", b.Seq)
	})); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	testwait.For(t, "the tasks in the retry sets", 30*time.Second, func() (bool, error) {
		a, errA := insp.GetQueueInfo("qa")
		b, errB := insp.GetQueueInfo("qb")
		if err := errors.Join(errA, errB); err != nil {
			return false, err
		}
		return a.Retry == 3 && b.Retry == 1, fmt.Errorf("qa %+v, qb %+v", a, b)
	})
	tests := []struct {
		name, queue, run string
		want, auth       int
	}{
		{"every queue", "", "r", 2, 1},
		{"one queue", "qa", "r", 1, 0},
		{"another run", "", "other", 1, 0},
		{"a tenant's run of the same name", "", tasks.RunKey("T", "r"), 1, 0},
		{"unknown queue", "nope", "r", 0, 0},
		{"unknown run", "", "nope", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runreport.RetryingBatches(insp, tt.queue, tt.run)
			if err != nil {
				t.Fatal(err)
			}
			if got.Batches != tt.want || (tt.want > 0) != (got.LastError != "") || (tt.want > 0) == got.LastFailedAt.IsZero() {
				t.Errorf("RetryingBatches(%q, %q) = %+v, want %d batches with the last error", tt.queue, tt.run, got, tt.want)
			}
			// Each batch holds one key and is due an hour after it failed (the retry delay).
			if got.Keys != int64(tt.want) || got.AuthBatches != tt.auth || (tt.auth > 0) != (got.AuthError != "") ||
				(tt.want > 0 && (got.NextAt.Sub(got.LastFailedAt) > time.Hour || got.LastAt.Sub(got.LastFailedAt) < 59*time.Minute || got.NextAt.After(got.LastAt))) {
				t.Errorf("RetryingBatches(%q, %q) = %+v, want %d keys, %d held for auth, due in an hour", tt.queue, tt.run, got, tt.want, tt.auth)
			}
		})
	}
}
