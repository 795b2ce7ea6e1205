package chaos

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/netserversim"
)

// full is true under `make chaos` (ERPRESYNC_CHAOS=full): longer runs, more kills.
var full = os.Getenv("ERPRESYNC_CHAOS") == "full"

// size picks the short (CI) or the full figure.
func size(short, long int) int {
	if full {
		return long
	}
	return short
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// workerBinary builds cmd/worker once for the package's tests.
func workerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "erpresync-chaos-")
		if binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir, "../cmd/worker").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ../cmd/worker: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "worker")
}

// startRedis starts a private redis-server with AOF (appendfsync always). Chaos needs the
// real server: there is no miniredis fallback.
func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(redistest.RequireEnv) != "" {
			t.Fatalf("%s is set but redis-server is not on PATH", redistest.RequireEnv)
		}
		t.Skip("the chaos suite needs redis-server on PATH")
	}
	srv, err := redistest.Start(redistest.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

const (
	simUser     = "ERPSYNC"
	simPassword = "chaos password 7f3a"
	conn        = 3
)

// startSim starts the simulator in this process: its counters are the audit's ground truth.
func startSim(t *testing.T) *netserversim.Running {
	t.Helper()
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{simUser: simPassword}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// workers starts, kills and replaces worker processes. Safe for concurrent use.
type workers struct {
	t   *testing.T
	env map[string]string

	mu      sync.Mutex
	running []*proc
	started int
	killed  int
}

type proc struct {
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newWorkers(t *testing.T, redisURL string, sim *netserversim.Running, extra map[string]string) *workers {
	env := map[string]string{
		"REDIS_URL":                   redisURL,
		"SUPEROFFICE_URL":             sim.URL,
		"SUPEROFFICE_USERNAME":        simUser,
		"SUPEROFFICE_PASSWORD":        simPassword,
		"WORKER_HTTP_ADDR":            "off",
		"WORKER_CONCURRENCY":          "4",
		"WORKER_BUSINESS_RETRIES":     "2",
		"WORKER_BUSINESS_RETRY_DELAY": "1s",
		"WORKER_SHUTDOWN_TIMEOUT":     "10s",
		"LOG_FORMAT":                  "json",
		"LOG_LEVEL":                   "info",
	}
	maps.Copy(env, extra)
	w := &workers{t: t, env: env}
	t.Cleanup(w.stopAll)
	return w
}

// start adds one worker process.
func (w *workers) start() {
	w.t.Helper()
	cmd := exec.Command(workerBinary(w.t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for k, v := range w.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	w.mu.Lock()
	w.running = append(w.running, p)
	w.started++
	w.mu.Unlock()
}

// killOne sends SIGKILL to the i-th running worker (modulo their number) and waits for it.
func (w *workers) killOne(i int) {
	w.mu.Lock()
	if len(w.running) == 0 {
		w.mu.Unlock()
		return
	}
	i %= len(w.running)
	p := w.running[i]
	w.running = slices.Delete(w.running, i, i+1)
	w.killed++
	w.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (w *workers) stopAll() {
	w.mu.Lock()
	ps := w.running
	w.running = nil
	w.mu.Unlock()
	for _, p := range ps {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if w.t.Failed() {
			log := p.log.String()
			if len(log) > 4000 {
				log = "…" + log[len(log)-4000:]
			}
			w.t.Logf("worker log (tail):\n%s", log)
		}
	}
}

// testKeys returns n distinct keys with a prefix.
func testKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%07d", prefix, i)
	}
	return keys
}

// submit enqueues keys as a run through intake, as `enqueue` does.
func submit(t *testing.T, rdb redis.UniversalClient, run string, actor erpsync.ActorType, keys []string, batch int, opts ...asynq.Option) {
	t.Helper()
	p, err := intake.NewProducer(intake.ProducerConfig{Redis: rdb, TaskOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := p.Submit(context.Background(), intake.RunSpec{Run: run, ErpConnectionID: conn, ActorType: actor, BatchSize: batch},
		intake.Source{Name: run, R: strings.NewReader(strings.Join(keys, "\n") + "\n")})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Valid != int64(len(keys)) {
		t.Fatalf("submitted %d of %d keys: %+v", sum.Valid, len(keys), sum)
	}
}

// status reads the run's status; while Redis is down it reports the error instead.
func status(rdb redis.UniversalClient, run string) (ledger.RunStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return ledger.NewLedger(rdb).Status(ctx, run)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %s", what, timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// progressed waits until at least frac of the run's keys are resynced (or dead).
func progressed(t *testing.T, rdb redis.UniversalClient, run string, frac float64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("run %s at %.0f%%", run, frac*100), func() (bool, string) {
		st, err := status(rdb, run)
		if err != nil {
			return false, err.Error()
		}
		done := st.ResyncedKeys + st.DeadKeys
		return st.TotalKeys > 0 && float64(done) >= frac*float64(st.TotalKeys) && st.PendingKeys > 0, fmt.Sprintf("%+v", st)
	})
}

// finished waits until nothing of the run is pending.
func finished(t *testing.T, rdb redis.UniversalClient, run string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "run "+run+" finished", func() (bool, string) {
		st, err := status(rdb, run)
		if err != nil {
			return false, err.Error()
		}
		return st.TotalKeys > 0 && st.PendingKeys == 0, fmt.Sprintf("%+v", st)
	})
}

// audit checks a finished run exactly: the ledger's totals, every key resynced at
// SuperOffice or dead-lettered for a reason naming why, exactly the keys in wantDead dead,
// and the ledger's records equal to one delivered change per resynced key. It reports how
// many keys SuperOffice saw more than once (a crash between the call and its record repeats
// a call; the ledger still counts the key once).
func audit(t *testing.T, rdb redis.UniversalClient, sim *netserversim.Running, run string, actor erpsync.ActorType, keys []string, wantDead map[string]string) {
	t.Helper()
	ctx := context.Background()
	lg := ledger.NewLedger(rdb)
	st, err := lg.Status(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(keys))
	dead := int64(len(wantDead))
	if st.TotalKeys != n || st.ResyncedKeys != n-dead || st.DeadKeys != dead || st.PendingKeys != 0 {
		t.Errorf("ledger totals %+v; want %d keys: %d resynced, %d dead", st, n, n-dead, dead)
	}
	dls, err := lg.DeadLetters(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	gotDead := map[string]bool{}
	for _, d := range dls {
		gotDead[d.Key] = true
		want, ok := wantDead[d.Key]
		switch {
		case !ok:
			t.Errorf("key %s dead-lettered but should have been resynced: %s (%s)", d.Key, d.Reason, d.Class)
		case d.Reason == "" || !strings.Contains(d.Reason+" "+d.ErrorCode, want):
			t.Errorf("key %s dead for %q (code %q), want a reason naming %q", d.Key, d.Reason, d.ErrorCode, want)
		}
	}
	for k := range wantDead {
		if !gotDead[k] {
			t.Errorf("key %s should be dead-lettered, but is not", k)
		}
	}
	var resynced []string
	repeated, most := 0, 0
	for _, k := range keys {
		c := sim.ResyncCount(k)
		if _, isDead := wantDead[k]; isDead {
			if c != 0 {
				t.Errorf("dead key %s was resynced %d times", k, c)
			}
			continue
		}
		if c == 0 {
			t.Errorf("key %s was never resynced at SuperOffice", k)
			continue
		}
		if c > 1 {
			repeated++
			most = max(most, c)
		}
		resynced = append(resynced, k)
	}
	want := map[string]map[string]int64{}
	for _, c := range netserversim.ExpectedChanges(netserversim.ActorType(actor), resynced) {
		if want[string(c.Kind)] == nil {
			want[string(c.Kind)] = map[string]int64{}
		}
		want[string(c.Kind)][c.Table]++
	}
	if !sameRecords(st.Records, want) {
		t.Errorf("ledger records %v, want one change per resynced key: %v", st.Records, want)
	}
	t.Logf("audit %s: %d keys, %d resynced, %d dead; %d keys sent more than once (at most %d times); %d calls",
		run, n, st.ResyncedKeys, st.DeadKeys, repeated, most, sim.Counts().TotalCalls())
}

func sameRecords(got, want map[string]map[string]int64) bool {
	for kind, tables := range want {
		for table, n := range tables {
			if got[kind][table] != n {
				return false
			}
		}
	}
	for kind, tables := range got {
		for table, n := range tables {
			if n != 0 && want[kind][table] != n {
				return false
			}
		}
	}
	return true
}
