package intake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// writeFile writes content to name in a fresh temp dir and returns the path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dryRun submits src as a dry run and returns the summary and the keys batched, in order.
func dryRun(t *testing.T, src Source, spec RunSpec, cfg ProducerConfig) (Summary, [][]string, error) {
	t.Helper()
	var batches [][]string
	cfg.onBatch = func(seq int, keys []string) {
		if seq != len(batches) {
			t.Errorf("batch seq %d, want %d", seq, len(batches))
		}
		batches = append(batches, keys)
	}
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if spec.ErpConnectionID == 0 {
		spec.ErpConnectionID = 1
	}
	if spec.ActorType == 0 {
		spec.ActorType = erpsync.ActorCustomer
	}
	spec.DryRun = true
	if spec.Run == "" {
		spec.Run = "test-run"
	}
	sum, err := p.Submit(context.Background(), spec, src)
	return sum, batches, err
}

func problems(s Summary) []string {
	var out []string
	for _, p := range s.Problems {
		out = append(out, p.Error())
	}
	return out
}

func flat(batches [][]string) []string {
	var out []string
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}

func TestInputQuirks(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 255)
	tests := []struct {
		name     string
		file     string // base name
		content  string
		src      Source // Path is filled in
		want     []string
		problems []string
	}{
		{name: "lines", file: "k.txt", content: "A1\nA2\nA3\n", want: []string{"A1", "A2", "A3"}},
		{name: "no final newline", file: "k.txt", content: "A1\nA2", want: []string{"A1", "A2"}},
		{name: "CRLF", file: "k.txt", content: "A1\r\nA2\r\n", want: []string{"A1", "A2"}},
		{name: "BOM", file: "k.txt", content: "\xEF\xBB\xBFA1\nA2\n", want: []string{"A1", "A2"}},
		{name: "BOM only", file: "k.txt", content: "\xEF\xBB\xBF", want: nil},
		{name: "blank lines and white space", file: "k.txt", content: "\n  A1  \n\t\n\r\nA2\t\n   \n",
			want: []string{"A1", "A2"}},
		{name: "inner space kept", file: "k.txt", content: " A 1 \n", want: []string{"A 1"}},
		{name: "non-ASCII", file: "k.txt", content: "Ærø-1\n日本\n", want: []string{"Ærø-1", "日本"}},
		{name: "254 characters of 2 bytes", file: "k.txt", content: strings.Repeat("ø", 254) + "\n",
			want: []string{strings.Repeat("ø", 254)}},
		{name: "too long", file: "k.txt", content: "A1\n" + long + "\nA2\n", want: []string{"A1", "A2"},
			problems: []string{`k.txt:2: key "` + strings.Repeat("x", 40) + `…": longer than 254 characters (255)`}},
		{name: "invalid UTF-8", file: "k.txt", content: "A1\nab\xffc\n", want: []string{"A1"},
			problems: []string{`k.txt:2: key "ab\xffc": not valid UTF-8 at byte 2`}},
		{name: "control character", file: "k.txt", content: "a\x01b\nA2\n", want: []string{"A2"},
			problems: []string{`k.txt:1: key "a\x01b": contains control character U+0001 at byte 1, which XML 1.0 cannot carry`}},
		{name: "non-character U+FFFE", file: "k.txt", content: "a\uFFFE\n", want: nil,
			problems: []string{`k.txt:1: key "a\ufffe": contains U+FFFE at byte 1, which XML 1.0 cannot carry`}},
		{name: "duplicates", file: "k.txt", content: "A1\nA2\n\nA1\n A2 \nA3\nA1\n", want: []string{"A1", "A2", "A3"},
			problems: []string{
				`k.txt:4: key "A1": duplicate of line 1`,
				`k.txt:5: key "A2": duplicate of line 2`,
				`k.txt:7: key "A1": duplicate of line 1`,
			}},
		{name: "BOM CRLF duplicate of the first key", file: "k.txt", content: "\xEF\xBB\xBFA1\r\nA2\r\nA1\r\n", want: []string{"A1", "A2"},
			problems: []string{`k.txt:3: key "A1": duplicate of line 1`}},
		{name: "CSV BOM duplicate of the first key", file: "k.csv", content: "\xEF\xBB\xBFkey\r\nA1\r\nA1\r\n",
			src: Source{CSVColumn: "key"}, want: []string{"A1"}, problems: []string{`k.csv:3: key "A1": duplicate of line 2`}},
		{name: "case matters", file: "k.txt", content: "a1\nA1\n", want: []string{"a1", "A1"}},
		{name: "CSV by name", file: "k.csv", content: "name,erp_key\nAcme,C1\nBeta,C2\n",
			src: Source{CSVColumn: "erp_key"}, want: []string{"C1", "C2"}},
		// A CSV cell our exports wrote behind an apostrophe (export.CSVCell) is read back as the
		// key it was; a line of a lines file is a key as it is.
		{name: "CSV cells written behind an apostrophe", file: "k.csv", content: "key\n\"'=HYPERLINK(\"\"x\"\")\"\n'-5\n''a\n'b\n",
			src: Source{CSVColumn: "key"}, want: []string{`=HYPERLINK("x")`, "-5", "'a", "'b"}},
		{name: "apostrophe in lines", file: "k.txt", content: "'=X\n", want: []string{"'=X"}},
		{name: "CSV header name trimmed and case-insensitive", file: "k.csv", content: "Name, ERP_Key \nAcme,C1\n",
			src: Source{CSVColumn: "erp_key"}, want: []string{"C1"}},
		{name: "CSV BOM CRLF", file: "k.csv", content: "\xEF\xBB\xBFerp_key,name\r\nC1,Acme\r\n\r\nC2,Beta\r\n",
			src: Source{CSVColumn: "erp_key"}, want: []string{"C1", "C2"}},
		{name: "CSV by index", file: "k.csv", content: "Acme,C1\nBeta,C2\n",
			src: Source{CSVColumn: "1"}, want: []string{"C1", "C2"}},
		{name: "CSV by index with header", file: "k.csv", content: "name,key\nAcme,C1\n",
			src: Source{CSVColumn: "1", CSVHeader: true}, want: []string{"C1"}},
		{name: "CSV quoted", file: "k.csv", content: "name,key\n\"Acme, Inc.\",\" C1 \"\n\"Say \"\"hi\"\"\",\"C,2\"\nx,\"C\"\"3\"\n",
			src: Source{CSVColumn: "key"}, want: []string{"C1", "C,2", `C"3`}},
		{name: "CSV quoted line break moves line numbers", file: "k.csv",
			content: "name,key\n\"two\nlines\",C1\nx,C1\nx,\"bad\x01\"\n",
			src:     Source{CSVColumn: "key"}, want: []string{"C1"},
			problems: []string{
				`k.csv:4: key "C1": duplicate of line 3`, // the first C1 field starts on line 3
				`k.csv:5: key "bad\x01": contains control character U+0001 at byte 3, which XML 1.0 cannot carry`,
			}},
		{name: "CSV semicolons", file: "k.csv", content: "kunde;nøkkel\nAcme;K1\n",
			src: Source{CSVColumn: "nøkkel", CSVComma: ';'}, want: []string{"K1"}},
		{name: "CSV missing field", file: "k.csv", content: "name,key\nAcme\nBeta,C2\n,\n",
			src: Source{CSVColumn: "key"}, want: []string{"C2"},
			problems: []string{`k.csv:2: record has 1 field(s); column "key" is missing`}},
		{name: "CSV empty key", file: "k.csv", content: "name,key\nAcme,\n",
			src: Source{CSVColumn: "key"}, want: nil,
			problems: []string{`k.csv:2: key "": empty`}},
		{name: "CSV blank record", file: "k.csv", content: "name,key\n , \nA,C1\n",
			src: Source{CSVColumn: "key"}, want: []string{"C1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			src := tt.src
			src.Path = filepath.Join(dir, tt.file)
			src.Name = tt.file
			if err := os.WriteFile(src.Path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			sum, batches, err := dryRun(t, src, RunSpec{}, ProducerConfig{})
			if err != nil && (tt.want != nil || !errors.Is(err, ErrNoKeys)) {
				t.Fatalf("Submit: %v", err)
			}
			if got := flat(batches); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("keys = %q, want %q", got, tt.want)
			}
			if got := problems(sum); !reflect.DeepEqual(got, tt.problems) {
				t.Errorf("problems =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.problems, "\n"))
			}
			if sum.Read != sum.Valid+sum.Invalid || sum.Valid != sum.Keys+sum.Duplicates || sum.Keys != int64(len(tt.want)) {
				t.Errorf("inconsistent summary %+v", sum)
			}
		})
	}
}

func TestKeyErrorIsTyped(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "k.txt", "ok\nbad\x00\nok\n")
	sum, _, err := dryRun(t, Source{Path: p}, RunSpec{}, ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Problems) != 2 {
		t.Fatalf("problems = %q", problems(sum))
	}
	var sk *erpsync.KeyError
	if ke := sum.Problems[0]; ke.File != p || ke.Line != 2 || !errors.As(ke, &sk) {
		t.Errorf("invalid key problem = %+v", ke)
	}
	if ke := sum.Problems[1]; ke.Line != 3 || !errors.Is(ke, ErrDuplicate) {
		t.Errorf("duplicate problem = %+v", ke)
	}
}

func TestBatchBoundaries(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "K%d\n", i)
		if i == 4 {
			b.WriteString("K0\n\n") // a duplicate and a blank line do not shift batches
		}
	}
	p := writeFile(t, "k.txt", b.String())
	sum, batches, err := dryRun(t, Source{Path: p}, RunSpec{BatchSize: 3}, ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"K0", "K1", "K2"}, {"K3", "K4", "K5"}, {"K6", "K7", "K8"}, {"K9"}}
	if !reflect.DeepEqual(batches, want) {
		t.Errorf("batches = %q, want %q", batches, want)
	}
	if sum.Batches != 4 || sum.BatchesEnqueued != 0 || !sum.DryRun {
		t.Errorf("summary = %+v", sum)
	}
}

// TestForcedCollisions gives many different keys the same hash bits: the answer must stay
// exact, across checkpoints and table growth.
func TestForcedCollisions(t *testing.T) {
	t.Parallel()
	for _, csv := range []bool{false, true} {
		t.Run(fmt.Sprintf("csv=%v", csv), func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			var want []string
			var wantDups []string
			if csv {
				b.WriteString("n,key\n")
			}
			line := func(k string) {
				if csv {
					fmt.Fprintf(&b, "x,\"%s\"\n", k)
				} else {
					b.WriteString(k + "\n")
				}
			}
			const n = 800 // more than 64 records (checkpoints) and 717 keys (the table grows)
			for i := range n {
				k := fmt.Sprintf("key-%04d", i)
				line(k)
				want = append(want, k)
			}
			hdr := 0
			if csv {
				hdr = 1
			}
			for i := 0; i < n; i += 37 {
				line(fmt.Sprintf("key-%04d", i))
				wantDups = append(wantDups, fmt.Sprintf("k:%d: key %q: duplicate of line %d", hdr+n+len(wantDups)+1, fmt.Sprintf("key-%04d", i), hdr+i+1))
			}
			p := writeFile(t, "k", b.String())
			// Only 64 distinct hash values: the stored top 32 bits collide all the time.
			hash := func(k []byte) uint64 { return uint64(k[len(k)-1]%8)<<61 | uint64(k[len(k)-2]%8)<<58 }
			sum, batches, err := dryRun(t, Source{Path: p, Name: "k", CSVColumn: map[bool]string{true: "key"}[csv]},
				RunSpec{BatchSize: 1000}, ProducerConfig{hash: hash})
			if err != nil {
				t.Fatal(err)
			}
			if got := flat(batches); !reflect.DeepEqual(got, want) {
				t.Errorf("got %d keys, want %d", len(got), len(want))
			}
			if got := problems(sum); !reflect.DeepEqual(got, wantDups) {
				t.Errorf("problems = %q\nwant %q", got[:min(3, len(got))], wantDups[:3])
			}
		})
	}
}

func TestSeenSetGrows(t *testing.T) {
	t.Parallel()
	s := newSeenSet(0, nil)
	defer s.release()
	keys := make([][]byte, 50000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d", i)
	}
	s.verify = func(r uint32, key []byte) (bool, error) { return string(keys[r]) == string(key), nil }
	for i, k := range keys {
		if dup, _ := s.take(k, uint32(i)); dup {
			t.Fatalf("key %d reported as duplicate", i)
		}
	}
	for i, k := range keys {
		if dup, _ := s.take(k, uint32(len(keys)+i)); !dup {
			t.Fatalf("key %d not found after growth", i)
		}
	}
	if s.n != len(keys) || len(s.slots) != 1<<17 {
		t.Errorf("n=%d slots=%d", s.n, len(s.slots))
	}
}

func TestLongLine(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "k.txt", "A1\n"+strings.Repeat("y", maxLine+10)+"\nA2\n")
	sum, batches, err := dryRun(t, Source{Path: p, Name: "k.txt"}, RunSpec{}, ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := flat(batches); !reflect.DeepEqual(got, []string{"A1", "A2"}) {
		t.Errorf("keys = %q", got)
	}
	want := []string{`k.txt:2: key "` + strings.Repeat("y", 40) + `": line longer than 1048576 bytes`}
	if got := problems(sum); !reflect.DeepEqual(got, want) {
		t.Errorf("problems = %q", got)
	}
}

func TestReaderSourceIsSpooled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sum, batches, err := dryRun(t, Source{R: strings.NewReader("B1\nB2\nB1\n")}, RunSpec{}, ProducerConfig{TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := flat(batches); !reflect.DeepEqual(got, []string{"B1", "B2"}) {
		t.Errorf("keys = %q", got)
	}
	if got := problems(sum); !reflect.DeepEqual(got, []string{`stdin:3: key "B1": duplicate of line 1`}) {
		t.Errorf("problems = %q", got)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("spool file left behind: %v", left)
	}
}

func TestStrictDryRun(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "k.txt", "A1\nA\x02\nA3\n"+strings.Repeat("z", 300)+"\n")
	sum, batches, err := dryRun(t, Source{Path: p, Name: "k.txt"}, RunSpec{Strict: true}, ProducerConfig{})
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidKeys) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	if ve.Invalid != 2 || len(ve.Errors) != 2 || ve.Errors[0].Line != 2 || ve.Errors[1].Line != 4 {
		t.Errorf("validation error = %+v", ve)
	}
	want := `submit run test-run: 2 invalid keys; first: k.txt:2: key "A\x02": contains control character U+0002 at byte 1, which XML 1.0 cannot carry (strict mode: nothing was enqueued)`
	if err.Error() != want {
		t.Errorf("err =\n%s\nwant\n%s", err, want)
	}
	if len(batches) != 0 || sum.Invalid != 2 {
		t.Errorf("batches = %q, summary %+v", batches, sum)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	csvPath := writeFile(t, "k.csv", "name,id\nA,1\n")
	tests := []struct {
		name string
		spec RunSpec
		src  Source
		want string
	}{
		{"unknown column", RunSpec{}, Source{Path: csvPath, Name: "k.csv", CSVColumn: "key"},
			`invalid configuration: k.csv:1: CSV header has no column "key"; it has "name", "id" (or give a 0-based index)`},
		{"negative index", RunSpec{}, Source{Path: csvPath, CSVColumn: "-1"}, `invalid configuration: CSV column -1: an index counts from 0`},
		{"batch size", RunSpec{BatchSize: 1001}, Source{Path: csvPath}, `invalid configuration: batch size 1001: want 1 to 1000`},
		{"run name", RunSpec{Run: "a b"}, Source{Path: csvPath}, `invalid configuration: run name "a b": character ' ' at byte 1: only letters, digits and -_.: are allowed`},
		{"no source", RunSpec{}, Source{}, `invalid configuration: source has neither a path nor a reader`},
		{"bad delimiter", RunSpec{}, Source{Path: csvPath, CSVColumn: "id", CSVComma: '"'}, `invalid configuration: CSV delimiter '"': want a single character other than a quote or a line break`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := dryRun(t, tt.src, tt.spec, ProducerConfig{})
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrConfig) {
				t.Errorf("err = %v\nwant %s", err, tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		_, _, err := dryRun(t, Source{Path: filepath.Join(t.TempDir(), "nope")}, RunSpec{}, ProducerConfig{})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("actor type", func(t *testing.T) {
		t.Parallel()
		p, _ := NewProducer(ProducerConfig{})
		_, err := p.Submit(context.Background(), RunSpec{ErpConnectionID: 1, DryRun: true}, Source{Path: csvPath})
		if err == nil || err.Error() != "invalid configuration: actor type Unknown: want one of Customer, Supplier, Partner, Person, Project, Employee, Sale" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("no redis", func(t *testing.T) {
		t.Parallel()
		p, _ := NewProducer(ProducerConfig{})
		_, err := p.Submit(context.Background(), RunSpec{ErpConnectionID: 1, ActorType: erpsync.ActorCustomer}, Source{Path: csvPath})
		if !errors.Is(err, ErrConfig) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestMalformedCSV(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "k.csv", "name,key\nA,C1\nB,C\"2\n")
	_, _, err := dryRun(t, Source{Path: p, Name: "k.csv", CSVColumn: "key"}, RunSpec{}, ProducerConfig{})
	want := `submit run test-run: k.csv: line 3, column 4: bare " in non-quoted-field`
	if err == nil || err.Error() != want || !errors.Is(err, ErrMalformed) {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// endlessField is an input of size bytes: head, then a quoted field that never closes
// (lines of x). Reading at or past limit fails the read: whoever does has tried to hold the
// whole field in memory.
type endlessField struct {
	head        string
	size, limit int64
}

func (e endlessField) ReadAt(p []byte, off int64) (int, error) {
	if off >= e.limit {
		return 0, errors.New("read far past the record limit")
	}
	if off >= e.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), e.size-off)]
	for i := range p {
		switch at := off + int64(i); {
		case at < int64(len(e.head)):
			p[i] = e.head[at]
		case at%80 == 79:
			p[i] = '\n'
		default:
			p[i] = 'x'
		}
	}
	return len(p), nil
}

// TestCSVRecordBounded: an unterminated quote must not make encoding/csv read the rest of
// the input into one field.
func TestCSVRecordBounded(t *testing.T) {
	t.Parallel()
	const size = 1 << 40 // a terabyte of input, never read
	ft := format{csv: true, comma: ',', header: true, label: `column "key"`}
	rr := newCSVReader(endlessField{head: "key\nA1\n\"", size: size, limit: 2 * maxRecord}, 0, 1, ft)
	var rec record
	for range 2 {
		if err := rr.next(&rec); err != nil {
			t.Fatal(err)
		}
	}
	err := rr.next(&rec)
	want := "line 3: a CSV record longer than 16 MiB (an unterminated quoted field?)"
	if !errors.Is(err, ErrMalformed) || err.Error() != want {
		t.Errorf("err = %v, want ErrMalformed: %s", err, want)
	}

	_, err = Source{Name: "big.csv", CSVColumn: "key"}.resolveFormat(endlessField{head: "\"", size: size, limit: 2 * maxRecord})
	want = "big.csv: reading CSV header: line 1: a CSV record longer than 16 MiB (an unterminated quoted field?)"
	if !errors.Is(err, ErrMalformed) || err.Error() != want {
		t.Errorf("header: err = %v, want ErrMalformed: %s", err, want)
	}
}

func TestMalformedCSVHeader(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "k.csv", "name,\"key\nA,C1\n")
	_, _, err := dryRun(t, Source{Path: p, Name: "k.csv", CSVColumn: "key"}, RunSpec{}, ProducerConfig{})
	want := `k.csv: reading CSV header: line 2, column 6: extraneous or missing " in quoted-field`
	if err == nil || err.Error() != want || !errors.Is(err, ErrMalformed) {
		t.Errorf("err = %v\nwant %s (ErrMalformed)", err, want)
	}
}
