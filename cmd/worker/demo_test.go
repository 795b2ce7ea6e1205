package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoOnce runs the README's first command as a newcomer would (with --once, and a free
// port in case 8080 is taken): it must finish and its summary must match the simulator.
// It runs over both transports (`worker demo --api rest`).
func TestDemoOnce(t *testing.T) {
	t.Parallel()
	forEachAPI(t, testDemoOnce)
}

func testDemoOnce(t *testing.T, api string) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```sh\ngo run ./cmd/worker demo\n```") || !strings.Contains(string(readme), "```sh\ngo test ./...\n```") {
		t.Fatal("the README no longer shows the two commands `go run ./cmd/worker demo` and `go test ./...`")
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"demo", "--once", "--api", api, "--keys", "800", "--poison", "3", "--http-addr", "127.0.0.1:0"}, &stdout, &stderr, envFunc(nil))
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"keys resynced 797 of 800", "matches what the simulator saw", "business ERP_REJECTED after 3 attempts: ERP connection 1", "contact"} {
		if !strings.Contains(regexp.MustCompile(` +`).ReplaceAllString(out, " "), regexp.MustCompile(` +`).ReplaceAllString(want, " ")) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n    CUST-"); n != 3 {
		t.Errorf("%d dead letters listed, want 3:\n%s", n, out)
	}
	// The summary fits a terminal of 80 columns, and a dead letter says each thing once.
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 80 {
			t.Errorf("summary line of %d columns:\n%s", len(line), line)
		}
	}
	if strings.Contains(out, "dead letter:") || strings.Contains(out, "(1 key)") {
		t.Errorf("the dead letters repeat what the summary says already:\n%s", out)
	}
	// Progress: one line when something changed, never 100.0% before the end.
	lines := regexp.MustCompile(`(?m)^  \d+/\d+ keys done.*$`).FindAllString(stderr.String(), -1)
	for i, l := range lines {
		if i > 0 && l == lines[i-1] {
			t.Errorf("progress line %d repeats the one before: %q", i, l)
		}
		if strings.Contains(l, "(100.0%)") && i != len(lines)-1 {
			t.Errorf("progress line %d says 100.0%% with keys pending: %q", i, l)
		}
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "  800/800 keys done (100.0%), 3 dead") {
		t.Errorf("progress lines end with %q", lines)
	}
	// stderr is no terminal: the dead-letter log lines are JSON, without colour codes.
	if strings.Contains(stderr.String(), "\x1b[") || !strings.Contains(stderr.String(), `"message":"dead letter"`) {
		t.Errorf("want the demo's log lines as JSON on a non-terminal stderr:\n%q", stderr.String())
	}
	for _, want := range []string{"/monitoring/", "/metrics", "miniredis", "simulator", "over " + api} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("demo does not say where %q is:\n%s", want, stderr.String())
		}
	}
}

// TestDemoRealTenantNeedsFlag: with SUPEROFFICE_URL set the demo would send invented keys
// to a real tenant; it does so only with --real-tenant, and without it says so at once.
func TestDemoRealTenantNeedsFlag(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"demo", "--once", "--http-addr", "127.0.0.1:0"}, &stdout, &stderr,
		envFunc(map[string]string{"SUPEROFFICE_URL": "https://sod.superoffice.com/Cust12345", "SUPEROFFICE_TICKET": "7T:abc"}))
	if code != 2 || !strings.Contains(stderr.String(), "pass --real-tenant") || !strings.Contains(stderr.String(), "SUPEROFFICE_URL is set") {
		t.Errorf("exit %d, want 2 naming --real-tenant\n%s", code, stderr.String())
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("the refusal took %s: it must not wait", time.Since(start))
	}
}

// TestDemoRefusedLogin: against a tenant that refuses the configured password, `worker
// demo --once` ends within a deadline, exit 2, naming SUPEROFFICE_PASSWORD, after a
// progress line that says the batches are held and why; it does not wait for ever.
func TestDemoRefusedLogin(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"demo", "--once", "--real-tenant", "--keys", "40", "--http-addr", "127.0.0.1:0"}, &stdout, &stderr,
			envFunc(map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_USERNAME": testUser, "SUPEROFFICE_PASSWORD": "not-" + testPassword}))
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("worker demo --once still runs after two minutes against a tenant that refuses its login")
	}
	errOut := stderr.String()
	if code != 2 || !strings.Contains(errOut, "SuperOffice refused the login") || !strings.Contains(errOut, "SUPEROFFICE_PASSWORD") {
		t.Errorf("exit %d, want 2 naming SUPEROFFICE_PASSWORD\n%s", code, errOut)
	}
	if !regexp.MustCompile(`(?m)^  0/40 keys done \(0\.0%\), 0 dead, .*; held: 1 batch held for an auth failure`).MatchString(errOut) {
		t.Errorf("no progress line says the batch is held and why:\n%s", errOut)
	}
	if strings.Contains(errOut, "not-"+testPassword) {
		t.Errorf("the password is in the output:\n%s", errOut)
	}
}
