package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/readmetest"
	"github.com/erpresync/erpresync/internal/redistest"
)

// repoRoot is where the README's commands run.
const repoRoot = "../.."

// readmeCommand is one enqueue command of the README's sh blocks: its arguments (comments,
// `| jq …` filters and `> file` redirections removed), and the shell command whose output it
// reads when the line is `producer | bin/enqueue …`.
type readmeCommand struct {
	line, producer string
	args           []string
}

func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	blocks, err := readmetest.Blocks(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []readmeCommand
	for _, b := range blocks {
		if b.NotRun != "" {
			t.Logf("README block not run (%s):\n%s", b.NotRun, b.Text)
			continue
		}
		for _, line := range b.Lines() {
			c := readmeCommand{line: line}
			if before, after, ok := strings.Cut(line, "| bin/enqueue "); ok {
				c.producer = strings.TrimSpace(before)
				line = "bin/enqueue " + after
			}
			if !strings.HasPrefix(line, "bin/enqueue ") {
				continue
			}
			line, _, _ = strings.Cut(line, " | ")
			line, _, _ = strings.Cut(line, " > ")
			c.args = strings.Fields(strings.TrimPrefix(line, "bin/enqueue "))
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// produce runs a README producer command in the repository root, as the README's reader
// does, and returns its output; it must exist and succeed (a placeholder for a command
// nobody has would fail here).
func produce(t *testing.T, command string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("README producer %q: %v\n%s", command, err, stderr.String())
	}
	return string(out)
}

// TestREADMECommands runs every enqueue command the README shows, in order, as shown: with
// the sample files of examples/ and the producer commands piped in, against a private Redis
// and a worker, so that the README cannot rot: none may be a usage error, and every
// submission must succeed.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	startWorker(t, db, "erpresync")
	cmds := readmeCommands(t)
	if len(cmds) < 10 {
		t.Fatalf("found only %d enqueue commands in the README", len(cmds))
	}
	seen := map[string]bool{}
	producers := 0
	for i, c := range cmds {
		args := append([]string(nil), c.args...)
		for j, a := range args {
			if strings.HasPrefix(a, "examples/") {
				args[j] = filepath.Join(repoRoot, a)
				if _, err := os.Stat(args[j]); err != nil {
					t.Errorf("README command %d (%s) names %s: %v", i+1, c.line, a, err)
				}
			}
		}
		stdin := ""
		if c.producer != "" {
			producers++
			if stdin = produce(t, c.producer); stdin == "" {
				t.Errorf("README producer %q printed no keys", c.producer)
			}
		}
		args = append(args, "--redis-url", db.URL())
		seen[c.args[0]] = true
		r := enqueueWithDeadline(t, stdin, args...)
		if r.code == exitUsage {
			t.Errorf("README command %d (%s) failed with a usage/config error:\n%s", i+1, c.line, r.stderr)
		}
		if c.args[0] == "dead" && strings.Contains(c.line, "--key "+trialPoison) && !strings.Contains(r.stdout, trialPoison) {
			t.Errorf("README command %d (%s) does not find the dead key:\n%s%s", i+1, c.line, r.stdout, r.stderr)
		}
		if strings.HasPrefix(c.args[0], "--") && r.code != exitOK {
			t.Errorf("README submit %d (%s) exit %d:\n%s", i+1, c.line, r.code, r.stderr)
		}
	}
	for _, sub := range []string{"key", "status", "runs", "rejected", "dead", "changes", "tenants"} {
		if !seen[sub] {
			t.Errorf("the README shows no `enqueue %s` command", sub)
		}
	}
	if producers == 0 {
		t.Error("the README shows no `producer | bin/enqueue` command")
	}
}

// TestExampleExportFailing: the stand-in export, failing, hands enqueue no keys; enqueue
// says so and exits 1 instead of reporting a run that does nothing.
func TestExampleExportFailing(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sh", "-c", "examples/erp-export --fail")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err == nil || len(out) != 0 {
		t.Fatalf("examples/erp-export --fail: %v, %q; want a failure without output", err, out)
	}
	r := enqueue(t, string(out), "--erp-connection", "3", "--actor-type", "Sale", "--file", "-", "--dry-run")
	if r.code != exitBad || !strings.Contains(r.stderr, "no keys were read: stdin is empty") {
		t.Errorf("exit %d, want 1\n%s", r.code, r.stderr)
	}
}

// enqueueWithDeadline is enqueue for commands that wait (status --wait): it fails the test
// instead of hanging.
func enqueueWithDeadline(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	done := make(chan result, 1)
	go func() { done <- enqueue(t, stdin, args...) }()
	select {
	case r := <-done:
		return r
	case <-time.After(time.Minute):
		t.Fatalf("enqueue %v did not return within a minute", args)
		return result{}
	}
}
