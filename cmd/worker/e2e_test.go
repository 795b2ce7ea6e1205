package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/tenant"
	"github.com/erpresync/erpresync/soap"
	"github.com/erpresync/erpresync/tasks"
)

// TestTenThousandKeys is the product's promise in one run: 10,000 keys with a few poison
// keys, injected 503s, throttling and a ticket expiry mid-run. Every good key is resynced (the
// simulator's counts prove it), exactly the poison keys are dead-lettered, each alone and
// with its reason, and the ledger's totals equal what the simulator delivered. It runs over
// both transports.
func TestTenThousandKeys(t *testing.T) {
	t.Parallel()
	forEachAPI(t, testTenThousandKeys)
}

func testTenThousandKeys(t *testing.T, api string) {
	db := redistest.New(t)
	sim := startSim(t)
	keys := testKeys("C", 10000)
	poison := []string{keys[17], keys[2500], keys[2501], keys[6003], keys[9999]}
	sim.SetPoison(poison...)
	sim.Fail503(25)
	sim.Throttle(3, time.Second)
	client, auth := newClientAPI(t, sim, api)
	rdb := db.TestClient(t)

	const run = "e2e-10k"
	submit(t, db, run, erpsync.ActorCustomer, keys, 100)
	inProcess(t, db.Opt(), client, nil)

	expired := false
	st := runStatus(t, rdb, run)
	waitFor(t, 3*time.Minute, func() (bool, string) {
		st = runStatus(t, rdb, run)
		if !expired && st.ResyncedKeys >= 3000 {
			sim.ExpireTickets()
			expired = true
		}
		return expired && st.PendingKeys == 0, fmt.Sprintf("%+v", st)
	})

	if st.ResyncedKeys != 9995 || st.DeadKeys != 5 || st.TotalKeys != 10000 || st.State != ledger.RunDoneWithDead {
		t.Fatalf("ledger: %+v, want 9995 resynced, 5 dead of 10000", st)
	}
	snap := sim.Counts()
	var good []string
	for _, k := range keys {
		if slices.Contains(poison, k) {
			if n := snap.Resynced[k]; n != 0 {
				t.Errorf("poison key %s resynced %d times", k, n)
			}
			continue
		}
		good = append(good, k)
		if snap.Resynced[k] < 1 {
			t.Errorf("key %s never resynced", k)
		}
	}
	if snap.ResyncAll != 0 {
		t.Errorf("%d resync-all calls reached SuperOffice", snap.ResyncAll)
	}
	if want := expectedRecords(erpsync.ActorCustomer, good); !sameRecords(st.Records, want) {
		t.Errorf("ledger records %v, want %v", st.Records, want)
	}
	if !sameRecords(st.Records, simRecords(snap)) {
		t.Errorf("ledger records %v, simulator delivered %v", st.Records, simRecords(snap))
	}
	if got := snap.Logins.PasswordOK; got != 2 {
		t.Errorf("%d logins, want 2 (one at start, one after the ticket expiry)", got)
	}
	if auth.Refreshes() < 1 {
		t.Errorf("ticket refreshes = %d", auth.Refreshes())
	}

	dead, err := ledger.NewLedger(rdb).DeadLetters(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	var deadKeys []string
	batches := map[string]bool{}
	for _, d := range dead {
		deadKeys = append(deadKeys, d.Key)
		if batches[d.BatchID] {
			t.Errorf("batch %s dead-lettered more than one key", d.BatchID)
		}
		batches[d.BatchID] = true
		if d.ErrorCode != netserversim.DefaultErrorCode || !strings.Contains(d.Reason, d.ErrorCode) || !strings.Contains(d.TechExplanation, d.Key) {
			t.Errorf("dead letter without a readable reason: %+v", d)
		}
	}
	slices.Sort(deadKeys)
	want := slices.Clone(poison)
	slices.Sort(want)
	if !slices.Equal(deadKeys, want) {
		t.Fatalf("dead keys %v, want %v", deadKeys, want)
	}

	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	archived, err := insp.ListArchivedTasks(tasks.DefaultQueue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(archived) != len(poison) {
		t.Fatalf("%d archived tasks, want %d", len(archived), len(poison))
	}
	for _, a := range archived {
		if !strings.Contains(a.LastErr, netserversim.DefaultErrorCode) {
			t.Errorf("archived task %s: reason %q does not name the error code", a.ID, a.LastErr)
		}
	}
}

// TestKill9 kills the worker process in the middle of a run and starts it again: nothing is
// lost, and the ledger counts every key once although SuperOffice saw some twice. It runs
// over both transports, in parallel: most of its time is spent waiting for asynq's lease.
func TestKill9(t *testing.T) {
	t.Parallel()
	forEachAPI(t, testKill9)
}

func testKill9(t *testing.T, api string) {
	db := redistest.New(t)
	sim := startSim(t)
	keys := testKeys("P", 3000)
	const run = "kill9"
	submit(t, db, run, erpsync.ActorPerson, keys, 50)
	rdb := db.TestClient(t)
	// 12 batches (600 keys) go through; the calls after them are held at the simulator, so
	// the kill finds the run unfinished and calls in flight.
	open := holdCalls(t, sim, 12, 20*time.Millisecond)

	env := workerEnvAPI(db, sim, api)
	w := startWorker(t, env)
	waitCallsHeld(t, rdb, sim, run, 600)
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.wait(t, 10*time.Second)
	mid := runStatus(t, rdb, run)
	if mid.PendingKeys == 0 {
		t.Fatalf("the run finished before the kill: %+v", mid)
	}
	open()

	startWorker(t, env)
	// asynq recovers the killed worker's leased tasks only after the lease has expired and
	// its recoverer has looked again: up to about two minutes.
	assertResyncedOnce(t, sim, waitDone(t, rdb, run, 4*time.Minute), erpsync.ActorPerson, keys)
}

// assertResyncedOnce checks a finished run: every key resynced at SuperOffice at least
// once, none dead, and the ledger counting each key's change exactly once.
func assertResyncedOnce(t *testing.T, sim *netserversim.Running, st ledger.RunStatus, actor erpsync.ActorType, keys []string) {
	t.Helper()
	if st.ResyncedKeys != int64(len(keys)) || st.DeadKeys != 0 || st.TotalKeys != int64(len(keys)) {
		t.Fatalf("run %s: %+v, want all %d keys resynced", st.Run, st, len(keys))
	}
	for _, k := range keys {
		if sim.ResyncCount(k) < 1 {
			t.Fatalf("key %s never resynced", k)
		}
	}
	if want := expectedRecords(actor, keys); !sameRecords(st.Records, want) {
		t.Fatalf("ledger records %v, want each key counted once: %v", st.Records, want)
	}
}

// TestRedisRestart restarts Redis (with AOF) in the middle of a run: the worker reconnects
// by itself and nothing is lost.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t, redistest.Options{AppendOnly: true})
	if !srv.Real {
		t.Skip("restarting Redis needs a real redis-server")
	}
	db := srv.NewDB(t)
	sim := startSim(t)
	keys := testKeys("S", 2000)
	const run = "redis-restart"
	submit(t, db, run, erpsync.ActorSale, keys, 50)
	rdb := db.TestClient(t)
	// 6 batches (300 keys) go through; the calls after them are held at the simulator, so
	// Redis restarts under an unfinished run with calls in flight.
	open := holdCalls(t, sim, 6, 20*time.Millisecond)

	startWorker(t, workerEnv(db, sim))
	waitCallsHeld(t, rdb, sim, run, 300)
	if mid := runStatus(t, rdb, run); mid.PendingKeys == 0 {
		t.Fatalf("the run finished before the restart: %+v", mid)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	open()
	assertResyncedOnce(t, sim, waitDone(t, rdb, run, 4*time.Minute), erpsync.ActorSale, keys)
}

// TestSIGTERM stops the worker during a run: in-flight calls finish and are recorded, the
// process exits 0, and the rest of the run resumes on the next start.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startSim(t)
	keys := testKeys("J", 400)
	const run = "sigterm"
	submit(t, db, run, erpsync.ActorProject, keys, 20)
	rdb := db.TestClient(t)
	// 3 batches go through; the next calls are held at the simulator until the worker is
	// shutting down, so the signal certainly finds calls in flight.
	open := holdCalls(t, sim, 3, 20*time.Millisecond)

	env := workerEnv(db, sim)
	env["WORKER_CONCURRENCY"] = "3"
	w := startWorker(t, env)
	waitCallsHeld(t, rdb, sim, run, 60)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(w.log(), "shutting down"), "no shutdown message yet"
	})
	open() // the held calls finish during the shutdown
	if code := w.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	mid := runStatus(t, rdb, run)
	snap := sim.Counts()
	delivered := 0
	for _, n := range snap.Resynced {
		delivered += n
	}
	if int64(delivered) != mid.ResyncedKeys {
		t.Fatalf("SuperOffice delivered %d resynced keys but the ledger recorded %d: an in-flight call was cut off", delivered, mid.ResyncedKeys)
	}
	if mid.ResyncedKeys <= 60 {
		t.Fatalf("the calls in flight at the signal were not recorded: %+v", mid)
	}
	if snap.Calls[netserversim.OutcomeUndelivered] != 0 {
		t.Fatalf("%d calls were cut off by the shutdown", snap.Calls[netserversim.OutcomeUndelivered])
	}
	if mid.PendingKeys == 0 {
		t.Fatalf("nothing left for the next start: %+v", mid)
	}
	if !strings.Contains(w.log(), "worker stopped") {
		t.Fatalf("no orderly stop in the log:\n%s", w.log())
	}

	sim.SetLatencyFunc(nil)
	startWorker(t, env)
	assertResyncedOnce(t, sim, waitDone(t, rdb, run, 2*time.Minute), erpsync.ActorProject, keys)
}

// TestRefusedLoginIsHeld: wrong credentials are an outage of configuration. Every batch is
// held (not dead-lettered, not lost), the error is logged loudly, and the worker asks the
// login service once, not once per batch.
func TestRefusedLoginIsHeld(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startSim(t)
	pa, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: sim.URL, UserName: testUser, Password: "not-the-password"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := soap.New(soap.Config{BaseURL: sim.URL, Auth: pa})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedWriter
	logs.mu, logs.w = &sync.Mutex{}, &bytes.Buffer{}
	const run = "refused"
	submit(t, db, run, erpsync.ActorCustomer, testKeys("R", 300), 10)
	inProcess(t, db.Opt(), client, func(c *workerSetup) {
		c.Logger, c.AuthFix = zerolog.New(logs), implicitSpec(tenant.ModePassword).AuthFix()
	})

	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	waitFor(t, time.Minute, func() (bool, string) {
		qi, err := insp.GetQueueInfo(tasks.DefaultQueue)
		if err != nil {
			return false, err.Error()
		}
		return qi.Retry == 30, fmt.Sprintf("%d of 30 batches held", qi.Retry)
	})
	if n := sim.Counts().Logins.PasswordRefused; n != 1 {
		t.Errorf("%d refused logins for 30 batches, want 1 (no login storm)", n)
	}
	rdb := db.TestClient(t)
	if st := runStatus(t, rdb, run); st.PendingKeys != 300 || st.DeadKeys != 0 {
		t.Errorf("run %+v: want every key pending (held), none dead", st)
	}
	out := logs.String()
	if !strings.Contains(out, `"level":"error"`) || !strings.Contains(out, "check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD") {
		t.Errorf("no loud error naming the settings in the log:\n%.2000s", out)
	}
	if strings.Contains(out, "not-the-password") {
		t.Error("the log contains the password")
	}
}

// TestSecondSignalExitsAtOnce: a second SIGTERM during the graceful shutdown ends the
// process at once instead of waiting out the shutdown timeout.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startSim(t)
	holdCalls(t, sim, 0, 0) // every call stays in flight until the test ends
	submit(t, db, "second-signal", erpsync.ActorCustomer, testKeys("Q", 20), 10)
	env := workerEnv(db, sim)
	env["WORKER_SHUTDOWN_TIMEOUT"] = "60s"
	w := startWorker(t, env)
	waitFor(t, 30*time.Second, func() (bool, string) {
		return seenKeys(sim) > 0, "no call in flight yet"
	})
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(w.log(), "a second signal exits at once"), "no shutdown message yet"
	})
	start := time.Now()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t, 15*time.Second); code != 1 {
		t.Fatalf("exit status %d after the second signal, want 1", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s to exit after the second signal", d)
	}
}

// TestLogsStayJSONWhileRedisIsDown: with Redis unreachable the worker keeps running and
// every line it writes is JSON, go-redis's own complaints included; SIGTERM still stops it
// cleanly.
func TestLogsStayJSONWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	env := workerEnv(nil, sim)
	env["REDIS_URL"] = "redis://" + freeAddr(t) + "/0"
	w := startWorker(t, env)
	waitFor(t, time.Minute, func() (bool, string) {
		return strings.Contains(w.log(), `"component":"go-redis"`), "no go-redis line in the log yet"
	})
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	for _, line := range strings.Split(strings.TrimSpace(w.log()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("not a JSON line: %q", line)
		}
	}
}
