package runspage_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/erpresync/erpresync/internal/export"
	"github.com/erpresync/erpresync/internal/runspage"
	"github.com/erpresync/erpresync/tasks"
)

// BenchmarkChangesExport streams a run's change items through the handler; allocations per
// op stay proportional to items written, never to the body held.
func BenchmarkChangesExport(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		for _, f := range []export.Format{export.CSV, export.JSONL} {
			b.Run(fmt.Sprintf("%s/items=%d", f, n), func(b *testing.B) {
				led := sample()
				run := led.runs[0].Run
				items := make([]tasks.ChangeItem, n)
				for i := range items {
					items[i] = tasks.ChangeItem{Run: run, Table: "contact", RecordID: int32(i), Kind: tasks.KindUpdated, TaskID: "task-1", At: t0}
				}
				led.changes[run] = items
				h, err := runspage.New(runspage.Config{Ledger: led})
				if err != nil {
					b.Fatal(err)
				}
				req := httptest.NewRequest("GET", "/runs/"+run+"/changes?format="+string(f), nil)
				b.ReportAllocs()
				for b.Loop() {
					w := &discard{h: http.Header{}}
					h.ServeHTTP(w, req)
					if w.code != 0 && w.code != 200 {
						b.Fatalf("status %d", w.code)
					}
				}
				b.ReportMetric(float64(n), "items/op")
			})
		}
	}
}

// discard is a ResponseWriter that throws the body away, like a client reading it.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { return io.Discard.Write(p) }
