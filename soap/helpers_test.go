package soap

import (
	"bytes"
	"context"
	"encoding/xml"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/erpresync/erpresync/auth"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	testAppToken = "APP-TOKEN-SECRET-1234"
	testTicket   = "7T:TICKET-SECRET-ABCD=="
	testTenant   = "/Cust12345"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGolden compares got with testdata/name, or rewrites the file under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./soap -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./soap -update if the change is intended)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// newServer starts an httptest server closed at the end of the test.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newTestClient returns a Client for srv with a static ticket; mut may adjust the Config.
func newTestClient(t testing.TB, baseURL string, mut func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:    baseURL + testTenant,
		AppToken:   testAppToken,
		Auth:       auth.NewStaticTicket(testTicket),
		HTTPClient: &http.Client{},
	}
	if mut != nil {
		mut(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cannedReply writes a canned reply.
func cannedReply(status int, contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		w.Write(body)
	}
}

var bg = context.Background()

func xmlUnmarshal(b []byte, v any) error { return xml.Unmarshal(b, v) }
