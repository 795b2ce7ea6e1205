package main

import (
	"bytes"
	"encoding/json"
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

	"github.com/erpresync/erpresync/internal/intakeapi"
	"github.com/erpresync/erpresync/internal/readmetest"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestIntakeSettings: INTAKE_TOKENS switches the intake API on, INTAKE_MAX_BODY takes
// sizes, and bad values are refused naming the setting and never showing a token.
func TestIntakeSettings(t *testing.T) {
	t.Parallel()
	parse := func(env map[string]string) (appConfig, error) { return workerSettings(parseTestSettings(t, nil, env)) }
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
// dropped), in order, and the intake token its `export INTAKE_TOKENS=` line sets; blocks
// marked as not run are left out.
func readmeCurl(t *testing.T) (cmds []string, token string) {
	t.Helper()
	blocks, err := readmetest.Blocks(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range readmetest.Lines(blocks) {
		if v, ok := strings.CutPrefix(line, "export INTAKE_TOKENS="); ok {
			token = v
		}
		if strings.HasPrefix(line, "curl ") || strings.Contains(line, "| curl ") {
			cmds = append(cmds, line)
		}
	}
	return cmds, token
}

// trialIntakeToken is the intake token `make trial` gives its worker, read from the
// commands `make -n trial` would run.
func trialIntakeToken(t *testing.T) string {
	t.Helper()
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TRIAL_INTAKE_TOKEN\s*=\s*(\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no TRIAL_INTAKE_TOKEN for `make trial`")
	}
	return string(m[1])
}

// readmeTrialPoison is the key the README's trial simulator refuses (`-poison KEY`).
const readmeTrialPoison = "CUST-13"

// TestREADMECurl runs the README's curl commands as shown — with curl, from the repository
// root, with the token the README exports — against a worker serving the intake API in
// front of the simulator set up as `make trial` sets it up (only the listener's address is
// the test's own, so that tests run in parallel): every one must succeed and answer JSON,
// the runs they submit are resynced, and the trial's poison key is dead-lettered with its
// reason. The token must be the one `make trial` gives its worker.
func TestREADMECurl(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed: the README's curl commands are not run")
	}
	cmds, tok := readmeCurl(t)
	if len(cmds) < 8 {
		t.Fatalf("the README shows only %d curl commands", len(cmds))
	}
	if tok == "" {
		t.Fatal("the README's curl commands send $INTAKE_TOKENS, but no block exports INTAKE_TOKENS")
	}
	if trial := trialIntakeToken(t); tok != trial {
		t.Errorf("the README exports INTAKE_TOKENS=%s, but `make trial` gives the worker %s", tok, trial)
	}
	db := redistest.New(t)
	sim := startSim(t)
	sim.SetPoison(readmeTrialPoison)
	client, _ := newClient(t, sim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := lockedWriter{&sync.Mutex{}, &bytes.Buffer{}}
	inProcess(t, db.Opt(), client, func(c *workerSetup) {
		c.Listener, c.IntakeTokens, c.BusinessRetries = ln, []string{tok}, -1
		c.Logger = zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.InfoLevel)
	})
	base := "http://" + ln.Addr().String()
	sh := func(line string) (string, error) {
		line = strings.ReplaceAll(line, "http://127.0.0.1:8080", base)
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = "../.."
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
	runs := map[string]bool{}
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
		if m := regexp.MustCompile(`/v1/runs/([^/?]+)/keys`).FindStringSubmatch(line); m != nil {
			runs[m[1]] = true
		}
	}
	if len(runs) < 3 {
		t.Errorf("the README's curl commands submit %d runs, want the text, CSV and NDJSON ones", len(runs))
	}
	rdb := db.TestClient(t)
	for run := range runs {
		st := waitDone(t, rdb, run, time.Minute)
		if st.TotalKeys == 0 || st.Source != "http" {
			t.Errorf("%s: %+v", run, st)
		}
	}
	out, err := sh(deadCmd)
	var dead []tasks.DeadLetter
	if err != nil || json.Unmarshal([]byte(out), &dead) != nil || len(dead) != 1 || dead[0].Key != readmeTrialPoison || dead[0].Reason == "" {
		t.Errorf("dead letters over HTTP: want %s alone, with its reason: %v %s", readmeTrialPoison, err, out)
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

// TestTrialServesIntake: `make trial` starts its worker with the intake API switched on,
// with the token the Makefile documents. It reads the trial target's recipe (`make -n`
// would run its `$(MAKE)` line).
func TestTrialServesIntake(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	recipe := regexp.MustCompile(`(?m)^trial:.*\n((?:\t.*\n)*)`).FindSubmatch(mk)
	if recipe == nil {
		t.Fatal("the Makefile has no trial target")
	}
	worker := strings.ReplaceAll(string(recipe[1]), "\\\n", " ")
	if !regexp.MustCompile(`\sINTAKE_TOKENS=\$\(TRIAL_INTAKE_TOKEN\)\s+bin/worker\s`).MatchString(worker) {
		t.Errorf("`make trial` does not start bin/worker with INTAKE_TOKENS=$(TRIAL_INTAKE_TOKEN):\n%s", worker)
	}
	if tok := trialIntakeToken(t); len(tok) < 16 {
		t.Errorf("TRIAL_INTAKE_TOKEN %q is shorter than the 16 characters INTAKE_TOKENS requires", tok)
	}
}

// TestIntakeMounted: the worker serves /v1/ only when the intake API is switched on.
func TestIntakeMounted(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
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
