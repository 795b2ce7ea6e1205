package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

// serveReadyz serves the worker's HTTP handler against Redis at opt on a loopback port and
// returns its address.
func serveReadyz(t *testing.T, opt asynq.RedisClientOpt) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: opt.Addr, DB: opt.DB, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	h, closeUI := newHTTPHandler(httpConfig{RedisOpt: opt, Redis: rdb})
	t.Cleanup(closeUI)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestHealthcheck: exit 0 when /readyz answers 200, 1 when it answers 503 or nothing
// listens, 2 when there is no address to ask.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ready := serveReadyz(t, db.Opt())
	_, readyPort, _ := net.SplitHostPort(ready)
	down := serveReadyz(t, asynq.RedisClientOpt{Addr: freeAddr(t)})
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "ready", env: map[string]string{"WORKER_HTTP_ADDR": ready}, wantCode: 0, wantOut: "ready: http://" + ready + "/readyz answered ok"},
		{name: "all interfaces are asked on loopback", env: map[string]string{"WORKER_HTTP_ADDR": "0.0.0.0:" + readyPort}, wantCode: 0, wantOut: "ready: http://127.0.0.1:" + readyPort},
		{name: "the flag wins", args: []string{"--http-addr", ready}, env: map[string]string{"WORKER_HTTP_ADDR": "off"}, wantCode: 0, wantOut: "ready"},
		{name: "redis down", env: map[string]string{"WORKER_HTTP_ADDR": down}, wantCode: 1, wantErr: "not ready: http://" + down + "/readyz answered 503 redis unreachable"},
		{name: "nothing listens", env: map[string]string{"WORKER_HTTP_ADDR": freeAddr(t)}, wantCode: 1, wantErr: "connection refused"},
		{name: "off", env: map[string]string{"WORKER_HTTP_ADDR": "off"}, wantCode: 2, wantErr: `WORKER_HTTP_ADDR="off": this worker serves no /readyz`},
		{name: "not an address", env: map[string]string{"WORKER_HTTP_ADDR": "8080"}, wantCode: 2, wantErr: `WORKER_HTTP_ADDR="8080": want host:port`},
		{name: "bad timeout", args: []string{"--timeout", "0s"}, env: map[string]string{"WORKER_HTTP_ADDR": ready}, wantCode: 2, wantErr: "--timeout 0s"},
		{name: "a worker flag", args: []string{"--concurrency", "3"}, wantCode: 2, wantErr: "flag provided but not defined: -concurrency"},
		{name: "an argument", args: []string{"now"}, env: map[string]string{"WORKER_HTTP_ADDR": ready}, wantCode: 2, wantErr: `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"healthcheck"}, tt.args...), &stdout, &stderr, envFunc(tt.env))
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantOut) || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tt.wantOut, stderr.String(), tt.wantErr)
			}
		})
	}
}

// TestHealthcheckOfAWorkerProcess: the built binary's healthcheck, as docker-compose runs
// it in the container, reports a running worker ready.
func TestHealthcheckOfAWorkerProcess(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startSim(t)
	env := workerEnv(db, sim)
	addr := freeAddr(t)
	env["WORKER_HTTP_ADDR"] = addr
	w := startWorker(t, env)
	waitFor(t, 30*time.Second, func() (bool, string) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"healthcheck"}, &stdout, &stderr, envFunc(map[string]string{"WORKER_HTTP_ADDR": addr}))
		return code == 0, "healthcheck: " + stderr.String() + "\nworker: " + w.log()
	})
}

// TestDashboardServesMetrics: `worker dashboard` serves the queue metrics at /metrics,
// next to the dashboard and the health endpoints.
func TestDashboardServesMetrics(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	submit(t, db, "dashboard-metrics", erpsync.ActorCustomer, testKeys("D", 20), 10)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dashboard"}, &bytes.Buffer{}, &stderr, envFunc(map[string]string{"REDIS_URL": db.URL(), "WORKER_HTTP_ADDR": addr, "LOG_FORMAT": "json"}))
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("dashboard exit %d", code)
		}
	})
	waitFor(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		for _, want := range []string{`erpresync_queue_tasks{queue="erpresync",state="pending"} 2`, "erpresync_queue_latency_seconds", "erpresync_queue_scrape_ok 1", "go_goroutines"} {
			if !strings.Contains(body.String(), want) {
				return false, "/metrics lacks " + want + ":\n" + body.String()
			}
		}
		return true, ""
	})
}

// TestCallHelpListsOnlyItsFlags: `worker call -h` shows the call's own flags and the
// SuperOffice settings, none of the worker's, and the worker's flags are refused there.
func TestCallHelpListsOnlyItsFlags(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"call", "-h"}, &stdout, &stderr, envFunc(nil)); code != 0 {
		t.Fatalf("call -h: exit %d", code)
	}
	help := stderr.String()
	flags := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(help, -1)
	var names []string
	for _, f := range flags {
		names = append(names, f[1])
		if f[1] != "erp-connection" && f[1] != "actor-type" && !strings.HasPrefix(f[1], "superoffice-") {
			t.Errorf("call -h lists -%s, which does not apply to one call", f[1])
		}
	}
	for _, want := range []string{"erp-connection", "actor-type", "superoffice-url", "superoffice-username", "superoffice-timeout"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("call -h lacks -%s:\n%s", want, help)
		}
	}
	for _, s := range settings {
		if s.Secret && callSettings(s) && !strings.Contains(help, s.Env) {
			t.Errorf("call -h does not say that %s comes from the environment", s.Env)
		}
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"call", "--concurrency", "3", "--erp-connection", "1", "--actor-type", "Customer", "K"}, &stdout, &stderr, envFunc(nil)); code != 2 || !strings.Contains(stderr.String(), "-concurrency") {
		t.Errorf("call --concurrency: exit %d, want 2 naming the flag; stderr %q", code, stderr.String())
	}
}
