package e2etest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process started by Start; its stderr goes to Log.
type Process struct {
	Cmd    *exec.Cmd
	Log    *LockedBuffer
	exited chan struct{}
}

// StartWorker starts the worker binary (cmd/worker) with env; see Start.
func StartWorker(t testing.TB, env map[string]string) *Process {
	t.Helper()
	return Start(t, Binary(t, "cmd/worker"), env)
}

// Start starts bin with env on top of a minimal environment (PATH, and HOME in the
// temporary directory). The test's cleanup kills it if it still runs and, if the test
// failed, logs the tail of its stderr.
func Start(t testing.TB, bin string, env map[string]string) *Process {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Process{Cmd: cmd, Log: &LockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.Log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s stderr (tail):\n%s", filepath.Base(bin), tail(p.Log.String(), 16<<10))
		}
	})
	return p
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Exited is closed once the process has exited and Cmd.ProcessState is set.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Signal sends sig to the process, unless it has exited.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
}

// Kill kills the process with SIGKILL, unless it has exited, and waits for its end.
func (p *Process) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Wait waits up to timeout for the process to exit and returns its exit code.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", filepath.Base(p.Cmd.Path), timeout)
		return -1
	}
}

// LockedBuffer is a bytes.Buffer safe for concurrent use: a process's or a logger's
// output, written by one goroutine while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
