package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// BenchmarkTenants1000 is `enqueue tenants` over 1,000 tenants, each with two runs and half
// of them with a batch in their lane: the time and memory of one listing.
//
//	go test -run '^$' -bench Tenants1000 -benchmem ./cmd/enqueue/
func BenchmarkTenants1000(b *testing.B) {
	db := redistest.New(b)
	rdb := db.TestClient(b)
	ctx := context.Background()
	q, err := lanes.New(lanes.Config{Redis: rdb, Queues: []string{"tq"}})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	for i := range 1000 {
		id := fmt.Sprintf("tenant-%04d", i)
		l := ledger.NewLedger(rdb).Tenant(id)
		for _, run := range []string{"nightly", "trial"} {
			meta := ledger.RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}
			if _, err := l.RegisterBatch(ctx, meta, tasks.BatchID(tasks.RunKey(id, run), 0), 10); err != nil {
				b.Fatal(err)
			}
		}
		if i%2 == 0 {
			if err := q.Enqueue(ctx, id, lanes.Job{ID: tasks.BatchID(tasks.RunKey(id, "nightly"), 0), Type: tasks.TypeResync}); err != nil {
				b.Fatal(err)
			}
		}
	}
	rc := &redisConn{rdb: rdb}
	b.ReportAllocs()
	for b.Loop() {
		rows, err := tenantRows(ctx, rc, q, "")
		if err != nil || len(rows) != 1000 {
			b.Fatalf("%d rows, %v", len(rows), err)
		}
	}
}
