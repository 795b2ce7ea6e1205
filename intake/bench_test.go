package intake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// benchFile writes n distinct keys of 10 bytes plus n/100 duplicates.
func benchFile(b *testing.B, n int) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "keys.txt")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := make([]byte, 0, 64<<10)
	for i := range n {
		w = fmt.Appendf(w, "ERP%07d\n", i)
		if i%100 == 99 {
			w = fmt.Appendf(w, "ERP%07d\n", i-50)
		}
		if len(w) > 60<<10 {
			f.Write(w)
			w = w[:0]
		}
	}
	f.Write(w)
	f.Close()
	return p
}

// BenchmarkSubmit measures a whole submission (read, validate, dedupe, register, enqueue)
// against the package's real redis-server. Each iteration uses a fresh database.
func BenchmarkSubmit(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			path := benchFile(b, n)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				db := redistest.New(b)
				rdb := db.Client()
				p, _ := NewProducer(ProducerConfig{Redis: rdb})
				b.StartTimer()
				sum, err := p.Submit(context.Background(), RunSpec{Run: "bench", ErpConnectionID: 1, ActorType: erpsync.ActorCustomer}, Source{Path: path})
				if err != nil || sum.Keys != int64(n) {
					b.Fatalf("%+v %v", sum, err)
				}
				b.StopTimer()
				rdb.FlushDB(context.Background())
				rdb.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkDryRun measures reading, validation and the duplicate check alone.
func BenchmarkDryRun(b *testing.B) {
	for _, n := range []int{1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			path := benchFile(b, n)
			p, _ := NewProducer(ProducerConfig{})
			b.ReportAllocs()
			for b.Loop() {
				sum, err := p.Submit(context.Background(), RunSpec{Run: "bench", ErpConnectionID: 1, ActorType: erpsync.ActorCustomer, DryRun: true}, Source{Path: path})
				if err != nil || sum.Keys != int64(n) {
					b.Fatalf("%+v %v", sum, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkNaive is the baseline: one asynq Enqueue per key, sequential, no batches,
// ledger or duplicate check (20,000 keys per iteration; compare keys/s).
func BenchmarkNaive(b *testing.B) {
	const n = 20_000
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		db := redistest.New(b)
		c := asynq.NewClient(db.Opt())
		b.StartTimer()
		for i := range n {
			payload := fmt.Appendf(nil, `{"erp_connection":1,"actor_type":"Customer","key":"ERP%07d"}`, i)
			if _, err := c.Enqueue(asynq.NewTask(tasks.TypeTrickle, payload, asynq.Queue(tasks.DefaultQueue))); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
}
