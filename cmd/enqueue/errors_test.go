package main

import (
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestErrorLinesGolden: a command line enqueue refuses gets one line on stderr that names the
// flag and what it takes ("required" when it is missing), never the flag package's own
// message and the list of every flag. The lines are in testdata/usage-errors.golden.
func TestErrorLinesGolden(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	for _, args := range [][]string{
		{"--actor-type", "Customer", "--file", "keys.txt"},
		{"--erp-connection", "abc", "--actor-type", "Customer", "--file", "keys.txt"},
		{"--erp-connection", "0", "--actor-type", "Customer", "--file", "keys.txt"},
		{"--erp-connection", "3", "--file", "keys.txt"},
		{"--erp-connection", "3", "--actor-type", "Customer"},
		{"--erp-connection", "3", "--actor-type", "Customer", "--file", "keys.txt", "--batch-size", "1001"},
		{"--erp-connection", "3", "--actor-type", "Customer", "--file", "keys.txt", "--batch-size", "ten"},
		{"--erp-connection", "3", "--actor-type", "Customer", "--file", "keys.txt", "--strict=maybe"},
		{"--erp-connection", "3", "--actor-type", "Customer", "--file", "keys.txt", "--no-such-flag"},
		{"--erp-connection", "3", "--actor-type", "Customer", "--file"},
		{"--erp-connection", "3", "--actor-type", "Customer", "--batch-size"},
		{"key", "--actor-type", "Customer", "K1"},
		{"key", "--erp-connection", "-1", "--actor-type", "Customer", "K1"},
		{"status", "run-1", "--interval", "soon"},
		{"runs", "--limit", "many"},
		{"status", "run-1", "--tenant", "Cust 1"},
		{"dead", "list", "--tenant", "-x"},
	} {
		r := enqueue(t, "", args...)
		fmt.Fprintf(&out, "$ enqueue %s\n%sexit %d\n\n", strings.Join(args, " "), r.stderr, r.code)
		if n := strings.Count(r.stderr, "\n"); n != 1 {
			t.Errorf("enqueue %s: %d lines on stderr, want one:\n%s", strings.Join(args, " "), n, r.stderr)
		}
	}
	golden.Check(t, "usage-errors.golden", []byte(out.String()), *update)
}
