package testwait

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestForPolls: For returns once the condition holds.
func TestForPolls(t *testing.T) {
	t.Parallel()
	n := 0
	For(t, "three polls", time.Minute, func() (bool, error) {
		n++
		return n == 3, errors.New("not yet")
	})
	if n != 3 {
		t.Fatalf("%d polls, want 3", n)
	}
}

// TestUntilPolls: Until returns once the condition holds.
func TestUntilPolls(t *testing.T) {
	t.Parallel()
	n := 0
	Until(t, "two polls", time.Minute, func() bool { n++; return n == 2 })
	if n != 2 {
		t.Fatalf("%d polls, want 2", n)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the goroutine,
// as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestForFailsAtTheDeadline: a condition that never holds fails the test once the timeout
// has passed, naming what was awaited and the last reason it gave.
func TestForFailsAtTheDeadline(t *testing.T) {
	t.Parallel()
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		For(r, "the run finished", 30*time.Millisecond, func() (bool, error) { return false, errors.New("3 keys pending") })
	}()
	<-done
	if want := "the run finished: not reached within 30ms: 3 keys pending"; r.msg != want {
		t.Fatalf("Fatalf(%q), want %q", r.msg, want)
	}
}
