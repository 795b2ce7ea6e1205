package e2etest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

// module is the import path of this module; Binary builds the packages under it.
const module = "github.com/erpresync/erpresync"

// built holds one binary's build: done once per test process.
type built struct {
	once sync.Once
	path string
	err  error
}

var (
	binMu    sync.Mutex
	binDir   string
	binaries = map[string]*built{}
)

// Main runs the tests and then removes the binaries Binary built for them. It returns the
// exit code for os.Exit. A TestMain that has its own (redistest.Main, say) calls
// RemoveBinaries after it instead.
func Main(m *testing.M) int {
	code := m.Run()
	RemoveBinaries()
	return code
}

// RemoveBinaries removes the binaries Binary built; a later Binary builds them again.
func RemoveBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	binDir, binaries = "", map[string]*built{}
}

// Binary returns the path of the command in pkg, a package path from the module's root
// ("cmd/worker", "cmd/enqueue", "cmd/netserver-sim", "bench/naive"), built the first time
// it is asked for in this test process. The executable is named after pkg's last element.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	if binDir == "" {
		dir, err := os.MkdirTemp("", "erpresync-e2etest-")
		if err != nil {
			binMu.Unlock()
			t.Fatal(err)
		}
		binDir = dir
	}
	b := binaries[pkg]
	if b == nil {
		b = &built{path: filepath.Join(binDir, path.Base(pkg))}
		binaries[pkg] = b
	}
	binMu.Unlock()
	b.once.Do(func() {
		out, err := exec.Command("go", "build", "-o", b.path, module+"/"+pkg).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
