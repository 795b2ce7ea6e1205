package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
)

// readmeCommands returns the enqueue command lines of the README's sh blocks, with comments,
// `| jq …` filters and `> file` redirections removed; stdin is set for `cmd | bin/enqueue`.
func readmeCommands(t *testing.T) (cmds [][]string, stdins []string) {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	for _, b := range blocks {
		for _, line := range strings.Split(b[1], "\n") {
			line = strings.TrimSpace(regexp.MustCompile(`\s+#.*$`).ReplaceAllString(line, ""))
			stdin := ""
			if before, after, ok := strings.Cut(line, "| bin/enqueue "); ok {
				stdin = "S-1\nS-2\n" // what `erp-export` would print
				_ = before
				line = "bin/enqueue " + after
			}
			if !strings.HasPrefix(line, "bin/enqueue ") {
				continue
			}
			line, _, _ = strings.Cut(line, " | ")
			line, _, _ = strings.Cut(line, " > ")
			cmds = append(cmds, strings.Fields(strings.TrimPrefix(line, "bin/enqueue ")))
			stdins = append(stdins, stdin)
		}
	}
	return cmds, stdins
}

// TestREADMECommands runs every enqueue command the README shows, in order, against a
// private Redis and a worker, so that the README cannot rot: none may be a usage error.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	dir := t.TempDir()
	files := map[string]string{
		"customers.txt": "10001\n10002\nBAD-7\n10003\n",
		"persons.csv":   "name,erp_key\nAda,P-1\nBob,P-2\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startWorker(t, db, "erpresync")
	cmds, stdins := readmeCommands(t)
	if len(cmds) < 10 {
		t.Fatalf("found only %d enqueue commands in the README", len(cmds))
	}
	seen := map[string]bool{}
	for i, args := range cmds {
		for j, a := range args {
			if _, ok := files[a]; ok {
				args[j] = filepath.Join(dir, a)
			}
		}
		args = append(args, "--redis-url", db.URL())
		name := strings.Join(cmds[i][:min(2, len(cmds[i]))], " ")
		seen[cmds[i][0]] = true
		r := enqueueWithDeadline(t, stdins[i], args...)
		if r.code == exitUsage {
			t.Errorf("README command %d (%s…) failed with a usage/config error:\n%s", i+1, name, r.stderr)
		}
		if strings.HasPrefix(cmds[i][0], "--") && r.code != exitOK {
			t.Errorf("README submit %d exit %d:\n%s", i+1, r.code, r.stderr)
		}
	}
	for _, sub := range []string{"key", "status", "runs", "dead", "changes"} {
		if !seen[sub] {
			t.Errorf("the README shows no `enqueue %s` command", sub)
		}
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
