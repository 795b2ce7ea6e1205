//go:build unix

package intake

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

// TestPathToAPipe: a path that is not a regular file (a FIFO; `--file <(erp-export)` in a
// shell) cannot be read twice or at an offset, so it is spooled like a reader.
func TestPathToAPipe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "keys.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	go func() {
		// Opening a FIFO for writing blocks until the reader opens it.
		if err := os.WriteFile(fifo, []byte("P1\nP2\nP1\n"), 0o600); err != nil {
			t.Error(err)
		}
	}()
	spool := t.TempDir()
	sum, batches, err := dryRun(t, Source{Path: fifo, Name: "fifo"}, RunSpec{}, ProducerConfig{TempDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	if got := flat(batches); !reflect.DeepEqual(got, []string{"P1", "P2"}) || sum.Duplicates != 1 {
		t.Errorf("keys = %q, summary %+v", got, sum)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("spool file left behind: %v", left)
	}
}
