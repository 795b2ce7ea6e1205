package lanes

import (
	"context"
	"testing"

	"github.com/erpresync/erpresync/internal/redistest"
)

// TestJobsPages: Jobs reads a lane page by page and returns every job once with its fields,
// also when the jobs already read are Removed between pages (as a purge does); a tenant
// without jobs has none.
func TestJobsPages(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{})
	ctx := context.Background()
	enqueue(t, q, "A", jobs("A", 1200))
	enqueue(t, q, "B", jobs("B", 3))
	seen := map[string]bool{}
	for cursor := uint64(0); ; {
		page, next, err := q.Jobs(ctx, "A", cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range page {
			if j.Type == "" || j.Queue == "" {
				t.Fatalf("job %+v lacks its fields", j)
			}
			seen[j.ID] = true
			ids = append(ids, j.ID)
		}
		if _, err := q.Remove(ctx, "A", ids...); err != nil {
			t.Fatal(err)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(seen) != 1200 {
		t.Errorf("Jobs returned %d of 1200 jobs", len(seen))
	}
	if n, _ := q.Len(ctx, "A"); n != 0 {
		t.Errorf("%d jobs of A left", n)
	}
	if n, _ := q.Len(ctx, "B"); n != 3 {
		t.Errorf("B has %d jobs, want 3", n)
	}
	if page, next, err := q.Jobs(ctx, "C", 0, 100); len(page) != 0 || next != 0 || err != nil {
		t.Errorf("Jobs of a tenant without a lane: %v, %d, %v", page, next, err)
	}
}
