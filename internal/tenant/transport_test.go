package tenant

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestIdleTransportRelease: release lets the transport go only when no request is in
// flight (a response whose body is open is in flight); the next request makes a new one.
func TestIdleTransportRelease(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	client, tr := newHTTPClient(5*time.Second, nil)
	current := func() *http.Transport { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.tr }
	if current() != nil {
		t.Fatal("a transport before the first request")
	}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	first := current()
	tr.release()
	if current() != first || first == nil {
		t.Fatal("the transport was let go while a response body was open")
	}
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
		t.Fatalf("%q %v", b, err)
	}
	_ = resp.Body.Close()
	tr.release()
	if current() != nil {
		t.Fatal("the transport was kept with no request in flight")
	}
	resp, err = client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if c := current(); c == nil || c == first {
		t.Fatal("no new transport after release")
	}
	if tr.inFlight != 0 {
		t.Fatalf("%d in flight after every body closed", tr.inFlight)
	}
}
