package main

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/tenant"
)

// TestSoak is the long run behind `make soak` (ERPRESYNC_SOAK=1): 100,000 keys (or
// ERPRESYNC_SOAK_KEYS) with 5% random faults of every kind, 20 poison keys, latency, and a
// ticket expiry every 20,000 keys, on two in-process workers sharing one Redis. Nothing may be
// lost and the ledger must equal what the simulator delivered. ERPRESYNC_SOAK_API=rest runs it
// over the REST transport.
func TestSoak(t *testing.T) {
	if os.Getenv("ERPRESYNC_SOAK") != "1" {
		t.Skip("set ERPRESYNC_SOAK=1 (make soak) for the long run")
	}
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("ERPRESYNC_SOAK_KEYS")); err == nil && v > 0 {
		n = v
	}
	api := tenant.APISOAP
	if v := os.Getenv("ERPRESYNC_SOAK_API"); v != "" {
		api = v
	}
	db := redistest.New(t)
	sim := startSim(t)
	keys := testKeys("K", n)
	bad := map[string]bool{}
	var poison []string
	for i := 0; i < 20; i++ {
		k := keys[(i*n)/20+n/41]
		bad[k] = true
		poison = append(poison, k)
	}
	sim.SetPoison(poison...)
	sim.SetRandomFaults(0.05, 42)
	sim.SetLatency(2 * time.Millisecond)
	rdb := db.TestClient(t)
	const run = "soak"
	submit(t, db, run, erpsync.ActorCustomer, keys, 100)
	for range 2 { // two workers, as two processes would share the queue
		client, _ := newClientAPI(t, sim, api)
		inProcess(t, db.Opt(), client, func(c *workerSetup) { c.Concurrency = 8 })
	}
	start := time.Now()
	nextExpiry := int64(20000)
	st := runStatus(t, rdb, run)
	waitFor(t, 30*time.Minute, func() (bool, string) {
		st = runStatus(t, rdb, run)
		if st.ResyncedKeys >= nextExpiry {
			sim.ExpireTickets()
			nextExpiry += 20000
		}
		return st.PendingKeys == 0, fmt.Sprintf("%+v", st)
	})
	elapsed := time.Since(start)
	if st.ResyncedKeys != int64(n-len(poison)) || st.DeadKeys != int64(len(poison)) {
		t.Fatalf("ledger %+v, want %d resynced and %d dead", st, n-len(poison), len(poison))
	}
	snap := sim.Counts()
	var good []string
	for _, k := range keys {
		if bad[k] {
			continue
		}
		good = append(good, k)
		if snap.Resynced[k] < 1 {
			t.Fatalf("key %s never resynced", k)
		}
	}
	if !sameRecords(st.Records, expectedRecords(erpsync.ActorCustomer, good)) || !sameRecords(st.Records, simRecords(snap)) {
		t.Fatalf("ledger records %v, simulator delivered %v", st.Records, simRecords(snap))
	}
	if snap.ResyncAll != 0 {
		t.Fatalf("%d resync-all calls", snap.ResyncAll)
	}
	t.Logf("%d keys in %s (%.0f keys/s) with %v", n, elapsed.Round(time.Second), float64(n)/elapsed.Seconds(), snap.Calls)
}
