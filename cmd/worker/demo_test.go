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

// TestDemoTwoTenantsOnce: `worker demo --tenants 2 --once` serves two tenants from a tenants
// file, each on a simulator of its own (SOAP and REST): a summary per tenant, each matching
// its simulator, the poison keys dead in the first tenant's run only, progress per tenant,
// exit 0; the tenants file is gone afterwards.
func TestDemoTwoTenantsOnce(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"demo", "--tenants", "2", "--once", "--keys", "300", "--poison", "2", "--http-addr", "127.0.0.1:0"},
		&stdout, &stderr, envFunc(nil))
	if code != 0 {
		t.Fatalf("demo --tenants 2 exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := regexp.MustCompile(` +`).ReplaceAllString(stdout.String(), " ")
	for _, want := range []string{"Tenant acme\nRun demo-", "Tenant globex\nRun demo-", "keys resynced 298 of 300", "keys resynced 300 of 300",
		"All tenants", "poison splits"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	if n := strings.Count(out, "matches what the simulator saw"); n != 2 {
		t.Errorf("%d summaries match their simulator, want 2:\n%s", n, stdout.String())
	}
	if n, m := strings.Count(out, "\n ACME-"), strings.Count(out, "\n GLOBEX-"); n != 2 || m != 0 {
		t.Errorf("dead letters listed: %d of acme, %d of globex; want 2 and 0:\n%s", n, m, stdout.String())
	}
	errOut := stderr.String()
	for _, want := range []string{"Tenant acme ", "over soap", "Tenant globex ", "over rest", "tenants.yaml",
		"  acme     300/300 keys done (100.0%), 2 dead, finished", "  globex   300/300 keys done (100.0%), 0 dead, finished"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if m := regexp.MustCompile(`Tenants: +(\S+tenants\.yaml)`).FindStringSubmatch(errOut); m == nil {
		t.Errorf("the demo does not say where its tenants file is:\n%s", errOut)
	} else if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the demo's tenants file %s is left behind (%v)", m[1], err)
	}
}

// TestDemoTenantsFlag: --tenants out of range, or with a real tenant, is refused at once.
func TestDemoTenantsFlag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--tenants", "0"}, nil, "--tenants 0: want 1 to 4"},
		{[]string{"--tenants", "9"}, nil, "--tenants 9: want 1 to 4"},
		{[]string{"--tenants", "2", "--real-tenant"}, map[string]string{"SUPEROFFICE_URL": "https://sod.superoffice.com/Cust12345", "SUPEROFFICE_TICKET": "7T:abc"},
			"--tenants serves simulators only"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"demo", "--once", "--http-addr", "127.0.0.1:0"}, c.args...), &stdout, &stderr, envFunc(c.env))
		if code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, want 2 and %q\n%s", c.args, code, c.want, stderr.String())
		}
	}
}
