package rest

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeResponse: the reply parser never panics, and returns a Result or an error,
// never both or neither.
func FuzzDecodeResponse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "reply_*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"IsOk":true,"Changes":{"AddedRecords":[null,{"RecordId":1e3}]}}`))
	f.Add([]byte(`{"IsOk":"yes"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeResponse(body, 200)
		if (r == nil) == (err == nil) {
			t.Fatalf("result %v and error %v", r, err)
		}
		_ = decodeError(body)
	})
}
