package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

// TestClusterStarts checks that StartCluster gives a real, formed cluster: every node owns
// its share of the slots, keys spread over the nodes, multi-key commands across slots are
// refused (CROSSSLOT) while hash-tagged ones work, and asynq talks to it through Opt.
func TestClusterStarts(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("%d addresses, want 3", got)
	}
	t.Logf("startup took %s (about 2 s unloaded; not asserted, a loaded machine is slower)", c.Startup)
	ctx := context.Background()

	// Every node sees three masters that own all 16384 slots between them.
	for i := range c.Addrs() {
		n := c.NodeClient(i)
		slots, err := n.ClusterSlots(ctx).Result()
		n.Close()
		if err != nil {
			t.Fatal(err)
		}
		owned := map[string]int{}
		for _, s := range slots {
			owned[s.Nodes[0].Addr] += int(s.End - s.Start + 1)
		}
		total := 0
		for _, k := range owned {
			total += k
		}
		if len(owned) != 3 || total != clusterSlots {
			t.Fatalf("node %d sees slots %v, want 3 masters owning %d", i, owned, clusterSlots)
		}
	}

	rdb := c.Client()
	defer rdb.Close()
	for i := range 30 {
		k := fmt.Sprintf("key-%d", i)
		if err := rdb.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		if v, err := rdb.Get(ctx, k).Int(); err != nil || v != i {
			t.Fatalf("GET %s = %d, %v", k, v, err)
		}
	}
	for i := range c.Addrs() {
		n := c.NodeClient(i)
		size, err := n.DBSize(ctx).Result()
		n.Close()
		if err != nil || size == 0 {
			t.Fatalf("node %d holds %d keys (%v); keys did not spread over the cluster", i, size, err)
		}
	}
	// "a" and "b" hash to different slots.
	if err := rdb.Do(ctx, "MSET", "a", "1", "b", "2").Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("MSET across slots: err = %v, want CROSSSLOT", err)
	}
	if err := rdb.MSet(ctx, "{t}a", "1", "{t}b", "2").Err(); err != nil {
		t.Fatalf("MSET in one slot: %v", err)
	}

	client := asynq.NewClient(c.Opt())
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("ping", nil), asynq.Queue("q")); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(c.Opt())
	defer insp.Close()
	qi, err := insp.GetQueueInfo("q")
	if err != nil {
		t.Fatal(err)
	}
	if qi.Pending != 1 {
		t.Fatalf("queue q: %d pending, want 1", qi.Pending)
	}
}
