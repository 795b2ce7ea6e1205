package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/erpresync/erpresync/erpsync"
)

func TestEncodeChangesRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 2, 30, 0, 123456789, time.UTC)
	item := func(kind, table string, id int32) tasks.ChangeItem {
		return tasks.ChangeItem{Run: "rt", Table: table, RecordID: id, Kind: kind, TaskID: "rt:b000001.0", At: at.Truncate(time.Millisecond)}
	}
	tests := []struct {
		name  string
		items []tasks.ChangeItem
	}{
		{"one", []tasks.ChangeItem{item(tasks.KindUpdated, "contact", 7)}},
		{"grouped", []tasks.ChangeItem{item(tasks.KindAdded, "person", 1), item(tasks.KindAdded, "person", 2), item(tasks.KindUpdated, "contact", 3),
			item(tasks.KindDeleted, "contact", 4)}},
		{"interleaved kinds and tables keep their order", []tasks.ChangeItem{item(tasks.KindUpdated, "contact", 9), item(tasks.KindAdded, "person", 8),
			item(tasks.KindUpdated, "contact", 7), item(tasks.KindUpdated, "person", 6), item(tasks.KindUpdated, "contact", 5)}},
		{"extreme ids", []tasks.ChangeItem{item(tasks.KindUpdated, "contact", 0), item(tasks.KindUpdated, "contact", -1),
			item(tasks.KindUpdated, "contact", 1<<31-1), item(tasks.KindUpdated, "contact", -1<<31)}},
		{"unicode table", []tasks.ChangeItem{item(tasks.KindAdded, "tabellé", 42)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := encodeChanges("rt:b000001.0", at, tt.items)
			if err != nil {
				t.Fatal(err)
			}
			var got []tasks.ChangeItem
			if err := decodeChanges("rt", b, func(it tasks.ChangeItem) error { got = append(got, it); return nil }); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.items) {
				t.Errorf("decoded %+v\nwant %+v", got, tt.items)
			}
		})
	}
	if b, err := encodeChanges("x", at, nil); b != nil || err != nil {
		t.Errorf("no items: %q, %v; want nil, nil", b, err)
	}
	if _, err := encodeChanges("x", at, []tasks.ChangeItem{{Kind: "moved", Table: "contact"}}); err == nil {
		t.Error("unknown kind accepted")
	}
}

// TestEncodeChangesSize holds the compact form to its promise: a batch of 100 keys with one
// change each (record ids below 10,000,000, as in the simulator) in under 5 bytes a key.
func TestEncodeChangesSize(t *testing.T) {
	t.Parallel()
	resp := okResponse(testKeys("SIZE", 100))
	for i := range resp.Changes.Updated {
		resp.Changes.Updated[i].RecordID %= 10_000_000
	}
	items := tasks.ChangeItems("customers-2026-11-27", "customers-2026-11-27:b000042", resp.Changes, time.Now())
	b, err := encodeChanges("customers-2026-11-27:b000042", time.Now(), items)
	if err != nil {
		t.Fatal(err)
	}
	var js int
	for _, it := range items {
		j, _ := json.Marshal(it)
		js += len(j)
	}
	if len(b) > 5*len(items) {
		t.Errorf("compact element of %d items is %d bytes (JSON: %d); want at most %d", len(items), len(b), js, 5*len(items))
	}
	t.Logf("%d items: %d bytes compact, %d bytes as JSON documents", len(items), len(b), js)
}

func TestDecodeChangesCorrupt(t *testing.T) {
	t.Parallel()
	good, err := encodeChanges("c:b000000", time.Now(), []tasks.ChangeItem{{Kind: tasks.KindAdded, Table: "contact", RecordID: 300}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		elem []byte
	}{
		{"empty", nil},
		{"unknown format", []byte{0x7f, 1, 2}},
		{"truncated", good[:len(good)-1]},
		{"bad json", []byte(`{"run":`)},
		{"table index out of range", append(bytes.Clone(good[:len(good)-4]), 0, 5, 1, 2)},
		{"unknown kind", append(bytes.Clone(good[:len(good)-4]), 9, 0, 1, 2)},
	} {
		err := decodeChanges("c", tt.elem, func(tasks.ChangeItem) error { return nil })
		if !errors.Is(err, errCorruptChanges) {
			t.Errorf("%s: %v; want errCorruptChanges", tt.name, err)
		}
	}
}

func FuzzDecodeChanges(f *testing.F) {
	good, _ := encodeChanges("f:b000000", time.Now(), []tasks.ChangeItem{{Kind: tasks.KindAdded, Table: "contact", RecordID: 300},
		{Kind: tasks.KindDeleted, Table: "person", RecordID: -4}})
	f.Add(good)
	f.Add([]byte(`{"run":"f","table":"contact","record_id":1,"kind":"added"}`))
	f.Fuzz(func(t *testing.T, elem []byte) {
		decodeChanges("f", elem, func(tasks.ChangeItem) error { return nil }) // must not panic
	})
}

// TestChangesOfARunWrittenByThePreviousVersion: a run in flight during an upgrade. The old
// version registered its batches and recorded the first one's change items as one JSON
// document each (more than one page of them); the new handler finishes the run. Status and
// Changes read both, in the order recorded.
func TestChangesOfARunWrittenByThePreviousVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	rdb := e.ledger.rdb
	const run = "upgrade"
	batches := [][]string{testKeys("OLD", 2*changesPage+50), testKeys("NEW1", 100), testKeys("NEW2", 7)}
	for seq, keys := range batches {
		if _, err := e.ledger.RegisterBatch(ctx, RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}, tasks.BatchID(run, seq), len(keys)); err != nil {
			t.Fatal(err)
		}
	}
	// What the previous successScript wrote for batch 0.
	k := keysFor(run)
	oldAt := time.Date(2026, 11, 26, 2, 30, 0, 987654321, time.UTC)
	var want []tasks.ChangeItem
	var docs []any
	for _, key := range batches[0] {
		it := tasks.ChangeItem{Run: run, Table: "contact", RecordID: recordID(key), Kind: tasks.KindUpdated, TaskID: tasks.BatchID(run, 0), At: oldAt}
		want = append(want, it)
		b, _ := json.Marshal(it)
		docs = append(docs, string(b))
	}
	pipe := rdb.TxPipeline()
	pipe.HSet(ctx, k.batches, tasks.BatchID(run, 0), stateDone)
	pipe.HIncrBy(ctx, k.meta, "resynced", int64(len(batches[0])))
	pipe.HIncrBy(ctx, k.records, tasks.KindUpdated+":contact", int64(len(batches[0])))
	pipe.RPush(ctx, k.changes, docs...)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for seq := 1; seq < len(batches); seq++ {
		if err := e.h.ProcessTask(ctx, mustTask(t, customerBatch(run, seq, batches[seq]))); err != nil {
			t.Fatal(err)
		}
		for _, key := range batches[seq] {
			want = append(want, tasks.ChangeItem{Run: run, Table: "contact", RecordID: recordID(key), Kind: tasks.KindUpdated, TaskID: tasks.BatchID(run, seq)})
		}
	}
	st, err := e.ledger.Status(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(len(batches[0]) + len(batches[1]) + len(batches[2]))
	if st.State != RunDone || st.ResyncedKeys != total || st.Records[tasks.KindUpdated]["contact"] != total {
		t.Errorf("status = %+v", st)
	}
	var got []tasks.ChangeItem
	if err := e.ledger.Changes(ctx, run, func(it tasks.ChangeItem) error { got = append(got, it); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Changes: %d items, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if i >= len(batches[0]) {
			w.At = g.At // recorded now
		}
		if g != w {
			t.Fatalf("item %d = %+v, want %+v", i, g, w)
		}
	}
	if !got[0].At.Equal(oldAt) {
		t.Errorf("an old item's time = %v, want %v (nanoseconds kept)", got[0].At, oldAt)
	}
}

// TestChangesManyPages reads a run of more compact elements than one page holds.
func TestChangesManyPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	const n = 2*changesPage + 3
	for seq := range n {
		if err := e.h.ProcessTask(ctx, mustTask(t, customerBatch("many", seq, []string{fmt.Sprintf("K%d", seq)}))); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	err := e.ledger.Changes(ctx, "many", func(it tasks.ChangeItem) error {
		if it.TaskID != tasks.BatchID("many", i) || it.RecordID != recordID(fmt.Sprintf("K%d", i)) {
			return fmt.Errorf("item %d = %+v", i, it)
		}
		i++
		return nil
	})
	if err != nil || i != n {
		t.Errorf("Changes: %d items, %v; want %d", i, err, n)
	}
}
