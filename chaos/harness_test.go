package chaos

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
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
	all     []*e2etest.Process // every process started, killed ones too: their logs
	started int
	killed  int
}

// newWorkers prepares worker processes on redisURL against sim, with extra on top of the
// harness's environment.
func newWorkers(t *testing.T, redisURL string, sim *netserversim.Running, extra map[string]string) *workers {
	return workersWith(t, e2etest.WorkerEnv(redisURL, sim), extra)
}

// newTenantWorkers prepares worker processes on redisURL serving tt's tenants file (and no
// implicit tenant), with extra on top of the harness's environment.
func newTenantWorkers(t *testing.T, redisURL string, tt *e2etest.TwoTenants, extra map[string]string) *workers {
	return workersWith(t, tt.WorkerEnv(redisURL), extra)
}

func workersWith(t *testing.T, env, extra map[string]string) *workers {
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
	w.all = append(w.all, p)
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

// logs are the logs of every worker process started, killed ones too.
func (w *workers) logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, p := range w.all {
		b.WriteString(p.Log.String())
	}
	return b.String()
}

// job is one tenant's run in a scenario: what was submitted and what its audit expects.
type job struct {
	tenant string                // "" the implicit tenant
	sim    *netserversim.Running // the tenant's SuperOffice
	run    string
	actor  erpsync.ActorType
	keys   []string
	dead   map[string]string // key → what its dead letter's reason must name
}

// tenantJob is tn's run of keys.
func tenantJob(tn *e2etest.Tenant, run string, actor erpsync.ActorType, keys []string) *job {
	return &job{tenant: tn.ID, sim: tn.Sim, run: run, actor: actor, keys: keys}
}

// submit enqueues the job's keys in batches of batch, through intake, with opts on every task.
func (j *job) submit(t *testing.T, rdb redis.UniversalClient, batch int, opts ...asynq.Option) {
	t.Helper()
	e2etest.SubmitTenant(t, rdb, j.tenant, j.run, j.actor, j.keys, batch, opts...)
}

// status is the job's run in its tenant's ledger.
func (j *job) status(rdb redis.UniversalClient) (ledger.RunStatus, error) {
	return e2etest.TenantRunStatus(rdb, j.tenant, j.run)
}

func (j *job) String() string { return fmt.Sprintf("%q's run %s", j.tenant, j.run) }

// progressed waits until at least frac of the jobs' keys together are resynced (or dead),
// with some still pending.
func progressed(t *testing.T, rdb redis.UniversalClient, frac float64, timeout time.Duration, jobs ...*job) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%v at %.0f%%", jobs, frac*100), timeout, func() (bool, error) {
		var total, done, pending int64
		for _, j := range jobs {
			st, err := j.status(rdb)
			if err != nil {
				return false, err
			}
			total, done, pending = total+st.TotalKeys, done+st.ResyncedKeys+st.DeadKeys, pending+st.PendingKeys
		}
		return total > 0 && float64(done) >= frac*float64(total) && pending > 0, fmt.Errorf("%d of %d done, %d pending", done, total, pending)
	})
}

// finished waits until every job's run has nothing pending.
func finished(t *testing.T, rdb redis.UniversalClient, timeout time.Duration, jobs ...*job) {
	t.Helper()
	for _, j := range jobs {
		testwait.For(t, j.String()+" finished", timeout, func() (bool, error) {
			st, err := j.status(rdb)
			return err == nil && st.TotalKeys > 0 && st.PendingKeys == 0, fmt.Errorf("%+v, %v", st, err)
		})
	}
}

// auditAll audits every job (audit) and checks that no key reached another job's
// SuperOffice when the jobs are of different tenants on different hosts.
func auditAll(t *testing.T, rdb redis.UniversalClient, jobs ...*job) {
	t.Helper()
	for _, j := range jobs {
		audit(t, rdb, j)
	}
	for _, j := range jobs {
		for _, o := range jobs {
			if o.sim == j.sim {
				continue
			}
			crossed := 0
			for _, k := range j.keys {
				if o.sim.Seen(k) > 0 {
					crossed++
				}
			}
			if crossed > 0 {
				t.Errorf("%d keys of %v reached the SuperOffice of %v", crossed, j, o)
			}
		}
	}
}

// audit checks a finished run exactly, in its tenant's ledger: the ledger's totals, every
// key resynced at the tenant's SuperOffice or dead-lettered for a reason naming why, exactly
// the keys in j.dead dead, and the ledger's records equal to one delivered change per
// resynced key. It reports how many keys SuperOffice saw more than once (a crash between the
// call and its record repeats a call; the ledger still counts the key once).
func audit(t *testing.T, rdb redis.UniversalClient, j *job) {
	t.Helper()
	ctx := context.Background()
	sim, run, actor, keys, wantDead := j.sim, j.run, j.actor, j.keys, j.dead
	lg := ledger.NewLedger(rdb).Tenant(j.tenant)
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
	t.Logf("audit %v: %d keys, %d resynced, %d dead; %d keys sent more than once (at most %d times); %d calls",
		j, n, st.ResyncedKeys, st.DeadKeys, repeated, most, sim.Counts().TotalCalls())
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

// secretsAbsent checks that no secret of tt's tenants is in the workers' logs (killed ones
// too), in any key or value of Redis, or in the output of `enqueue status --tenant` and
// `enqueue dead list --tenant` for each job; and that each tenant's dead-letter listing
// holds its own dead keys and no other tenant's. redisEnv is how enqueue reaches Redis
// (REDIS_URL=..., or REDIS_CLUSTER_ADDRS=...).
func secretsAbsent(t *testing.T, rdb redis.UniversalClient, redisEnv []string, tt *e2etest.TwoTenants, logs string, jobs ...*job) {
	t.Helper()
	secrets := tt.Secrets()
	evidence := map[string]string{"the workers' logs": logs}
	for k, v := range e2etest.RedisValues(t, rdb) {
		evidence["Redis key "+k] = k + " " + v
	}
	enqueue := e2etest.Binary(t, "cmd/enqueue")
	// cli runs enqueue with args and wants exit code want (1: a run with dead letters).
	cli := func(want int, args ...string) string {
		cmd := exec.Command(enqueue, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, redisEnv...)
		out, err := cmd.CombinedOutput()
		code := -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		if code != want {
			t.Errorf("enqueue %s: exit code %d (%v), want %d\n%s", strings.Join(args, " "), code, err, want, out)
		}
		evidence["enqueue "+strings.Join(args, " ")] = string(out)
		return string(out)
	}
	for _, j := range jobs {
		cli(min(len(j.dead), 1), "status", "--tenant", j.tenant, j.run)
		dead := cli(0, "dead", "list", "--tenant", j.tenant, "--run", j.run)
		for _, o := range jobs {
			for k := range o.dead {
				if in := strings.Contains(dead, k); in != (o == j) {
					t.Errorf("`enqueue dead list --tenant %s`: %v's dead key %s listed: %v", j.tenant, o, k, in)
				}
			}
		}
	}
	var bytes int
	for name, text := range evidence {
		bytes += len(text)
		if leaks := e2etest.Leaks(text, secrets); len(leaks) > 0 {
			t.Errorf("%v found in %s", leaks, name)
		}
	}
	t.Logf("searched %d artifacts, %d bytes, for %d secrets", len(evidence), bytes, len(secrets))
}
