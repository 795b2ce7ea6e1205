package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// freeAddr returns a loopback address nothing listens on (now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestStartupFailures: a worker that cannot start exits 2 with one message naming the
// setting at fault, before it runs anything, and leaves no goroutine and no listener behind.
// Not parallel: it counts the process's goroutines, and sequential tests run while no
// parallel test does.
func TestStartupFailures(t *testing.T) {
	db := redistest.New(t)
	locked := redistest.NewServer(t, redistest.Options{Password: "the-right-one"})
	sim := startSim(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	base := map[string]string{
		"REDIS_URL": db.URL(), "SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_TICKET": sim.IssueTicket(),
		"WORKER_HTTP_ADDR": "off", "LOG_FORMAT": "json",
	}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		realOnly bool // the miniredis fallback does not refuse these
		want     string
	}{
		{name: "argument", args: []string{"--concurrency", "3", "extra"}, want: `unexpected argument \"extra\"`},
		{name: "bad setting", env: map[string]string{"WORKER_QUEUES": ":2"}, want: "WORKER_QUEUES"},
		{name: "no credentials", env: map[string]string{"SUPEROFFICE_TICKET": ""}, want: "no SuperOffice credentials"},
		{name: "short dashboard password", env: map[string]string{"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "x"}, want: "DASHBOARD_PASSWORD is too short (1 characters): want at least 12"},
		{name: "bad nightly config", env: map[string]string{"NIGHTLY_CONFIG": `{"entries": [{"name": "x", "cron": "not a cron"}]}`}, want: "NIGHTLY_CONFIG"},
		{name: "port taken", env: map[string]string{"WORKER_HTTP_ADDR": taken.Addr().String()}, want: "WORKER_HTTP_ADDR=" + taken.Addr().String()},
		{name: "redis refuses the password", env: map[string]string{"REDIS_URL": "redis://:hunter2@" + locked.Addr + "/1", "WORKER_HTTP_ADDR": freeAddr(t)}, realOnly: true, want: "REDIS_URL: Redis refused the connection"},
		{name: "redis has no such database", env: map[string]string{"REDIS_URL": "redis://" + db.Server.Addr + "/100000"}, realOnly: true, want: "REDIS_URL: Redis refused the connection"},
	}

	// Warm up what stays for the life of the process (os/signal's watcher).
	warm := make(chan os.Signal, 1)
	signal.Notify(warm, syscall.SIGUSR1)
	signal.Stop(warm)
	before := runtime.NumGoroutine()

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.realOnly && !db.Server.Real {
				t.Skip("needs a real redis-server")
			}
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			var stdout, stderr strings.Builder
			if code := run(context.Background(), tt.args, &stdout, &stderr, envFunc(env)); code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr.String())
			}
			out := stderr.String()
			if !strings.Contains(out, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, out)
			}
			if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != 1 || !strings.Contains(out, `"level":"error"`) {
				t.Errorf("want one error line, got %d lines:\n%s", n, out)
			}
			for _, never := range []string{"hunter2", "worker started"} {
				if strings.Contains(out, never) {
					t.Errorf("stderr shows %q:\n%s", never, out)
				}
			}
			if addr := env["WORKER_HTTP_ADDR"]; addr != "off" && addr != taken.Addr().String() {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatalf("the failed start left %s open: %v", addr, err)
				}
				ln.Close()
			}
		})
	}

	var after int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if after = runtime.NumGoroutine(); after <= before || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after the failed starts:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// TestRedisDownAtStartup: a Redis that is down when the worker starts is not a reason to
// exit (it may be starting too): the worker warns, /readyz says 503, and once Redis is up it
// connects by itself and works. The password in REDIS_URL is never printed.
func TestRedisDownAtStartup(t *testing.T) {
	t.Parallel()
	redisAddr := freeAddr(t)
	_, port, _ := net.SplitHostPort(redisAddr)
	redisPort, _ := strconv.Atoi(port)
	sim := startSim(t)
	env := map[string]string{
		"REDIS_URL": "redis://:hunter2@" + redisAddr + "/1", "SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_TICKET": sim.IssueTicket(),
		"WORKER_HTTP_ADDR": "127.0.0.1:0", "LOG_FORMAT": "json", "LOG_LEVEL": "info",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedWriter
	logs.mu, logs.w = &sync.Mutex{}, &bytes.Buffer{}
	code := make(chan int, 1)
	go func() { code <- run(ctx, nil, &strings.Builder{}, logs, envFunc(env)) }()

	var base string
	waitFor(t, 30*time.Second, func() (bool, string) {
		m := regexp.MustCompile(`"http_addr":"([^"]+)".*"worker started"|"worker started".*"http_addr":"([^"]+)"`).FindStringSubmatch(logs.String())
		if m == nil {
			return false, "not started:\n" + logs.String()
		}
		base = "http://" + m[1] + m[2]
		return true, ""
	})
	if !strings.Contains(logs.String(), "Redis not reachable yet") {
		t.Errorf("no warning about Redis:\n%s", logs.String())
	}
	if code, _ := get(t, base+"/readyz", "", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down: %d, want 503", code)
	}

	srv, err := redistest.Start(redistest.Options{Port: redisPort, Password: "hunter2"})
	if err != nil {
		t.Fatalf("start Redis on %s: %v", redisAddr, err)
	}
	t.Cleanup(srv.Stop)
	if !srv.Real {
		t.Skip("needs a real redis-server on a given port")
	}
	db := srv.NewDB(t)
	if db.Index != 1 {
		t.Fatalf("got database %d, want 1", db.Index)
	}
	waitFor(t, time.Minute, func() (bool, string) {
		code, _ := get(t, base+"/readyz", "", "")
		return code == http.StatusOK, fmt.Sprintf("/readyz: %d", code)
	})
	keys := testKeys("U", 30)
	submit(t, db, "redis-late", erpsync.ActorCustomer, keys, 10)
	rdb := db.TestClient(t)
	assertResyncedOnce(t, sim, waitDone(t, rdb, "redis-late", time.Minute), erpsync.ActorCustomer, keys)

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d after the context ended, want 0", c)
		}
	case <-time.After(time.Minute):
		t.Fatal("the worker did not stop")
	}
	out := logs.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("the log shows the Redis password:\n%s", out)
	}
	if !strings.Contains(out, "worker stopped") {
		t.Errorf("no orderly stop:\n%s", out)
	}
}

// brokenListener fails every Accept, as a listener whose socket went bad does.
type brokenListener struct{}

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("accept: socket broken") }
func (brokenListener) Close() error              { return nil }
func (brokenListener) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestListenerFailureExits: when the listener fails, `worker dashboard` stops and exits 2
// instead of hanging.
func TestListenerFailureExits(t *testing.T) {
	t.Parallel()
	code := make(chan int, 1)
	go func() {
		code <- serveUntilSignal(context.Background(), make(chan os.Signal), brokenListener{}, http.NotFoundHandler(), 0, zerolog.Nop())
	}()
	select {
	case c := <-code:
		if c != 2 {
			t.Fatalf("exit %d, want 2", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after its listener failed")
	}
}

// TestDemoListenFallsBack: the demo takes another port when 8080 (here: any port) is taken,
// and says so.
func TestDemoListenFallsBack(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var said []string
	say := func(format string, a ...any) { said = append(said, fmt.Sprintf(format, a...)) }
	ln, err := demoListen(taken.Addr().String(), say)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.Addr().String() == taken.Addr().String() {
		t.Fatalf("listening on the taken %s", ln.Addr())
	}
	if want := fmt.Sprintf("(%s is taken; using %s)", taken.Addr(), ln.Addr()); len(said) != 1 || said[0] != want {
		t.Errorf("said %q, want %q", said, want)
	}
	if ln, err := demoListen("off", say); ln != nil || err != nil {
		t.Errorf(`demoListen("off") = %v, %v; want no listener`, ln, err)
	}
}

// TestDemoMatches: the demo's --once verdict is true only when the ledger and the simulator
// agree on every count.
func TestDemoMatches(t *testing.T) {
	t.Parallel()
	const actor = erpsync.ActorCustomer
	keys, poison := []string{"K1", "K2", "K3", "K4"}, []string{"K3"}
	good := []string{"K1", "K2", "K4"}
	snapshot := func() netserversim.Snapshot {
		s := netserversim.Snapshot{Resynced: map[string]int{"K1": 1, "K2": 2, "K4": 1}, Changes: map[string]map[netserversim.ChangeKind]int{}}
		for _, c := range netserversim.ExpectedChanges(netserversim.ActorType(actor), good) {
			if s.Changes[c.Table] == nil {
				s.Changes[c.Table] = map[netserversim.ChangeKind]int{}
			}
			s.Changes[c.Table][c.Kind]++
		}
		return s
	}
	status := func() ledger.RunStatus {
		return ledger.RunStatus{TotalKeys: 4, ResyncedKeys: 3, DeadKeys: 1, Records: expectedRecords(actor, good)}
	}
	tests := []struct {
		name   string
		mutate func(*ledger.RunStatus, *[]tasks.DeadLetter, *netserversim.Snapshot, *[]string)
		want   bool
	}{
		{name: "match", mutate: func(*ledger.RunStatus, *[]tasks.DeadLetter, *netserversim.Snapshot, *[]string) {}, want: true},
		{name: "a good key never resynced", mutate: func(_ *ledger.RunStatus, _ *[]tasks.DeadLetter, s *netserversim.Snapshot, _ *[]string) {
			delete(s.Resynced, "K2")
		}},
		{name: "a good key dead", mutate: func(_ *ledger.RunStatus, d *[]tasks.DeadLetter, _ *netserversim.Snapshot, _ *[]string) {
			*d = []tasks.DeadLetter{{Key: "K1"}}
		}},
		{name: "one poison key dead twice, another not at all", mutate: func(st *ledger.RunStatus, d *[]tasks.DeadLetter, _ *netserversim.Snapshot, p *[]string) {
			*p = []string{"K3", "K4"}
			st.ResyncedKeys, st.DeadKeys = 2, 2
			*d = []tasks.DeadLetter{{Key: "K3"}, {Key: "K3"}}
		}},
		{name: "ledger misses a change", mutate: func(st *ledger.RunStatus, _ *[]tasks.DeadLetter, _ *netserversim.Snapshot, _ *[]string) {
			st.Records = expectedRecords(actor, good[:2])
		}},
		{name: "ledger has a change the simulator never made", mutate: func(st *ledger.RunStatus, _ *[]tasks.DeadLetter, _ *netserversim.Snapshot, _ *[]string) {
			st.Records = expectedRecords(actor, append([]string{"K9"}, good...))
		}},
		{name: "resync-all reached SuperOffice", mutate: func(_ *ledger.RunStatus, _ *[]tasks.DeadLetter, s *netserversim.Snapshot, _ *[]string) {
			s.ResyncAll = 1
		}},
	}
	for _, tt := range tests {
		st, dead, snap, p := status(), []tasks.DeadLetter{{Key: "K3"}}, snapshot(), poison
		tt.mutate(&st, &dead, &snap, &p)
		if got := demoMatches(st, dead, snap, keys, p); got != tt.want {
			t.Errorf("%s: demoMatches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestQueueCollectorWithoutRedis: a scrape while Redis is down reports
// erpresync_queue_scrape_ok 0 and no stale queue series, and does not fail the scrape.
func TestQueueCollectorWithoutRedis(t *testing.T) {
	t.Parallel()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: freeAddr(t)})
	defer insp.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newQueueCollector(insp))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "erpresync_queue_scrape_ok" || mfs[0].GetMetric()[0].GetGauge().GetValue() != 0 {
		t.Fatalf("got %v, want erpresync_queue_scrape_ok 0 alone", mfs)
	}
}
