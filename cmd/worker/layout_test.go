package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportArrows checks the layout the README draws: the domain packages name no
// transport, auth and the HTTP exchange name neither transport nor domain, and the
// transports name neither each other nor the domain. Only this command's wiring and
// internal/tenant choose a transport, and nothing below them names internal/tenant.
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
		{[]string{"./tasks", "./internal/ledger", "./internal/runreport", "./intake", "./internal/nightly", "./internal/runspage", "./internal/intakeapi", "./cmd/enqueue", "./retry", "./erpsync"}, []string{"soap", "rest", "auth", "internal/httpcall"}},
		// The handler records through an interface it declares: tasks never imports the ledger.
		{[]string{"./tasks"}, []string{"internal/ledger"}},
		{[]string{"./auth", "./internal/httpcall"}, []string{"soap", "rest", "tasks", "internal/ledger"}},
		{[]string{"./soap"}, []string{"rest", "tasks"}},
		{[]string{"./rest"}, []string{"soap", "tasks"}},
		{[]string{"./erpsync", "./internal/netserversim"}, []string{"soap", "rest", "auth", "tasks", "internal/httpcall"}},
		// The tests of every package wait with testwait, e2etest's harness included: a leaf.
		{[]string{"./internal/testwait"}, []string{"erpsync", "tasks", "intake", "internal/ledger", "internal/flow", "internal/redistest", "internal/e2etest", "internal/netserversim"}},
		// The tenant's state sits under both transports and knows neither.
		{[]string{"./internal/tenantstate"}, []string{"soap", "rest", "auth", "tasks", "internal/ledger", "internal/httpcall"}},
		// Flow control asks the tenant's state through a function (flow.Config.Explain): it
		// never names tenantstate, which names it.
		{[]string{"./internal/flow"}, []string{"internal/tenantstate"}},
		// One tenant as a value: it may name the transports, auth and flow control; the
		// domain, the ledger and the intake side never name it (they take a tenant ID).
		{[]string{"./tasks", "./internal/ledger", "./intake", "./internal/intakeapi", "./internal/flow", "./erpsync", "./soap", "./rest", "./auth"}, []string{"internal/tenant"}},
		// The lanes speak only asynq and Redis: the wiring hands them the tenant rules.
		{[]string{"./internal/lanes"}, []string{"erpsync", "tasks", "internal/flow", "internal/ledger", "soap", "rest", "auth", "internal/httpcall"}},
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

// maxFuncLines is the length past which a function must say why it is not split.
const maxFuncLines = 80

// TestLongFunctionsSayWhy: a function of our own code (tests aside) longer than
// maxFuncLines says in its doc comment why it is kept whole; every other is split into
// named steps.
func TestLongFunctionsSayWhy(t *testing.T) {
	t.Parallel()
	root := filepath.Dir(readmePath)
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
			if n > maxFuncLines && !strings.Contains(fd.Doc.Text(), "kept whole") {
				t.Errorf("%s: %s is %d lines: split it into named steps, or say in its doc comment why it is kept whole",
					fset.Position(fd.Pos()), fd.Name.Name, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
