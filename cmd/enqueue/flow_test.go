package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/redistest"
)

// TestStatusSaysPaused: while a tenant's circuit breaker is open, status and runs say the
// pending run is paused, since when and when the next probe is.
func TestStatusSaysPaused(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	keys := writeKeys(t, "k.txt", "A1\nA2\n")
	if r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", "paused", "--redis-url", url); r.code != 0 {
		t.Fatalf("submit: %d %s", r.code, r.stderr)
	}
	rdb := db.TestClient(t)
	fl, err := flow.New(flow.Config{Redis: rdb, Tenant: "sod.example.com/cust1", TenantFailures: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer down.Close()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, down.URL, nil)
	if resp, err := (&http.Client{Transport: fl.Transport(nil)}).Do(req); err == nil {
		resp.Body.Close()
	}

	r := enqueue(t, "", "status", "paused", "--redis-url", url)
	if !strings.Contains(r.stdout, "paused: SuperOffice unavailable since ") || !strings.Contains(r.stdout, "next probe in") ||
		!strings.Contains(r.stdout, "tenant sod.example.com/cust1") {
		t.Errorf("status does not say paused:\n%s", r.stdout)
	}
	r = enqueue(t, "", "status", "paused", "--json", "--redis-url", url)
	var st struct {
		Paused []string `json:"paused"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Paused) != 1 {
		t.Errorf("status --json: %v %s", err, r.stdout)
	}
	r = enqueue(t, "", "runs", "--redis-url", url)
	if !strings.Contains(r.stdout, "active (held)") || !strings.Contains(r.stdout, "paused: SuperOffice unavailable since ") {
		t.Errorf("runs does not say paused:\n%s", r.stdout)
	}
}
