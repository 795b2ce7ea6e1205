package intake

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
)

// readerFormats are the formats FuzzRecordReaders reads each input in.
var readerFormats = []format{
	{},
	{csv: true, comma: ',', column: 0},
	{csv: true, comma: ';', column: 1, header: true},
}

// FuzzRecordReaders checks what the duplicate check relies on: reading the input again from
// the offset and line where any record starts gives that record again, byte for byte and on
// the same line; and that the records are the ones a plain reading of the input finds
// (lines split at '\n'; encoding/csv for CSV). It also checks that no input panics.
func FuzzRecordReaders(f *testing.F) {
	for _, s := range []string{
		"A1\nA2\n", "A1\nA2", "\xEF\xBB\xBFA1\r\nA2\r\nA1\r\n", "\n\n  \nA\r\n", "\xEF\xBB\xBF",
		"key\r\n\"a\nb\",x\r\n\r\nc\n", "\"unterminated\n", "a,\"b\"\"c\"\n,\n", "\xEF\xBB\xBF\"k\"\n\"k\"\n",
		"n;k\n1;\"x\r\ny\";z\n\n2;w\r", "a\rb\r\nc", "x,\"\"\n\"\n\n\",y\n",
	} {
		f.Add([]byte(s), uint8(0), uint8(16))
	}
	f.Fuzz(func(t *testing.T, in []byte, mode, bufSize uint8) {
		ft := readerFormats[int(mode)%len(readerFormats)]
		ra := bytes.NewReader(in)
		type seen struct {
			off   int64
			line  int
			rec   record
			key   string
			isErr bool
		}
		var got []seen
		rr := newRecordReader(ra, 0, 1, ft, 16+int(bufSize))
		var readErr error
		for {
			s := seen{off: rr.offset(), line: rr.line()}
			err := rr.next(&s.rec)
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error not ErrMalformed: %v", err)
				}
				readErr = err
				break
			}
			s.key, s.isErr = string(s.rec.key), s.rec.problem != nil
			got = append(got, s)
		}
		for i, s := range got {
			var again record
			if err := newRecordReader(ra, s.off, s.line, ft, 4096).next(&again); err != nil {
				t.Fatalf("record %d again from offset %d: %v", i, s.off, err)
			}
			if string(again.key) != s.key || again.line != s.rec.line || again.blank != s.rec.blank || (again.problem != nil) != s.isErr {
				t.Fatalf("record %d from offset %d, line %d: key %q line %d blank %v, first read key %q line %d blank %v",
					i, s.off, s.line, again.key, again.line, again.blank, s.key, s.rec.line, s.rec.blank)
			}
		}

		want, err := plainRecords(in, ft)
		if (err != nil) != (readErr != nil) || len(want) != len(got) {
			t.Fatalf("%d records, %v; a plain reading finds %d, %v", len(got), readErr, len(want), err)
		}
		for i, w := range want {
			if got[i].key != w.key || got[i].rec.line != w.line || got[i].rec.blank && !w.blank {
				t.Fatalf("record %d: key %q line %d blank %v; a plain reading finds %q line %d blank %v",
					i, got[i].key, got[i].rec.line, got[i].rec.blank, w.key, w.line, w.blank)
			}
		}
	})
}

type plainRecord struct {
	key   string
	line  int
	blank bool // a blank line, or (CSV) a header or a record without the key column
}

// plainRecords reads in the plain way: lines split at '\n', or encoding/csv reading it all.
func plainRecords(in []byte, ft format) ([]plainRecord, error) {
	body := bytes.TrimPrefix(in, bom)
	var out []plainRecord
	if !ft.csv {
		lines := bytes.SplitAfter(body, []byte("\n"))
		if len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		for i, l := range lines {
			k := string(bytes.TrimSpace(l))
			out = append(out, plainRecord{k, i + 1, k == ""})
		}
		return out, nil
	}
	cr := csv.NewReader(bytes.NewReader(body))
	cr.Comma = ft.comma
	cr.FieldsPerRecord = -1
	for {
		fields, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		r := plainRecord{blank: true}
		r.line, _ = cr.FieldPos(0)
		if ft.column < len(fields) && !(ft.header && len(out) == 0) {
			r.key = string(bytes.TrimSpace([]byte(fields[ft.column])))
			r.line, _ = cr.FieldPos(ft.column)
			r.blank = r.key == ""
		}
		out = append(out, r)
	}
}

// FuzzDedupe submits inputs as dry runs with a hash that makes almost every key collide, and
// checks that exactly the first occurrence of every valid key is batched, in input order.
func FuzzDedupe(f *testing.F) {
	for _, s := range []string{"A\nB\nA\n", "\xEF\xBB\xBFA\r\nA\r\n", "k;\"a\nb\"\nx;\"a\nb\"\n", "a\x00\na\nb,c\n\"b\",c\n"} {
		f.Add([]byte(s), uint8(0))
	}
	hash := func(k []byte) uint64 { return uint64(len(k)%4) << 62 }
	f.Fuzz(func(t *testing.T, in []byte, mode uint8) {
		ft := readerFormats[int(mode)%len(readerFormats)]
		src := Source{R: bytes.NewReader(in)}
		switch {
		case ft.csv && ft.header:
			src.CSVColumn, src.CSVHeader, src.CSVComma = "1", true, ft.comma
		case ft.csv:
			src.CSVColumn = "0"
		}
		_, batches, err := dryRun(t, src, RunSpec{BatchSize: 3}, ProducerConfig{hash: hash, TempDir: t.TempDir()})
		recs, perr := plainRecords(in, ft)
		if (err != nil) != (perr != nil) {
			t.Fatalf("Submit: %v; a plain reading: %v", err, perr)
		}
		if err != nil {
			return // a malformed CSV stops the submission; what was batched before is not compared
		}
		var want []string
		taken := map[string]bool{}
		for _, r := range recs {
			if r.blank || erpsync.ValidateKey(r.key) != nil || taken[r.key] {
				continue
			}
			taken[r.key] = true
			want = append(want, r.key)
		}
		if got := flat(batches); !slices.Equal(got, want) {
			t.Fatalf("batched %q, want %q", got, want)
		}
	})
}
