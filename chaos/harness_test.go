package chaos

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/testwait"
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

func TestMain(m *testing.M) { os.Exit(e2etest.Main(m)) }

// workers starts, kills and replaces worker processes. Safe for concurrent use.
type workers struct {
	t   *testing.T
	env map[string]string

	mu      sync.Mutex
	running []*e2etest.Process
	started int
	killed  int
}

// newWorkers prepares worker processes on redisURL against sim, with extra on top of the
// harness's environment.
func newWorkers(t *testing.T, redisURL string, sim *netserversim.Running, extra map[string]string) *workers {
	env := e2etest.WorkerEnv(redisURL, sim)
	env["WORKER_SHUTDOWN_TIMEOUT"] = "10s"
	maps.Copy(env, extra)
	return &workers{t: t, env: env}
}

// start adds one worker process.
func (w *workers) start() {
	w.t.Helper()
	p := e2etest.StartWorker(w.t, w.env)
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
	p.Kill()
}

// progressed waits until at least frac of the run's keys are resynced (or dead).
func progressed(t *testing.T, rdb redis.UniversalClient, run string, frac float64, timeout time.Duration) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("run %s at %.0f%%", run, frac*100), timeout, func() (bool, error) {
		st, err := e2etest.RunStatus(rdb, run)
		if err != nil {
			return false, err
		}
		done := st.ResyncedKeys + st.DeadKeys
		return st.TotalKeys > 0 && float64(done) >= frac*float64(st.TotalKeys) && st.PendingKeys > 0, fmt.Errorf("%+v", st)
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
	want := e2etest.ExpectedRecords(actor, resynced)
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
