package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDemoOnce runs the README's first command as a newcomer would (with --once, and a free
// port in case 8080 is taken): it must finish and its summary must match the simulator.
// It runs over both transports (`worker demo --api rest`).
func TestDemoOnce(t *testing.T) {
	t.Parallel()
	for _, api := range apis {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			testDemoOnce(t, api)
		})
	}
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
	for _, want := range []string{"keys resynced                         797 of 800", "matches what the simulator saw", "dead letter: business failure ERP_REJECTED", "contact"} {
		if !strings.Contains(regexp.MustCompile(` +`).ReplaceAllString(out, " "), regexp.MustCompile(` +`).ReplaceAllString(want, " ")) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n    CUST-"); n != 3 {
		t.Errorf("%d dead letters listed, want 3:\n%s", n, out)
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
