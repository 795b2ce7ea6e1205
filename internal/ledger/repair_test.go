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
	"github.com/erpresync/erpresync/internal/lanes"
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

// TestRepairTenantLane: a file tenant's batches wait in its lane (internal/lanes) until the
// workers' dispatcher hands them to asynq. Repair WithLanes counts such a batch as queued;
// only the batch neither in the lane nor in asynq is lost. Without the lanes every batch not
// yet dispatched would be reported lost.
func TestRepairTenantLane(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	ctx := context.Background()
	const tenant, run = "acme", "nightly"
	q, err := lanes.New(lanes.Config{Redis: rdb, Queues: []string{tasks.DefaultQueue}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	l := NewLedger(rdb).Tenant(tenant)
	meta := RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}
	var ids []string
	for seq := range 2 {
		b := tasks.Batch{Tenant: tenant, Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: testKeys("L"+string(rune('a'+seq)), 4), Seq: seq}
		id := tasks.BatchID(tasks.RunKey(tenant, run), seq)
		ids = append(ids, id)
		if _, err := l.RegisterBatch(ctx, meta, id, len(b.Keys)); err != nil {
			t.Fatal(err)
		}
		if seq == 1 {
			continue // lost: neither in the lane nor in asynq
		}
		task, err := tasks.NewResyncTask(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(ctx, tenant, lanes.Job{ID: id, Type: task.Type(), Payload: task.Payload()}); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	inLane := func(ctx context.Context, tenant, id string) (bool, error) {
		_, ok, err := q.Job(ctx, tenant, id)
		return ok, err
	}
	res, err := NewLedger(rdb).WithLanes(inLane).Tenant(tenant).Repair(ctx, insp, run)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unfinished != 2 || res.Queued != 1 || !slices.Equal(res.Lost, []string{ids[1]}) {
		t.Errorf("Repair WithLanes = %+v; want 2 unfinished, 1 queued (in the lane), %s lost", res, ids[1])
	}
	if res, err := l.Repair(ctx, insp, run); err != nil || len(res.Lost) != 2 {
		t.Errorf("Repair without the lanes = %+v, %v; want both batches lost (it cannot see the lane)", res, err)
	}
}
