package netserversim

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestCountsUnderConcurrency fires overlapping batches from many goroutines with counted
// faults and poison keys mixed in, records what each client observed, and requires the
// simulator's counters to match that record exactly.
func TestCountsUnderConcurrency(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	tk := rs.IssueTicket()
	const (
		workers   = 8
		perWorker = 30
		pool      = 40
		fail503   = 20
		drops     = 10
		throttles = 10
	)
	rs.Fail503(fail503)
	rs.DropNext(drops)
	rs.Throttle(throttles, time.Second)
	rs.SetPoison("C-POISON")

	type observed struct {
		outcomes map[Outcome]int
		resynced map[string]int
		seen     map[string]int
		changes  map[Change]int
	}
	results := make([]observed, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			o := observed{map[Outcome]int{}, map[string]int{}, map[string]int{}, map[Change]int{}}
			client := &http.Client{Timeout: 10 * time.Second}
			actor := ActorType(w % 8)
			for i := range perWorker {
				keys := make([]string, 5)
				for j := range keys {
					keys[j] = fmt.Sprintf("C-%d", (w*7+i*3+j*11)%pool)
				}
				if i%9 == 4 {
					keys[2] = "C-POISON"
				}
				r, err := do(client, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML(tk, actor.String(), keys...))
				switch {
				case err != nil:
					o.outcomes[OutcomeDropped]++
				case r.status == http.StatusServiceUnavailable:
					o.outcomes[OutcomeUnavailable]++
				case r.status == http.StatusTooManyRequests:
					o.outcomes[OutcomeThrottled]++
				case r.status == http.StatusOK:
					for _, k := range uniqueKeys(keys) {
						o.seen[k]++
					}
					if parse(t, r).Body.Resync.Response.IsOk != "true" {
						o.outcomes[OutcomeRejected]++
						continue
					}
					o.outcomes[OutcomeOK]++
					for _, k := range uniqueKeys(keys) {
						o.resynced[k]++
						o.changes[ExpectedChange(actor, k)]++
					}
				default:
					t.Errorf("unexpected status %d: %s", r.status, r.body)
				}
			}
			results[w] = o
		})
	}
	wg.Wait()

	want := observed{map[Outcome]int{}, map[string]int{}, map[string]int{}, map[Change]int{}}
	for _, o := range results {
		for k, v := range o.outcomes {
			want.outcomes[k] += v
		}
		for k, v := range o.resynced {
			want.resynced[k] += v
		}
		for k, v := range o.seen {
			want.seen[k] += v
		}
		for k, v := range o.changes {
			want.changes[k] += v
		}
	}
	wantChanges := map[string]map[ChangeKind]int{}
	for c, n := range want.changes {
		if wantChanges[c.Table] == nil {
			wantChanges[c.Table] = map[ChangeKind]int{}
		}
		wantChanges[c.Table][c.Kind] += n
	}

	got := rs.Counts()
	if got.Calls[OutcomeUnavailable] != fail503 || got.Calls[OutcomeDropped] != drops || got.Calls[OutcomeThrottled] != throttles {
		t.Errorf("fault counts = %v, want %d/%d/%d", got.Calls, fail503, drops, throttles)
	}
	if !maps.Equal(got.Calls, want.outcomes) {
		t.Errorf("calls = %v, clients observed %v", got.Calls, want.outcomes)
	}
	if got.TotalCalls() != workers*perWorker {
		t.Errorf("total = %d, want %d", got.TotalCalls(), workers*perWorker)
	}
	if !maps.Equal(got.Resynced, want.resynced) {
		t.Errorf("resynced = %v\nwant       %v", got.Resynced, want.resynced)
	}
	if !maps.Equal(got.Seen, want.seen) {
		t.Errorf("seen = %v\nwant   %v", got.Seen, want.seen)
	}
	if !maps.EqualFunc(got.Changes, wantChanges, maps.Equal) {
		t.Errorf("changes = %v, want %v", got.Changes, wantChanges)
	}
	if got.Calls[OutcomeRejected] == 0 || got.Resynced["C-POISON"] != 0 {
		t.Errorf("poison batches: %+v", got)
	}

	rs.Reset()
	if c := rs.Counts(); c.TotalCalls() != 0 || len(c.Seen) != 0 || len(c.Resynced) != 0 || len(c.Changes) != 0 {
		t.Fatalf("after Reset: %+v", c)
	}
}

func TestExpectedChangeIsStable(t *testing.T) {
	t.Parallel()
	// Pinned values: changing the hash breaks every ledger expectation built on it.
	tests := []struct {
		actor ActorType
		key   string
		want  Change
	}{
		{ActorCustomer, "10001", Change{Table: "contact", RecordID: 3272988, Kind: Added}},
		{ActorCustomer, "G-10001", Change{Table: "contact", RecordID: 1582416, Kind: Updated}},
		{ActorPerson, "G-10001", Change{Table: "person", RecordID: 1582416, Kind: Updated}},
		{ActorSale, "G-10004", Change{Table: "sale", RecordID: 3623411, Kind: Updated}},
		{ActorUnknown, "", Change{Table: "contact", RecordID: 3176453, Kind: Added}},
	}
	for _, tc := range tests {
		if got := ExpectedChange(tc.actor, tc.key); got != tc.want {
			t.Errorf("ExpectedChange(%v, %q) = %+v, want %+v", tc.actor, tc.key, got, tc.want)
		}
	}
}

func TestExpectedChangeTables(t *testing.T) {
	t.Parallel()
	want := map[ActorType]string{
		ActorUnknown: "contact", ActorCustomer: "contact", ActorSupplier: "contact", ActorPartner: "contact",
		ActorPerson: "person", ActorEmployee: "person", ActorProject: "project", ActorSale: "sale",
	}
	for a, table := range want {
		if got := ExpectedChange(a, "k").Table; got != table {
			t.Errorf("%v → %q, want %q", a, got, table)
		}
		if p, err := ParseActorType(a.String()); err != nil || p != a {
			t.Errorf("ParseActorType(%q) = %v, %v", a.String(), p, err)
		}
	}
	if ActorType(9).String() != "ErpActorType(9)" {
		t.Error(ActorType(9).String())
	}
}

func TestExpectedChangeDistribution(t *testing.T) {
	t.Parallel()
	const n = 20000
	kinds := map[ChangeKind]int{}
	ids := map[int32]bool{}
	for i := range n {
		c := ExpectedChange(ActorCustomer, fmt.Sprintf("%08d", i))
		kinds[c.Kind]++
		ids[c.RecordID] = true
		if c.RecordID < 1 || c.RecordID > 9_999_999 {
			t.Fatalf("record id %d out of range", c.RecordID)
		}
	}
	for kind, share := range map[ChangeKind]float64{Added: 0.2, Updated: 0.7, Deleted: 0.1} {
		if got := float64(kinds[kind]) / n; math.Abs(got-share) > 0.02 {
			t.Errorf("%s share = %.3f, want %.2f ± 0.02", kind, got, share)
		}
	}
	if len(ids) < n*99/100 {
		t.Errorf("only %d distinct record ids for %d keys", len(ids), n)
	}
}

func TestExpectedChangesDedupes(t *testing.T) {
	t.Parallel()
	got := ExpectedChanges(ActorProject, []string{"a", "b", "a", "c", "b"})
	if len(got) != 3 || got[0] != ExpectedChange(ActorProject, "a") || got[2] != ExpectedChange(ActorProject, "c") {
		t.Fatalf("got %+v", got)
	}
}
