package nightly

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

// okResyncer answers every call with IsOk and one updated contact per key.
type okResyncer struct{}

func (okResyncer) ForceResyncExternal(ctx context.Context, conn int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	r := &erpsync.Result{IsOk: true, Status: erpsync.StatusOk}
	for i := range keys {
		r.Changes.Updated = append(r.Changes.Updated, erpsync.ChangedItem{Table: "contact", RecordID: int32(i + 1)})
	}
	return r, nil
}

// finishRuns processes queue with the real tasks.Handler until it is empty.
func finishRuns(t *testing.T, db *redistest.DB, queue string) {
	t.Helper()
	rdb := db.Client()
	defer rdb.Close()
	h, err := tasks.NewHandler(tasks.HandlerConfig{Resyncer: okResyncer{}, Ledger: ledger.NewLedger(rdb), Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServer(db.Opt(), asynq.Config{Queues: map[string]int{queue: 1}, Concurrency: 2, LogLevel: asynq.FatalLevel})
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	testwait.For(t, "queue "+queue+" drained", 15*time.Second, func() (bool, error) {
		qi, err := insp.GetQueueInfo(queue)
		if err != nil {
			return false, err
		}
		return qi.Pending == 0 && qi.Active == 0 && qi.Retry == 0 && qi.Scheduled == 0, fmt.Errorf("%+v", qi)
	})
}
