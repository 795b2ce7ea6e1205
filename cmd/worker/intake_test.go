package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/intakeapi"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestIntakeSettings: INTAKE_TOKENS switches the intake API on, INTAKE_MAX_BODY takes
// sizes, and bad values are refused naming the setting and never showing a token.
func TestIntakeSettings(t *testing.T) {
	t.Parallel()
	parse := func(env map[string]string) (appConfig, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		v, err := parseSettings(fs, nil, envFunc(env))
		if err != nil {
			t.Fatal(err)
		}
		return workerSettings(v)
	}
	c, err := parse(nil)
	if err != nil || c.IntakeTokens != nil || c.IntakeMaxBody != 256<<20 || c.IntakeQueue != tasks.DefaultQueue {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c, err = parse(map[string]string{"INTAKE_TOKENS": " erp-job-one-0123456789 ,erp-job-two-0123456789", "INTAKE_MAX_BODY": "1GiB", "INTAKE_QUEUE": "bulk"})
	if err != nil || !slices.Equal(c.IntakeTokens, []string{"erp-job-one-0123456789", "erp-job-two-0123456789"}) || c.IntakeMaxBody != 1<<30 || c.IntakeQueue != "bulk" {
		t.Fatalf("tokens: %+v %v", c, err)
	}
	if c, _ := parse(nil); c.IntakeBodyTimeout != 30*time.Second || c.IntakeSlotWait != 30*time.Second || c.HTTPIdleTimeout != 2*time.Minute {
		t.Errorf("deadline defaults: body %s, slot wait %s, idle %s", c.IntakeBodyTimeout, c.IntakeSlotWait, c.HTTPIdleTimeout)
	}
	if c, err := parse(map[string]string{"INTAKE_BODY_TIMEOUT": "5s", "INTAKE_SLOT_WAIT": "1m", "WORKER_HTTP_IDLE_TIMEOUT": "90s"}); err != nil ||
		c.IntakeBodyTimeout != 5*time.Second || c.IntakeSlotWait != time.Minute || c.HTTPIdleTimeout != 90*time.Second {
		t.Errorf("deadlines: %s %s %s %v", c.IntakeBodyTimeout, c.IntakeSlotWait, c.HTTPIdleTimeout, err)
	}
	for in, want := range map[string]int64{"1000": 1000, "512KiB": 512 << 10, "64 MiB": 64 << 20, "2048B": 2048} {
		if c, err := parse(map[string]string{"INTAKE_MAX_BODY": in}); err != nil || c.IntakeMaxBody != want {
			t.Errorf("INTAKE_MAX_BODY=%s: %d %v, want %d", in, c.IntakeMaxBody, err, want)
		}
	}
	for _, tt := range []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"INTAKE_TOKENS": "erp-job-one-0123456789", "WORKER_HTTP_ADDR": "off"}, "WORKER_HTTP_ADDR=off"},
		{map[string]string{"INTAKE_TOKENS": "erp-job-one-0123456789,hunter2"}, "token 2 is 7 characters"},
		{map[string]string{"INTAKE_TOKENS": "erp-job-one-0123456789,,"}, "token 2"},
		{map[string]string{"INTAKE_MAX_BODY": "lots"}, "INTAKE_MAX_BODY"},
		{map[string]string{"INTAKE_MAX_BODY": "0"}, "INTAKE_MAX_BODY"},
		{map[string]string{"INTAKE_MAX_BODY": "-5MiB"}, "INTAKE_MAX_BODY"},
		{map[string]string{"INTAKE_MAX_BODY": "9999999999999GiB"}, "INTAKE_MAX_BODY"},
		{map[string]string{"INTAKE_BODY_TIMEOUT": "0s"}, "INTAKE_BODY_TIMEOUT"},
		{map[string]string{"INTAKE_SLOT_WAIT": "soon"}, "INTAKE_SLOT_WAIT"},
		{map[string]string{"WORKER_HTTP_IDLE_TIMEOUT": "100ms"}, "WORKER_HTTP_IDLE_TIMEOUT"},
	} {
		_, err := parse(tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: err = %v, want it to name %s", tt.env, err, tt.wantErr)
		}
		if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "0123456789")) {
			t.Errorf("%v: the error shows a token: %v", tt.env, err)
		}
	}
}

// readmeCurl returns the README's curl commands (continuation lines joined, comments
// dropped), in order.
func readmeCurl(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		text := strings.ReplaceAll(block[1], "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(regexp.MustCompile(`\s+#[^'"]*$`).ReplaceAllString(line, ""))
			if strings.HasPrefix(line, "curl ") || strings.Contains(line, "| curl ") {
				cmds = append(cmds, line)
			}
		}
	}
	return cmds
}

// TestREADMECurl runs the README's curl commands, with curl, against a worker serving the
// intake API in front of the simulator: every one must succeed and answer JSON, and the
// run they submit is resynced, its poison key dead-lettered with its reason.
func TestREADMECurl(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed: the README's curl commands are not run")
	}
	cmds := readmeCurl(t)
	if len(cmds) < 8 {
		t.Fatalf("the README shows only %d curl commands", len(cmds))
	}
	db := redistest.New(t)
	sim := startSim(t)
	sim.SetPoison("10003")
	client, _ := newClient(t, sim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const tok = "erp-export-readme-test-token"
	logs := lockedWriter{&sync.Mutex{}, &bytes.Buffer{}}
	inProcess(t, db.Opt(), client, func(c *appConfig) {
		c.Listener, c.IntakeTokens, c.BusinessRetries = ln, []string{tok}, -1
		c.Logger = zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.InfoLevel)
	})
	dir := t.TempDir()
	for name, content := range map[string]string{
		"customers.txt": "10001\n10002\n10003\n10004\n",
		"persons.csv":   "name,erp_key\nAda,P-1\nBob,P-2\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + ln.Addr().String()
	sh := func(line string) (string, error) {
		line = strings.ReplaceAll(line, "http://127.0.0.1:8080", base)
		line = strings.ReplaceAll(line, "erp-export --ndjson |", `printf '{"key": "S-1"}\n{"key": "S-2"}\n' |`)
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + filepath.Dir(curl) + ":/usr/bin:/bin", "INTAKE_TOKENS=" + tok}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
		return string(out), err
	}
	var deadCmd string
	for _, line := range cmds {
		out, err := sh(line)
		if err != nil {
			t.Errorf("README: %s\n%v\n%s", line, err, out)
			continue
		}
		if !json.Valid([]byte(out)) {
			t.Errorf("README: %s\nanswered no JSON: %.300s", line, out)
		}
		if strings.HasSuffix(line, "/dead") {
			deadCmd = line
		}
	}
	rdb := db.Client()
	defer rdb.Close()
	for run, total := range map[string]int64{"customers-2026-11-27": 4, "persons-2026-11-27": 2, "sales-2026-11-27": 2} {
		st := waitDone(t, rdb, run, time.Minute)
		if st.TotalKeys != total || st.Source != "http" {
			t.Errorf("%s: %+v", run, st)
		}
	}
	out, err := sh(deadCmd)
	var dead []tasks.DeadLetter
	if err != nil || json.Unmarshal([]byte(out), &dead) != nil || len(dead) != 1 || dead[0].Key != "10003" || dead[0].Reason == "" {
		t.Errorf("dead letters over HTTP: %v %s", err, out)
	}
	// Without the token the same command is refused.
	out, err = sh(strings.ReplaceAll(deadCmd, "$INTAKE_TOKENS", "not-a-token"))
	if err == nil || !strings.Contains(out, "wrong token") {
		t.Errorf("a wrong token was not refused: %v %s", err, out)
	}
	if l := logs.String(); !strings.Contains(l, "run submitted") || strings.Contains(l, tok) || strings.Contains(l, "not-a-token") {
		t.Errorf("the worker's log lacks the submissions or shows a token:\n%s", l)
	}
}

// TestIntakeMounted: the worker serves /v1/ only when the intake API is switched on.
func TestIntakeMounted(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client()
	defer rdb.Close()
	for _, on := range []bool{false, true} {
		hc := httpConfig{RedisOpt: db.Opt(), Redis: rdb}
		if on {
			api, err := intakeapi.New(intakeapi.Config{Redis: rdb, Tokens: []string{"erp-export-mounted-test"}})
			if err != nil {
				t.Fatal(err)
			}
			hc.Intake = api
		}
		h, closeUI := newHTTPHandler(hc)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/runs", nil))
		closeUI()
		want := http.StatusNotFound
		if on {
			want = http.StatusUnauthorized
		}
		if rec.Code != want {
			t.Errorf("intake API on=%v: GET /v1/runs %d, want %d", on, rec.Code, want)
		}
	}
}
