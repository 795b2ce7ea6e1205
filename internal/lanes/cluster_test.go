package lanes

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
)

// TestCluster: on Redis Cluster every script stays in one hash slot, tenants spread over
// the nodes, and asynq served from the cluster runs every job once.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	rc := c.Client()
	t.Cleanup(func() { rc.Close() })
	q, err := New(Config{Redis: rc, Queues: []string{"lanes-test"}, LowWater: 4, OnError: func(err error) { t.Logf("dispatcher: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	rec := newRecorder(q, 0)
	serveOpt(t, c.Opt(), 4, rec)
	run(t, q)
	const tenants, per = 12, 5
	for i := range tenants {
		tenant := fmt.Sprintf("c%d", i)
		enqueue(t, q, tenant, jobs(tenant, per))
	}
	eventually(t, 30*time.Second, "every job run", func() bool { return rec.count() >= tenants*per })
	rec.mu.Lock()
	for id, n := range rec.runs {
		if n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
	rec.mu.Unlock()
	nodes := map[string]bool{}
	for i := range tenants {
		slot := rc.ClusterKeySlot(context.Background(), q.tenantKeys(fmt.Sprintf("c%d", i)).lane).Val()
		nodes[fmt.Sprint(slot*3/16384)] = true
	}
	if len(nodes) < 2 {
		t.Errorf("all %d tenants' lanes on one node", tenants)
	}
}
