package intakeapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestNDJSONLines: every input line is one output line, so intake's line numbers are the
// body's, and lines longer than the reader's buffer are read whole.
func TestNDJSONLines(t *testing.T) {
	t.Parallel()
	in := "\uFEFF{\"key\": \"A\"}\r\n\n  {\"key\":\"B\",\"x\":[1,2]}  \n{\"key\":\"C\",\"pad\":\"" + strings.Repeat("p", 200<<10) + "\"}\n{\"key\":\"D\"}"
	out, err := io.ReadAll(newNDJSONReader(strings.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "A\n\nB\nC\nD\n" {
		t.Fatalf("%q", out)
	}
}

func BenchmarkNDJSON(b *testing.B) {
	var in bytes.Buffer
	for i := range 100000 {
		fmt.Fprintf(&in, "{\"key\": \"ERP%07d\"}\n", i)
	}
	b.SetBytes(int64(in.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.Copy(io.Discard, newNDJSONReader(bytes.NewReader(in.Bytes()))); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzPlainKey: where the fast path reads a line, encoding/json reads the same key.
func FuzzPlainKey(f *testing.F) {
	for _, s := range []string{`{"key": "10042"}`, `{ "key" : "a b" }`, `{"key":"a\"b"}`, `{"key":"x","y":1}`, `{"Key":"x"}`, "{\"key\":\"\xff\"}", `{"key":"é"}`, `{"key":""}`, `{"key":"a"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		key, ok := plainKey([]byte(line))
		if !ok {
			return
		}
		var rec struct {
			Key *string `json:"key"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Key == nil || *rec.Key != string(key) {
			t.Fatalf("%q: fast path %q, encoding/json %v %v", line, key, rec.Key, err)
		}
	})
}
