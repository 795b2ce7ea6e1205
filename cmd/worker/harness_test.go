package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/tenant"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	e2etest.RemoveBinaries()
	os.Exit(code)
}

// workerBinary builds this command once per test binary, for the tests about processes.
func workerBinary(t testing.TB) string {
	t.Helper()
	return e2etest.Binary(t, "cmd/worker")
}

// enqueueBinary builds cmd/enqueue once per test binary.
func enqueueBinary(t testing.TB) string {
	t.Helper()
	return e2etest.Binary(t, "cmd/enqueue")
}

// waitFor polls cond until it reports done or the deadline passes; the last message says
// what was still missing.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	testwait.For(t, "condition", timeout, func() (bool, error) {
		ok, msg := cond()
		return ok, errors.New(msg)
	})
}

const (
	testUser     = e2etest.User
	testPassword = e2etest.Password
	testConn     = e2etest.ErpConnection
)

// startSim runs the simulator with one on-site user.
func startSim(t testing.TB) *netserversim.Running {
	t.Helper()
	return e2etest.StartSim(t)
}

// holdCalls makes the simulator hold every ForceResyncExternal call after the first n:
// the call is processed (counted as seen) and then waits, before its reply and latency,
// until open is called. A test acts on a run that certainly is unfinished and has calls
// certainly in flight, however loaded the machine. The test's cleanup opens the gate
// before the simulator closes.
func holdCalls(t testing.TB, sim *netserversim.Running, n int64, latency time.Duration) (open func()) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	sim.SetLatencyFunc(func(ci netserversim.CallInfo) time.Duration {
		if ci.Seq > n {
			select {
			case <-gate:
			case <-time.After(5 * time.Minute): // never keep the simulator from closing
			}
		}
		return latency
	})
	t.Cleanup(open)
	return open
}

// seenKeys is how many keys the simulator has processed, replies delivered or not.
func seenKeys(sim *netserversim.Running) int64 {
	var n int64
	for _, c := range sim.Counts().Seen {
		n += int64(c)
	}
	return n
}

// waitCallsHeld waits until at least resynced keys of run are resynced and the simulator has
// seen more keys than that: the calls after them are in flight (held there by holdCalls).
func waitCallsHeld(t testing.TB, rdb redis.UniversalClient, sim *netserversim.Running, run string, resynced int64) {
	t.Helper()
	waitFor(t, time.Minute, func() (bool, string) {
		st := runStatus(t, rdb, run)
		seen := seenKeys(sim)
		return st.ResyncedKeys >= resynced && seen > st.ResyncedKeys, fmt.Sprintf("%+v, seen %d", st, seen)
	})
}

// apis are the transports the end-to-end tests run over.
var apis = []string{tenant.APISOAP, tenant.APIREST}

// forEachAPI runs test as a parallel subtest for each transport, named after it.
func forEachAPI(t *testing.T, test func(t *testing.T, api string)) {
	t.Helper()
	for _, api := range apis {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			test(t, api)
		})
	}
}

// newClient is a password-authenticated SOAP client for the simulator.
func newClient(t testing.TB, sim *netserversim.Running) (tasks.Resyncer, *auth.PasswordAuth) {
	t.Helper()
	return newClientAPI(t, sim, tenant.APISOAP)
}

// newClientAPI is a password-authenticated client of transport api for the simulator, built
// by the worker's own wiring.
func newClientAPI(t testing.TB, sim *netserversim.Running, api string) (tasks.Resyncer, *auth.PasswordAuth) {
	t.Helper()
	s, err := implicitTenant(values{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_API": api, "SUPEROFFICE_USERNAME": testUser,
		"SUPEROFFICE_PASSWORD": testPassword, "SUPEROFFICE_SOAP12": "false", "SUPEROFFICE_TIMEOUT": "30s"}, false, tenant.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.API != api {
		t.Fatalf("transport %s, want %s", s.API, api)
	}
	return s.Resyncer, s.Source().(*auth.PasswordAuth)
}

// testKeys returns n distinct keys with a prefix.
func testKeys(prefix string, n int) []string { return e2etest.Keys(prefix, n) }

// submit registers and enqueues keys as batches of size on db, as a producer does.
func submit(t testing.TB, db *redistest.DB, run string, actor erpsync.ActorType, keys []string, size int) {
	t.Helper()
	rdb := db.Client()
	defer rdb.Close()
	submitTo(t, rdb, run, actor, keys, size)
}

// submitTo is submit through any client, a cluster client among them.
func submitTo(t testing.TB, rdb redis.UniversalClient, run string, actor erpsync.ActorType, keys []string, size int) {
	t.Helper()
	lg := ledger.NewLedger(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()
	meta := ledger.RunMeta{Run: run, ErpConnectionID: testConn, ActorType: actor, Source: "test"}
	for seq := 0; seq*size < len(keys); seq++ {
		end := min((seq+1)*size, len(keys))
		b := tasks.Batch{Run: run, ErpConnectionID: testConn, ActorType: actor, Keys: keys[seq*size : end], Seq: seq, Source: "test"}
		if _, err := lg.RegisterBatch(ctx, meta, tasks.BatchID(run, seq), len(b.Keys)); err != nil {
			t.Fatalf("register batch %d: %v", seq, err)
		}
		task, err := tasks.NewResyncTask(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.EnqueueContext(ctx, task); err != nil {
			t.Fatalf("enqueue batch %d: %v", seq, err)
		}
	}
}

// runStatus reads a run from the ledger.
func runStatus(t testing.TB, rdb redis.UniversalClient, run string) ledger.RunStatus {
	t.Helper()
	st, err := ledger.NewLedger(rdb).Status(context.Background(), run)
	if err != nil {
		t.Fatalf("status of %s: %v", run, err)
	}
	return st
}

// waitDone waits until the run has nothing pending.
func waitDone(t testing.TB, rdb redis.UniversalClient, run string, timeout time.Duration) ledger.RunStatus {
	t.Helper()
	return e2etest.WaitRunFinished(t, rdb, run, timeout)
}

// expectedRecords is what the ledger must hold for keys resynced exactly once each.
func expectedRecords(actor erpsync.ActorType, keys []string) map[string]map[string]int64 {
	return e2etest.ExpectedRecords(actor, keys)
}

// workerSetup is what inProcess starts the worker with: its settings and its live objects,
// which a test's mutate changes together.
type workerSetup struct {
	appConfig
	appDeps
}

// inProcess runs the worker in this test process on Redis opt (a redistest.DB's or
// Cluster's Opt), calling resyncer.
func inProcess(t testing.TB, opt asynq.RedisConnOpt, resyncer tasks.Resyncer, mutate func(*workerSetup)) *app {
	t.Helper()
	w := workerSetup{
		appConfig: appConfig{
			RedisOpt:        opt,
			Concurrency:     8,
			Queues:          map[string]int{tasks.DefaultQueue: 1},
			TrickleQueue:    tasks.TrickleQueue,
			ShutdownTimeout: 10 * time.Second,
			BusinessRetries: 2,
			BusinessDelay:   time.Second,
			ResultRetention: time.Hour,
			BatchSize:       100,
			TrickleMaxDelay: 2 * time.Second,
			TrickleGrace:    time.Second,
			ReconcileEvery:  time.Second,
		},
		appDeps: appDeps{
			Resyncer: resyncer,
			Logger:   zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		},
	}
	if mutate != nil {
		mutate(&w)
	}
	a, err := startApp(w.appConfig, w.appDeps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.shutdown)
	return a
}

// proc is a worker process.
type proc struct {
	*e2etest.Process
	cmd *exec.Cmd
}

// startWorker starts the worker binary with env on top of a minimal environment; the test's
// cleanup kills it if it is still running.
func startWorker(t testing.TB, env map[string]string) *proc {
	t.Helper()
	p := e2etest.StartWorker(t, env)
	return &proc{Process: p, cmd: p.Cmd}
}

// log is what the worker wrote to stderr so far.
func (p *proc) log() string { return p.Log.String() }

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	return p.Wait(t, timeout)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// workerEnv is the environment for a worker process against db (nil: set REDIS_URL
// yourself) and sim.
func workerEnv(db *redistest.DB, sim *netserversim.Running) map[string]string {
	return workerEnvAPI(db, sim, tenant.APISOAP)
}

// workerEnvAPI is workerEnv for transport api.
func workerEnvAPI(db *redistest.DB, sim *netserversim.Running, api string) map[string]string {
	redisURL := ""
	if db != nil {
		redisURL = db.URL()
	}
	env := e2etest.WorkerEnv(redisURL, sim)
	env["SUPEROFFICE_API"] = api
	return env
}
