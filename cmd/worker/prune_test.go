package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestWorkerPrunesOldRuns: a worker with LEDGER_RETENTION removes, when it starts, the runs
// that finished longer ago (written as the handler writes them, 40 days back), and keeps
// last night's.
func TestWorkerPrunesOldRuns(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startSim(t)
	client, _ := newClient(t, sim)
	rdb := db.TestClient(t)
	ctx := context.Background()
	for run, age := range map[string]time.Duration{"pr-old": 40 * 24 * time.Hour, "pr-last-night": 20 * time.Hour} {
		at := time.Now().Add(-age)
		now := func() time.Time { return at }
		l := ledger.NewLedger(rdb).WithClock(now)
		h, err := tasks.NewHandler(tasks.HandlerConfig{Resyncer: client, Ledger: l, Redis: rdb, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		b := tasks.Batch{Run: run, ErpConnectionID: testConn, ActorType: erpsync.ActorCustomer, Keys: testKeys("P", 10)}
		if _, err := l.RegisterBatch(ctx, ledger.RunMeta{Run: run, ErpConnectionID: testConn, ActorType: erpsync.ActorCustomer}, tasks.BatchID(run, 0), len(b.Keys)); err != nil {
			t.Fatal(err)
		}
		task, err := tasks.NewResyncTask(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ProcessTask(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	inProcess(t, db.Opt(), client, func(c *workerSetup) { c.LedgerRetention = 30 * 24 * time.Hour })
	l := ledger.NewLedger(rdb)
	waitFor(t, 20*time.Second, func() (bool, string) {
		_, err := l.Status(ctx, "pr-old")
		return errors.Is(err, ledger.ErrRunNotFound), "pr-old still in the ledger"
	})
	if st := runStatus(t, rdb, "pr-last-night"); st.State != ledger.RunDone || st.ResyncedKeys != 10 {
		t.Errorf("last night's run: %+v", st)
	}
}
