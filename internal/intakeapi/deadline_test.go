package intakeapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/testwait"
)

// startPut sends the head of a PUT of body and the first part bytes of it on a connection
// of its own, and leaves it there.
func (e *env) startPut(run string, body string, part int) net.Conn {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "PUT /v1/runs/%s/keys%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
		run, q, token, len(body), body[:part])
	return conn
}

// TestStalledUploads: more stalled uploads than there are submission slots (hung export
// jobs, a stuck proxy that opened the body and sends no more) lock nobody out: another
// client's PUT goes through while they hang, and each stalled one is answered 408 once no
// byte came for BodyTimeout, with nothing enqueued and no spool left.
func TestStalledUploads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxSubmissions = 2; c.BodyTimeout = 2 * time.Second })
	body := keyLines("S", 300)
	var stalled []net.Conn
	for i := range cap(e.api.slots) + 1 {
		stalled = append(stalled, e.startPut(fmt.Sprintf("stalled-%d", i), body, 100))
	}
	// All of them are in: each spools its body (or, before, held a slot).
	testwait.Until(t, "the stalled uploads to begin", time.Minute, func() bool {
		left, _ := os.ReadDir(e.tmp)
		return len(left) == len(stalled) || len(e.api.slots) == cap(e.api.slots)
	})
	s := e.summary(e.put("/v1/runs/other/keys"+q, "text/plain", keyLines("O", 150)))
	if s.Keys != 150 {
		t.Fatalf("the other client's run: %+v", s)
	}
	for i, conn := range stalled {
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("stalled upload %d: no answer: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "INTAKE_BODY_TIMEOUT") {
			t.Errorf("stalled upload %d: %d %s; want 408 naming INTAKE_BODY_TIMEOUT", i, resp.StatusCode, b)
		}
	}
	for range stalled {
		<-e.done
	}
	for i := range stalled {
		e.noRun(fmt.Sprintf("stalled-%d", i))
	}
}

// TestHangUpAfterBody: a client that closes its connection right after the last byte of
// its body (a proxy's timeout, an export job that does not wait for the answer) still gets
// its whole run enqueued: once the body is whole, intake does not depend on the client.
func TestHangUpAfterBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const n = 30000
	body := keyLines("H", n)
	conn := e.startPut("hangup", body, len(body))
	conn.Close()
	select {
	case <-e.done:
	case <-time.After(time.Minute):
		t.Fatal("the API did not finish the request")
	}
	if got := len(e.queued("hangup")); got != n {
		t.Fatalf("%d keys queued, want all %d", got, n)
	}
	st, err := ledger.NewLedger(e.rdb).Status(context.Background(), "hangup")
	if err != nil || st.TotalKeys != n || st.State != ledger.RunActive {
		t.Fatalf("ledger: %+v %v; want %d keys, active", st, err, n)
	}
	e.noSpool()
}

// TestDrainWaitsForSubmissions: at shutdown the worker drains the API before it closes
// Redis: a submission whose body was whole, going on without its client, finishes first,
// and a request arriving meanwhile is refused with 503.
func TestDrainWaitsForSubmissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	started, release := make(chan struct{}), make(chan struct{})
	e.api.beforeSubmit = func() { close(started); <-release }

	const n = 500
	body := keyLines("D", n)
	conn := e.startPut("drained", body, len(body))
	conn.Close() // the client is gone; the body is whole
	<-started
	// What Drain's caller finds when Drain returns: every key of the submission queued.
	queuedAtDrain := make(chan int, 1)
	go func() {
		if err := e.api.Drain(context.Background()); err != nil {
			t.Errorf("Drain: %v", err)
		}
		queuedAtDrain <- len(e.queued("drained"))
	}()
	// New work is refused while draining (Drain has begun once it marks the API).
	testwait.Until(t, "the API to start draining", time.Minute, func() bool { e.api.mu.Lock(); defer e.api.mu.Unlock(); return e.api.draining })
	if r := e.put("/v1/runs/late/keys"+q, "text/plain", "A\n"); r.code != http.StatusServiceUnavailable {
		t.Errorf("a PUT while draining: %d, want 503\n%s", r.code, r.body)
	}
	close(release)
	if got := <-queuedAtDrain; got != n {
		t.Errorf("Drain returned with %d of the submission's %d keys queued: it did not wait for it", got, n)
	}
}
