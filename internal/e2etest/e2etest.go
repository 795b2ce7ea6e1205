// Package e2etest is the harness of the tests that run erpresync as its users do: the
// project's own binaries built once per test process, the SuperOffice simulator, worker
// processes with an environment of the test's choosing, runs submitted through intake (as
// `enqueue` does), and waits on conditions with a deadline. Everything it starts is stopped
// by the test's cleanup; Redis comes from internal/redistest.
//
// Use it from TestMain, so that the built binaries are removed when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(e2etest.Main(m)) }
//
// and in a test:
//
//	sim := e2etest.StartSim(t)
//	w := e2etest.StartWorker(t, e2etest.WorkerEnv(db.URL(), sim))
//	e2etest.Submit(t, rdb, "run-1", erpsync.ActorCustomer, e2etest.Keys("K", 300), 50)
//	e2etest.WaitRunFinished(t, rdb, "run-1", time.Minute)
//
// The package is imported by tests only.
package e2etest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/netserversim"
	"github.com/erpresync/erpresync/tasks"
)

// module is the import path of this module; Binary builds the packages under it.
const module = "github.com/erpresync/erpresync"

// The simulator's one on-site user, and the ERP connection runs are submitted for.
const (
	User          = "ERPSYNC"
	Password      = "correct horse"
	ErpConnection = 3
)

// Poll is how often WaitFor looks at its condition.
const Poll = 20 * time.Millisecond

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

// StartRedis starts a private redis-server with o for one test and stops it at the test's
// cleanup. A test of processes needs the real server: without redis-server on PATH the
// test is skipped, or fails where redistest.RequireEnv is set.
func StartRedis(t testing.TB, o redistest.Options) *redistest.Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(redistest.RequireEnv) != "" {
			t.Fatalf("%s is set but redis-server is not on PATH", redistest.RequireEnv)
		}
		t.Skip("this test needs redis-server on PATH")
	}
	srv, err := redistest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// StartSim starts the SuperOffice simulator in this process, with User as its one on-site
// user, and closes it at the test's cleanup. Its counters are what a test checks the
// workers against.
func StartSim(t testing.TB) *netserversim.Running {
	t.Helper()
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{User: Password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// WorkerEnv is the environment of a worker process on the Redis at redisURL against sim:
// JSON logs on stderr, no HTTP server, four handlers, two business retries a second apart.
// Tests change or add entries before StartWorker.
func WorkerEnv(redisURL string, sim *netserversim.Running) map[string]string {
	return map[string]string{
		"REDIS_URL":                   redisURL,
		"SUPEROFFICE_URL":             sim.URL,
		"SUPEROFFICE_USERNAME":        User,
		"SUPEROFFICE_PASSWORD":        Password,
		"WORKER_HTTP_ADDR":            "off",
		"WORKER_CONCURRENCY":          "4",
		"WORKER_BUSINESS_RETRIES":     "2",
		"WORKER_BUSINESS_RETRY_DELAY": "1s",
		"WORKER_SHUTDOWN_TIMEOUT":     "20s",
		"LOG_FORMAT":                  "json",
		"LOG_LEVEL":                   "info",
	}
}

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

// Keys returns n distinct keys: prefix and a six-digit number from 000000.
func Keys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%06d", prefix, i)
	}
	return keys
}

// WaitFor polls cond every Poll until it holds, and fails the test if it does not within
// timeout. A non-nil error from cond says why it does not hold yet (a status, or Redis
// being down); WaitFor keeps polling and reports the last one with what.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
		}
		time.Sleep(Poll)
	}
}

// Submit enqueues keys as run through intake, as `enqueue` does: batches of batch keys for
// ErpConnection, with opts on every task. It fails the test unless every key was taken.
func Submit(t testing.TB, rdb redis.UniversalClient, run string, actor erpsync.ActorType, keys []string, batch int, opts ...asynq.Option) {
	t.Helper()
	p, err := intake.NewProducer(intake.ProducerConfig{Redis: rdb, TaskOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := p.Submit(context.Background(), intake.RunSpec{Run: run, ErpConnectionID: ErpConnection, ActorType: actor, BatchSize: batch},
		intake.Source{Name: run, R: strings.NewReader(strings.Join(keys, "\n") + "\n")})
	if err != nil {
		t.Fatalf("submit %s: %v", run, err)
	}
	if sum.Valid != int64(len(keys)) {
		t.Fatalf("submitted %d of %d keys: %+v", sum.Valid, len(keys), sum)
	}
}

// RunStatus reads run from the ledger, giving up after two seconds (Redis may be down).
func RunStatus(rdb redis.UniversalClient, run string) (tasks.RunStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return tasks.NewLedger(rdb).Status(ctx, run)
}

// RunFinished is a WaitFor condition: run has keys and none of them pending.
func RunFinished(rdb redis.UniversalClient, run string) func() (bool, error) {
	return func() (bool, error) {
		_, done, err := runFinished(rdb, run)
		return done, err
	}
}

func runFinished(rdb redis.UniversalClient, run string) (tasks.RunStatus, bool, error) {
	st, err := RunStatus(rdb, run)
	if err != nil {
		return st, false, err
	}
	return st, st.TotalKeys > 0 && st.PendingKeys == 0, fmt.Errorf("run %s: %+v", run, st)
}

// WaitRunFinished waits up to timeout until run has nothing pending and returns its status.
func WaitRunFinished(t testing.TB, rdb redis.UniversalClient, run string, timeout time.Duration) tasks.RunStatus {
	t.Helper()
	var st tasks.RunStatus
	WaitFor(t, "run "+run+" finished", timeout, func() (bool, error) {
		var done bool
		var err error
		st, done, err = runFinished(rdb, run)
		return done, err
	})
	return st
}

// ExpectedRecords is what the ledger's records must be once keys of actor were each
// resynced exactly once at the simulator: counts of changes by kind and table.
func ExpectedRecords(actor erpsync.ActorType, keys []string) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for _, c := range netserversim.ExpectedChanges(netserversim.ActorType(actor), keys) {
		kind := string(c.Kind)
		if out[kind] == nil {
			out[kind] = map[string]int64{}
		}
		out[kind][c.Table]++
	}
	return out
}
