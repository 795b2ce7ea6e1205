package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/redistest"
)

// TestLogFormatInAFile runs the worker binary with its stderr redirected into a file, as
// `worker 2>worker.log` does: LOG_FORMAT=auto (and unset) writes JSON there, and console
// text without colour codes.
func TestLogFormatInAFile(t *testing.T) {
	t.Parallel()
	bin := workerBinary(t)
	tests := []struct {
		name     string
		format   string // "" leaves LOG_FORMAT unset
		wantJSON bool
	}{
		{name: "unset", format: "", wantJSON: true},
		{name: "auto", format: "auto", wantJSON: true},
		{name: "json", format: "json", wantJSON: true},
		{name: "console", format: "console", wantJSON: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "worker.log")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			// No credentials: the worker logs one configuration error and exits 2.
			cmd := exec.Command(bin)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SUPEROFFICE_URL=http://127.0.0.1:9/Cust1", "WORKER_HTTP_ADDR=off"}
			if tt.format != "" {
				cmd.Env = append(cmd.Env, "LOG_FORMAT="+tt.format)
			}
			cmd.Stderr = f
			err = cmd.Run()
			f.Close()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("want exit 2, got %v", err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte("\x1b[")) {
				t.Errorf("colour codes in a file:\n%q", raw)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			for _, line := range lines {
				if isJSON := json.Valid([]byte(line)); isJSON != tt.wantJSON {
					t.Errorf("line %q: JSON %v, want %v", line, isJSON, tt.wantJSON)
				}
			}
			if !strings.Contains(string(raw), "no SuperOffice credentials") {
				t.Errorf("the log lacks the configuration error:\n%s", raw)
			}
		})
	}
}

// fakeClock is a settable time for redisOutage.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// at sets the clock to sec seconds after the epoch.
func (c *fakeClock) at(sec float64) {
	c.t = time.Unix(0, 0).Add(time.Duration(sec * float64(time.Second)))
}

// TestRedisOutageLog: nine go-redis lines a second for two and a half minutes, with asynq
// complaining too, become one line when the outage starts, one reminder a minute and one
// line when Redis answers again; a second outage starts over.
func TestRedisOutageLog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clock := &fakeClock{}
	clock.at(0)
	o := newRedisOutage(zerolog.New(&buf))
	o.now = clock.now
	a := asynqLogger{zerolog.New(&buf), o}

	lines := func() []map[string]any { return decodeLogLines(t, &buf) }

	a.Warn("before the outage") // not held back: Redis is up
	for i := range 9 * 150 {
		clock.at(float64(i) / 9)
		o.Printf(context.Background(), "redis: connection pool: failed to dial after 5 attempts: dial tcp 127.0.0.1:6379: connect: connection refused")
		if i%4 == 0 {
			a.Error("Dequeue error: UNKNOWN: redis eval error: dial tcp 127.0.0.1:6379: connect: connection refused")
		}
		if i%45 == 0 {
			o.failed(errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"))
		}
	}
	o.ok()
	o.ok() // still up: nothing more
	got := lines()
	// before + start + reminders at 60 s and 120 s + the end.
	if len(got) != 5 {
		t.Fatalf("want 5 lines, got %d:\n%s", len(got), buf.String())
	}
	if got[0]["message"] != "before the outage" {
		t.Errorf("line 1: %v", got[0])
	}
	if got[1]["component"] != "go-redis" || !strings.Contains(got[1]["message"].(string), "connection refused (Redis trouble: more lines like this are held back") {
		t.Errorf("line 2 should start the outage: %v", got[1])
	}
	for _, r := range got[2:4] {
		if !strings.Contains(r["message"].(string), "Redis still does not answer") || r["held_back"].(float64) < 500 {
			t.Errorf("want a reminder with the count: %v", r)
		}
	}
	end := got[4]
	if end["level"] != "info" || !strings.Contains(end["message"].(string), "Redis answers again, after 2m30s") {
		t.Errorf("want the end of the outage: %v", end)
	}
	if held := end["held_back"].(float64); held < 9*150 {
		t.Errorf("held_back %v: want every line of the outage but the first", held)
	}

	buf.Reset()
	clock.add(time.Hour)
	o.Printf(context.Background(), "redis: connection pool: failed to dial")
	a.Warn("held back")
	if got := lines(); len(got) != 1 || !strings.Contains(got[0]["message"].(string), "Redis trouble") {
		t.Errorf("a second outage: want one line, got:\n%s", buf.String())
	}
	var nilOutage *redisOutage
	if nilOutage.holdBack("asynq", "x") {
		t.Error("a nil outage holds lines back")
	}
}

// TestRedisOutageProcess stops Redis under a running worker process and drives failing
// Redis calls through its /readyz; the log shows the outage in a few lines, and its end
// once Redis is back on the same port.
func TestRedisOutageProcess(t *testing.T) {
	t.Parallel()
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !srv.Real {
		srv.Stop()
		t.Skip("stopping and restarting Redis needs a real redis-server")
	}
	_, portStr, _ := strings.Cut(srv.Addr, ":")
	port, _ := strconv.Atoi(portStr)
	sim := startSim(t)
	env := workerEnv(nil, sim)
	env["REDIS_URL"] = "redis://" + srv.Addr + "/0"
	addr := freeAddr(t)
	env["WORKER_HTTP_ADDR"] = addr
	w := startWorker(t, env)
	ready := func() int {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, 30*time.Second, func() (bool, string) { return ready() == http.StatusOK, "readyz: " + w.log() })

	srv.Stop()
	// Each /readyz pings Redis, and each failed dial is a go-redis line.
	for range 30 {
		if code := ready(); code != http.StatusServiceUnavailable {
			t.Fatalf("readyz %d while Redis is down", code)
		}
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(w.log(), "Redis trouble"), "no line starting the outage: " + w.log()
	})
	redistest.NewServer(t, redistest.Options{Port: port}) // Redis back on the same port
	waitFor(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(w.log(), "Redis answers again, after"), "no line ending the outage: " + w.log()
	})

	log := w.log()
	outage := log[strings.Index(log, "Redis trouble"):strings.Index(log, "Redis answers again, after")]
	if n := strings.Count(outage, "\n"); n > 3 {
		t.Errorf("the outage took %d log lines, want at most 3 (start, reminder, end):\n%s", n+1, outage)
	}
	var end struct {
		HeldBack int `json:"held_back"`
	}
	endLine := log[strings.LastIndex(log[:strings.Index(log, "Redis answers again, after")], "\n")+1:]
	endLine, _, _ = strings.Cut(endLine, "\n")
	if err := json.Unmarshal([]byte(endLine), &end); err != nil || end.HeldBack < 30 {
		t.Errorf("the end line should count at least the 30 failed pings' lines held back (%v): %s", err, endLine)
	}
}
