package soap

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
)

// FuzzParseResponse feeds arbitrary bytes to the reply parser, seeded with the seed
// response and every golden reply. It must never panic, and must return exactly one of a
// erpsync.Result or an error of the package's types.
func FuzzParseResponse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		if strings.HasPrefix(filepath.Base(name), "request_") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("<html><body>503</body></html>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := ParseResponse(data)
		if (resp == nil) == (err == nil) {
			t.Fatalf("ParseResponse = %v, %v: want exactly one of a response and an error", resp, err)
		}
		if err != nil {
			var (
				ex *erpsync.ExceptionError
				fe *erpsync.FaultError
				pe *erpsync.ProtocolError
			)
			if !errors.As(err, &ex) && !errors.As(err, &fe) && !errors.As(err, &pe) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			_ = err.Error()
			return
		}
		if resp.StatusName == "" && resp.Status != erpsync.StatusOk && resp.Status != erpsync.StatusError {
			t.Fatalf("no Status sent but Status = %v", resp.Status)
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
	})
}
