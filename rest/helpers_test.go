package rest

import (
	"context"
	"flag"
	"net/http"
	"testing"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/internal/sotest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var bg = context.Background()

// newTestClient returns a Client for srv with a static ticket; mut may adjust the Config.
func newTestClient(t testing.TB, baseURL string, mut func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:    baseURL + sotest.Tenant,
		AppToken:   sotest.AppToken,
		Auth:       auth.NewStaticTicket(sotest.Ticket),
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
