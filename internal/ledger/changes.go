package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/erpresync/erpresync/tasks"
)

// The change items of a run, stored compactly: one list element per successful batch (see
// encodeChanges), not one JSON document per item. A run written by an earlier version holds
// one ChangeItem JSON document per element, and a run in flight during an upgrade holds
// both; Changes reads either, element by element, in the order recorded.

// changesFormat is the first byte of a compact element; a JSON element starts with '{'.
const changesFormat = 0x01

// kindCodes numbers the change kinds in a compact element.
var kindCodes = []string{tasks.KindAdded, tasks.KindUpdated, tasks.KindDeleted}

func kindCode(kind string) (byte, bool) {
	for i, k := range kindCodes {
		if k == kind {
			return byte(i), true
		}
	}
	return 0, false
}

// encodeChanges encodes the change items of one batch (all of one run, one task and one
// time) as one list element:
//
//	0x01  uvarint(at, unix ms)  uvarint(len)+task ID  uvarint(tables)  (uvarint(len)+table)*
//	then runs of items with the same kind and table, in the order given:
//	kind (0 added, 1 updated, 2 deleted)  uvarint(table index)  uvarint(count)  varint(record ID)*
//
// A batch of 100 keys with one change each takes about 450 bytes (4–5 bytes a record ID),
// where the JSON documents took about 150 bytes an item. It returns nil for no items.
func encodeChanges(taskID string, at time.Time, items []tasks.ChangeItem) ([]byte, error) {
	if len(items) == 0 {
		return nil, nil
	}
	var tables []string
	index := map[string]uint64{}
	for _, it := range items {
		if _, ok := index[it.Table]; !ok {
			index[it.Table] = uint64(len(tables))
			tables = append(tables, it.Table)
		}
	}
	b := make([]byte, 0, 32+len(taskID)+5*len(items))
	b = append(b, changesFormat)
	b = binary.AppendUvarint(b, uint64(max(at.UnixMilli(), 0)))
	b = appendString(b, taskID)
	b = binary.AppendUvarint(b, uint64(len(tables)))
	for _, t := range tables {
		b = appendString(b, t)
	}
	for i := 0; i < len(items); {
		kind, ok := kindCode(items[i].Kind)
		if !ok {
			return nil, fmt.Errorf("ledger: change item kind %q: want added, updated or deleted", items[i].Kind)
		}
		j := i + 1
		for j < len(items) && items[j].Kind == items[i].Kind && items[j].Table == items[i].Table {
			j++
		}
		b = append(b, kind)
		b = binary.AppendUvarint(b, index[items[i].Table])
		b = binary.AppendUvarint(b, uint64(j-i))
		for _, it := range items[i:j] {
			b = binary.AppendVarint(b, int64(it.RecordID))
		}
		i = j
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// errCorruptChanges is wrapped when a stored change element cannot be read.
var errCorruptChanges = errors.New("unreadable change element")

// changeReader walks a compact element.
type changeReader struct {
	b   []byte
	err error
}

func (r *changeReader) uvarint() uint64 { return readNumber(r, binary.Uvarint) }

func (r *changeReader) varint() int64 { return readNumber(r, binary.Varint) }

// readNumber reads one number with decode (binary.Uvarint or binary.Varint); a number that
// does not decode sets errCorruptChanges.
func readNumber[T uint64 | int64](r *changeReader, decode func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := decode(r.b)
	if n <= 0 {
		r.err = errCorruptChanges
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *changeReader) string() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errCorruptChanges
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decodeChanges calls fn for each item of a stored element, compact or JSON.
func decodeChanges(run string, elem []byte, fn func(tasks.ChangeItem) error) error {
	if len(elem) > 0 && elem[0] == '{' {
		var it tasks.ChangeItem
		if err := json.Unmarshal(elem, &it); err != nil {
			return fmt.Errorf("%w: %w", errCorruptChanges, err)
		}
		return fn(it)
	}
	if len(elem) == 0 || elem[0] != changesFormat {
		return fmt.Errorf("%w: format byte %q", errCorruptChanges, elem[:min(len(elem), 1)])
	}
	r := &changeReader{b: elem[1:]}
	at := time.UnixMilli(int64(r.uvarint())).UTC()
	taskID := r.string()
	tables := make([]string, r.uvarint()%(1<<16)) // a corrupt count cannot allocate much
	for i := range tables {
		tables[i] = r.string()
	}
	for r.err == nil && len(r.b) > 0 {
		kind := r.b[0]
		r.b = r.b[1:]
		ti, n := r.uvarint(), r.uvarint()
		if r.err == nil && (int(kind) >= len(kindCodes) || ti >= uint64(len(tables))) {
			r.err = errCorruptChanges
		}
		for ; r.err == nil && n > 0; n-- {
			id := r.varint()
			if r.err != nil {
				break
			}
			if err := fn(tasks.ChangeItem{Run: run, Table: tables[ti], RecordID: int32(id), Kind: kindCodes[kind], TaskID: taskID, At: at}); err != nil {
				return err
			}
		}
	}
	return r.err
}

// changesPage is how many list elements Changes reads per round trip: a compact element
// holds one batch's items (up to a few thousand), an element written by an earlier version
// one item.
const changesPage = 200

// Changes calls fn for each change item recorded for run, in the order recorded, reading
// Redis in pages of 200 batches; it stops at fn's first error and returns it. Items recorded
// while it runs may or may not be seen. At has millisecond precision (items recorded by
// versions before the compact format: nanoseconds).
func (l *Ledger) Changes(ctx context.Context, run string, fn func(tasks.ChangeItem) error) error {
	k := l.keys(run).changes
	for start := int64(0); ; start += changesPage {
		vals, err := l.rdb.LRange(ctx, k, start, start+changesPage-1).Result()
		if err != nil {
			return fmt.Errorf("ledger: changes of %s: %w", run, err)
		}
		for _, v := range vals {
			var ferr error
			err := decodeChanges(run, []byte(v), func(it tasks.ChangeItem) error {
				ferr = fn(it)
				return ferr
			})
			if ferr != nil {
				return ferr
			}
			if err != nil {
				return fmt.Errorf("ledger: change items of %s: %w", run, err)
			}
		}
		if len(vals) < changesPage {
			return nil
		}
	}
}
