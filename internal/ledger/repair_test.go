package ledger

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

// TestRepair: a run whose Redis lost tasks (as a failover does): Repair leaves queued
// batches alone, enqueues a lost half again from its parent's task, and lists the lost
// producer batch, whose keys only the source still has.
func TestRepair(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	ctx := context.Background()
	l := NewLedger(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	const run = "repair"
	meta := RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}
	var ids []string
	for seq := range 3 {
		b := tasks.Batch{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: testKeys("R"+string(rune('a'+seq)), 4), Seq: seq}
		id := tasks.BatchID(run, seq)
		ids = append(ids, id)
		if _, err := l.RegisterBatch(ctx, meta, id, len(b.Keys)); err != nil {
			t.Fatal(err)
		}
		task, err := tasks.NewResyncTask(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	// Batch 1 was split; both halves are lost, the parent's task is kept (asynq keeps a
	// finished task for its retention). Batch 2's task is lost altogether.
	if st, err := l.MarkSplit(ctx, run, ids[1], time.Now()); err != nil || st != tasks.SplitMarked {
		t.Fatal(st, err)
	}
	if err := insp.DeleteTask(tasks.DefaultQueue, ids[2]); err != nil {
		t.Fatal(err)
	}

	res, err := l.Repair(ctx, insp, run, tasks.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	wantRequeued := []string{tasks.ChildID(ids[1], 0), tasks.ChildID(ids[1], 1)}
	if res.Unfinished != 4 || res.Queued != 1 || !slices.Equal(res.Requeued, wantRequeued) || !slices.Equal(res.Lost, []string{ids[2]}) {
		t.Fatalf("Repair = %+v; want 4 unfinished, 1 queued, halves %v enqueued again, %s lost", res, wantRequeued, ids[2])
	}
	for _, id := range wantRequeued {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, id)
		if err != nil {
			t.Fatalf("half %s: %v", id, err)
		}
		var b tasks.Batch
		if err := json.Unmarshal(info.Payload, &b); err != nil || b.Parent != ids[1] || len(b.Keys) != 2 {
			t.Errorf("half %s = %+v, %v", id, b, err)
		}
	}
	// Again: the halves are queued now; nothing is enqueued twice.
	res, err = l.Repair(ctx, insp, run, tasks.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if res.Queued != 3 || len(res.Requeued) != 0 || !slices.Equal(res.Lost, []string{ids[2]}) {
		t.Errorf("second Repair = %+v", res)
	}
	if _, err := l.Repair(ctx, insp, "no-such-run"); err == nil {
		t.Error("Repair of an unknown run succeeded")
	}
}
