package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

func get(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return send(t, req)
}

// send does req and returns the reply's status and body; a transport error fails the test.
func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startSim(t)
	client, auth := newClient(t, sim)
	base := dashboardWorker(t, db, client, auth)
	rdb := db.TestClient(t)
	submit(t, db, "http-run", erpsync.ActorCustomer, testKeys("H", 30), 10)
	waitDone(t, rdb, "http-run", time.Minute)

	if code, body := get(t, base+"/healthz", "", ""); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz", "", ""); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	// The ledger records a batch before the handler counts it and before asynq marks the
	// task completed, so the metrics may trail the ledger for a moment: poll for them.
	wants := []string{
		`erpresync_calls_total{outcome="ok",tenant=""} 3`,
		`erpresync_keys_resynced_total{tenant=""} 30`,
		`erpresync_queue_tasks{queue="erpresync",state="completed"} 3`,
		`erpresync_call_duration_seconds_count`,
		`erpresync_records_changed_total{kind=`,
		`erpresync_ticket_refreshes_total`,
		`erpresync_queue_scrape_ok 1`,
		`go_goroutines`,
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		code, metrics := get(t, base+"/metrics", "", "")
		if code != 200 {
			return false, fmt.Sprintf("/metrics: %d", code)
		}
		for _, want := range wants {
			if !strings.Contains(metrics, want) {
				return false, fmt.Sprintf("/metrics lacks %q:\n%s", want, metrics)
			}
		}
		return true, ""
	})
	if code, _ := get(t, base+"/monitoring/", "", ""); code != http.StatusUnauthorized {
		t.Errorf("dashboard without credentials: %d, want 401", code)
	}
	if code, _ := get(t, base+"/monitoring/", "ops", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("dashboard with a wrong password: %d, want 401", code)
	}
	if code, _ := get(t, base+"/monitoring/", "root", "s3cret"); code != http.StatusUnauthorized {
		t.Errorf("dashboard with a wrong user: %d, want 401", code)
	}
	code, page := get(t, base+"/monitoring/", "ops", "s3cret")
	if code != 200 || !strings.Contains(page, "<html") {
		t.Errorf("dashboard: %d %.80q", code, page)
	}
	code, queues := get(t, base+"/monitoring/api/queues", "ops", "s3cret")
	if code != 200 || !strings.Contains(queues, `"queue":"erpresync"`) {
		t.Errorf("dashboard API: %d %.200s", code, queues)
	}
	req, _ := http.NewRequest("DELETE", base+"/monitoring/api/queues/erpresync/completed_tasks:delete_all", nil)
	req.SetBasicAuth("ops", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Errorf("read-only dashboard accepted a delete: %d", resp.StatusCode)
	}
}

func TestReadyzWithoutRedis(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t) // nothing listens there
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	h, closeUI := newHTTPHandler(httpConfig{RedisOpt: asynq.RedisClientOpt{Addr: addr}, Redis: rdb})
	defer closeUI()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis down: %d, want 503", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/healthz: %d", rec.Code)
	}
}

// serveLoopback runs serveHTTP with h and to on a free loopback port until the test has
// ended, and returns the port's address and a connection to it (closed at the end).
func serveLoopback(t *testing.T, h http.Handler, to httpTimeouts) (string, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveHTTP(ctx, ln, h, to) }()
	t.Cleanup(func() { cancel(); <-served })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ln.Addr().String(), c
}

// TestIdleConnectionsClosed: a client that keeps its connection open after a request and
// sends nothing more is disconnected after WORKER_HTTP_IDLE_TIMEOUT, while another client
// is served meanwhile.
func TestIdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	addr, idle := serveLoopback(t, ok, httpTimeouts{Idle: 300 * time.Millisecond})
	io.WriteString(idle, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if code, _ := get(t, "http://"+addr+"/y", "", ""); code != http.StatusOK {
		t.Errorf("another client: %d", code)
	}
	// The idle one is closed by the server: its read ends (EOF), not at our own minute.
	idle.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle keep-alive connection: read %d, %v; want it closed by the server (EOF)", n, err)
	}
}

// dashboardWorker runs a worker in-process on db with client, serving HTTP on a free port
// with a read-only dashboard for ops/s3cret, and returns the server's base URL.
func dashboardWorker(t *testing.T, db *redistest.DB, client tasks.Resyncer, pa *auth.PasswordAuth) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inProcess(t, db.Opt(), client, func(c *workerSetup) {
		c.Refreshes = pa.Refreshes
		c.Listener, c.DashboardUser, c.DashboardPass, c.DashboardRO = ln, "ops", "s3cret", true
	})
	return "http://" + ln.Addr().String()
}

// TestStalledBodyOfRefusedRequest: a client that stalls in a body no handler reads (here a
// refused request, as a wrong login or an unknown route answers) gets its answer and loses
// its connection within the listener's deadline instead of holding it for ever.
func TestStalledBodyOfRefusedRequest(t *testing.T) {
	t.Parallel()
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusUnauthorized) })
	_, c := serveLoopback(t, refuse, httpTimeouts{Body: 300 * time.Millisecond})
	// 3 of the 1,000 bytes announced, then nothing.
	io.WriteString(c, "POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
	c.SetReadDeadline(time.Now().Add(time.Minute)) // the test's own limit, far beyond the listener's
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
}
