package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportArrows checks the layout the README draws: the domain packages name no
// transport, auth and the HTTP exchange name neither transport nor domain, and the
// transports name neither each other nor the domain. Only this command's wiring chooses a
// transport.
func TestImportArrows(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go binary on PATH")
	}
	const mod = "github.com/erpresync/erpresync/"
	tests := []struct {
		pkgs      []string
		forbidden []string
	}{
		{[]string{"./tasks", "./internal/ledger", "./intake", "./nightly", "./runspage", "./intakeapi", "./cmd/enqueue", "./retry", "./erpsync"}, []string{"soap", "rest", "auth", "internal/httpcall"}},
		// The handler records through an interface it declares: tasks never imports the ledger.
		{[]string{"./tasks"}, []string{"internal/ledger"}},
		{[]string{"./auth", "./internal/httpcall"}, []string{"soap", "rest", "tasks", "internal/ledger"}},
		{[]string{"./soap"}, []string{"rest", "tasks"}},
		{[]string{"./rest"}, []string{"soap", "tasks"}},
		{[]string{"./erpsync", "./netserversim"}, []string{"soap", "rest", "auth", "tasks", "internal/httpcall"}},
	}
	root := filepath.Dir(readmePath)
	for _, tt := range tests {
		cmd := exec.Command(goBin, append([]string{"list", "-deps"}, tt.pkgs...)...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", tt.pkgs, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range tt.forbidden {
				if dep == mod+f {
					t.Errorf("%v depend on %s", tt.pkgs, f)
				}
			}
		}
	}
}
