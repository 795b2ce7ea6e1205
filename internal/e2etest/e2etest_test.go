package e2etest

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestBinaryBuiltOnce: a second Binary for the same package returns the first build.
func TestBinaryBuiltOnce(t *testing.T) {
	first := Binary(t, "cmd/worker")
	info, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if again := Binary(t, "cmd/worker"); again != first {
		t.Fatalf("second build at %s, first at %s", again, first)
	}
	if info2, err := os.Stat(first); err != nil || !info2.ModTime().Equal(info.ModTime()) {
		t.Fatalf("the binary was built again: %v", err)
	}
}

// TestStartWorkerCapturesStderr: a worker without settings exits non-zero and its stderr,
// read from Log, says its configuration is wrong.
func TestStartWorkerCapturesStderr(t *testing.T) {
	w := StartWorker(t, map[string]string{"LOG_FORMAT": "json"})
	if code := w.Wait(t, time.Minute); code == 0 {
		t.Fatalf("exit code 0 without settings; stderr:\n%s", w.Log)
	}
	if !strings.Contains(w.Log.String(), "configuration") {
		t.Fatalf("stderr does not speak of the configuration:\n%s", w.Log)
	}
}

// TestKeysDistinct: Keys gives n distinct keys of a fixed width.
func TestKeysDistinct(t *testing.T) {
	keys := Keys("K", 1000)
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] || len(k) != 7 {
			t.Fatalf("key %q repeated or not seven characters", k)
		}
		seen[k] = true
	}
	if keys[42] != "K000042" {
		t.Fatalf("keys[42] = %q", keys[42])
	}
}
