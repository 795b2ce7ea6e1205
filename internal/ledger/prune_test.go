package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testclock"
)

func TestParseRetention(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"0", 0, false},
		{"30d", 30 * 24 * time.Hour, false},
		{" 3d ", 72 * time.Hour, false},
		{"720h", 720 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"", 0, true},
		{"-1h", 0, true},
		{"0d", 0, true},
		{"1.5d", 0, true},
		{"forever", 0, true},
		{"0s", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseRetention(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRetention(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "30d") {
			t.Errorf("ParseRetention(%q) error %q does not say what is valid", tt.in, err)
		}
	}
}

// withClock makes the env's ledger and handler read c.
func (e *env) withClock(c *testclock.Clock) {
	e.ledger.now = c.Now
	e.cfg.Now = c.Now
	e.newHandler()
}

// night runs one run through the handler as asynq would hand it over: batches of 100 keys,
// every key resynced except those of the last batch, which SuperOffice refuses for good
// (HTTP 404, a permanent error) so that the run has dead letters.
func (e *env) night(run string, batches int) {
	e.t.Helper()
	ctx := context.Background()
	meta := RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Source: "nightly"}
	for seq := range batches {
		b := customerBatch(run, seq, testKeys(fmt.Sprintf("N%d", seq), 100))
		if _, err := e.ledger.RegisterBatch(ctx, meta, tasks.BatchID(run, seq), len(b.Keys)); err != nil {
			e.t.Fatal(err)
		}
	}
	for seq := range batches {
		b := customerBatch(run, seq, testKeys(fmt.Sprintf("N%d", seq), 100))
		err := e.h.ProcessTask(ctx, mustTask(e.t, b))
		if (err != nil) != (seq == batches-1) {
			e.t.Fatalf("batch %d: %v", seq, err)
		}
	}
}

// deadLast makes the env's SuperOffice refuse batches whose first key starts with the
// prefix of the given batch number.
func deadLast(batches int) *fakeSO {
	prefix := fmt.Sprintf("N%d-", batches-1)
	return &fakeSO{fn: func(_ int, keys []string) (*erpsync.Result, error) {
		if strings.HasPrefix(keys[0], prefix) {
			return nil, &erpsync.HTTPError{StatusCode: 404}
		}
		return okResponse(keys), nil
	}}
}

func usedMemory(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	ctx := context.Background()
	// UNLINK frees in a background thread: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		f := map[string]string{}
		for _, line := range strings.Split(info, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				f[k] = v
			}
		}
		if f["lazyfree_pending_objects"] == "0" || time.Now().After(deadline) {
			n, err := strconv.ParseInt(f["used_memory"], 10, 64)
			if err != nil {
				t.Fatalf("INFO memory: used_memory %q", f["used_memory"])
			}
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTenNightsMemoryFlat runs ten nightly runs a day apart with a retention of three days
// on a Redis of its own, pruning after each night as the worker does: from the fourth night
// on, each night's run replaces the one that fell out of the retention, and Redis's memory
// stays where it was after the third night.
func TestTenNightsMemoryFlat(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t, redistest.Options{})
	if !srv.Real {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatal("needs redis-server for INFO memory")
		}
		t.Skip("needs redis-server for INFO memory (miniredis has none)")
	}
	db := srv.NewDB(t)
	rdb := db.TestClient(t)
	const batches = 200
	e := newEnvOn(t, db, deadLast(batches), nil)
	c := testclock.New(time.Date(2026, 11, 1, 2, 30, 0, 0, time.UTC))
	e.withClock(c)
	ctx := context.Background()
	retention := 3*24*time.Hour - time.Hour // the three latest nights are kept
	// A night before the first, pruned at once: what Redis allocates once, on the first
	// removal (the inspector's connection and script, the lazy-free thread's own memory), is
	// there before the first measurement.
	c.Set(time.Date(2026, 10, 1, 2, 30, 0, 0, time.UTC))
	e.night("warm-up", batches)
	c.Set(time.Date(2026, 10, 31, 2, 30, 0, 0, time.UTC))
	if res, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: retention, Inspector: e.insp}); err != nil || len(res.Runs) != 1 {
		t.Fatalf("warm-up prune: %+v, %v", res, err)
	}
	before := usedMemory(t, rdb)
	var mem []int64
	for night := 1; night <= 10; night++ {
		c.Set(time.Date(2026, 11, night, 2, 30, 0, 0, time.UTC))
		e.night(fmt.Sprintf("nightly-customers-2026-11-%02d", night), batches)
		c.Set(c.Now().Add(30 * time.Minute))
		res, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: retention, Inspector: e.insp})
		if err != nil {
			t.Fatal(err)
		}
		wantPruned := 0
		if night > 3 {
			wantPruned = 1
		}
		if len(res.Runs) != wantPruned {
			t.Fatalf("night %d: pruned %+v, want %d run", night, res.Runs, wantPruned)
		}
		runs, err := e.ledger.Runs(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(night, 3); len(runs) != want || runs[0].State != RunDoneWithDead || runs[0].DeadKeys != 100 {
			t.Fatalf("night %d: %d runs kept (%+v), want %d done_with_dead", night, len(runs), runs, want)
		}
		mem = append(mem, usedMemory(t, rdb))
	}
	perNight := (mem[2] - mem[0]) / 2
	t.Logf("used_memory: before %d, after each night %v; about %d bytes a night of %d keys", before, mem, perNight, batches*100)
	if perNight < 10_000 {
		t.Fatalf("a night adds %d bytes: too little to show anything", perNight)
	}
	// Connection buffers come and go by some 50 KB; a night that was not pruned would add a
	// whole night each time.
	for i := 3; i < len(mem); i++ {
		if d := mem[i] - mem[2]; d > perNight/2 || d < -perNight/2 {
			t.Errorf("after night %d used_memory is %+d bytes from night 3's (a night is %d): not flat", i+1, d, perNight)
		}
	}
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Per kept run: meta, batches, records, changes, dead; the run index; the pruned markers
	// of the warm-up and nights 1 to 7 (about 100 bytes each, for prunedMarkerTTL).
	if want := int64(3*5 + 1 + 8); n != want {
		keys, _ := rdb.Keys(ctx, "*").Result()
		t.Errorf("%d keys left, want %d: %v", n, want, keys)
	}
}

// TestPrune covers the rule and the report: what goes (finished and quiet for longer than
// the retention, dead letters and their archived tasks with it), what stays (active runs,
// recent runs, a run requeued lately), a dry run that touches nothing, and a second Prune
// that finds nothing left.
func TestPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	c := testclock.New(time.Date(2026, 9, 1, 2, 0, 0, 0, time.UTC))
	e.withClock(c)
	ctx := context.Background()
	day := 24 * time.Hour
	start := c.Now()

	// old-done: finished 40 days before "now".
	e.night1("old-done", []string{"A", "B"})
	// ... and its batch archived by asynq although the ledger has it done (the worker died
	// between recording the success and asynq's acknowledgement, on the last attempt).
	doneID := e.enqueue(customerBatch("old-done", 0, []string{"A", "B"}))
	if err := e.insp.ArchiveTask(tasks.DefaultQueue, doneID); err != nil {
		t.Fatal(err)
	}
	// old-dead: a batch archived by asynq, recorded dead by the reconciliation.
	deadID := e.enqueue(customerBatch("old-dead", 0, []string{"P1", "P2"}))
	if err := e.insp.ArchiveTask(tasks.DefaultQueue, deadID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ledger.ReconcileArchived(ctx, e.insp); err != nil || n != 1 {
		t.Fatalf("reconcile: %d, %v", n, err)
	}
	// old-active: started long ago, one batch still pending.
	if _, err := e.ledger.RegisterBatch(ctx, RunMeta{Run: "old-active", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}, "old-active:b000000", 5); err != nil {
		t.Fatal(err)
	}
	// old-requeued: finished with a dead letter long ago, requeued and finished again lately.
	e.night1("old-requeued", []string{"R1"})
	c.Set(start.Add(20 * day))
	e.night1("recent", []string{"C"})
	c.Set(start.Add(38 * day))
	e.ledger.rdb.HSet(ctx, keysFor("old-requeued").meta, "last_activity", ms(c.Now()))
	c.Set(start.Add(40 * day))

	wantRuns := []string{"old-dead", "old-done"}
	dry, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: 30 * day, DryRun: true, Inspector: e.insp})
	if err != nil {
		t.Fatal(err)
	}
	if got := prunedNames(dry); !slices.Equal(got, wantRuns) || !dry.DryRun || dry.Archived != 0 {
		t.Errorf("dry run = %+v, want runs %v and nothing archived deleted", dry, wantRuns)
	}
	if all, _ := e.ledger.Runs(ctx, 0); len(all) != 5 {
		t.Fatalf("after the dry run %d runs, want all 5", len(all))
	}

	res, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: 30 * day, Inspector: e.insp})
	if err != nil {
		t.Fatal(err)
	}
	if got := prunedNames(res); !slices.Equal(got, wantRuns) || res.Archived != 1 {
		t.Errorf("prune = %+v, want runs %v and 1 archived task deleted", res, wantRuns)
	}
	for _, pr := range res.Runs {
		switch pr.Run {
		case "old-done":
			if pr.State != RunDone || pr.TotalKeys != 2 || pr.ChangeItems != 2 || pr.DeadLetters != 0 || !pr.FinishedAt.Equal(start) {
				t.Errorf("report of old-done = %+v", pr)
			}
		case "old-dead":
			if pr.State != RunDoneWithDead || pr.TotalKeys != 2 || pr.DeadLetters != 2 || pr.ChangeItems != 0 {
				t.Errorf("report of old-dead = %+v", pr)
			}
		}
	}
	var kept []string
	all, _ := e.ledger.Runs(ctx, 0)
	for _, st := range all {
		kept = append(kept, st.Run)
	}
	slices.Sort(kept)
	if want := []string{"old-active", "old-requeued", "recent"}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	for _, run := range wantRuns {
		if _, err := e.ledger.Status(ctx, run); !errors.Is(err, ErrRunNotFound) {
			t.Errorf("Status(%s) after prune: %v, want ErrRunNotFound", run, err)
		}
		if left := runKeysLeft(t, e.ledger.rdb, run); len(left) > 0 {
			t.Errorf("keys of %s left: %v", run, left)
		}
	}
	if dls, _ := e.ledger.DeadLetters(ctx, ""); len(dls) != 0 {
		t.Errorf("dead letters left: %+v", dls)
	}
	if _, err := e.insp.GetTaskInfo(tasks.DefaultQueue, deadID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("archived task of old-dead: %v, want it deleted", err)
	}
	// Nothing for the reconciliation to bring back: the dead batch's archived task is gone,
	// the done batch's is left to asynq, and the pruned marker says why.
	if n, err := e.ledger.ReconcileArchived(ctx, e.insp); err != nil || n != 0 {
		t.Errorf("reconcile after prune: %d, %v", n, err)
	}
	again, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: 30 * day, Inspector: e.insp})
	if err != nil || len(again.Runs) != 0 || again.Stale != 0 {
		t.Errorf("second prune = %+v, %v; want nothing", again, err)
	}
	if _, err := e.ledger.Prune(ctx, PruneOptions{}); err == nil {
		t.Error("Prune without a retention accepted")
	}
}

// night1 resyncs keys as one batch of a new run, finished at the clock's time.
func (e *env) night1(run string, keys []string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.ledger.RegisterBatch(ctx, RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}, tasks.BatchID(run, 0), len(keys)); err != nil {
		e.t.Fatal(err)
	}
	if err := e.h.ProcessTask(ctx, mustTask(e.t, customerBatch(run, 0, keys))); err != nil {
		e.t.Fatal(err)
	}
}

func prunedNames(r PruneResult) []string {
	var out []string
	for _, pr := range r.Runs {
		out = append(out, pr.Run)
	}
	slices.Sort(out)
	return out
}

// runKeysLeft lists the keys carrying run's hash tag, whatever their name, so that a per-run
// key that Prune does not know of is caught; all but the pruned marker, which is meant to
// stay (for prunedMarkerTTL).
func runKeysLeft(t *testing.T, rdb redis.UniversalClient, run string) []string {
	t.Helper()
	return slices.DeleteFunc(scanKeys(t, rdb, "*{"+run+"}*"), func(k string) bool { return k == keysFor(run).pruned })
}

// asynqTasksLeft lists the asynq task keys ("asynq:{QUEUE}:t:ID") of run's batches, in any
// queue and state.
func asynqTasksLeft(t *testing.T, rdb redis.UniversalClient, run string) []string {
	t.Helper()
	return scanKeys(t, rdb, "asynq:{*}:t:"+run+":*")
}

// scanKeys lists the keys matching pattern, on every master of a Cluster.
func scanKeys(t *testing.T, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return iter.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, n)
		})
	case *redis.Client:
		err = scan(ctx, c)
	default:
		t.Fatalf("client %T", rdb)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPruneLeavesNothingOfTheRun: every key a run can have (a split, a business failure, an
// auth hold, an earlier version's systemic hold, a requeue's outbox, rejected keys) goes
// with it, and so do its asynq tasks, which asynq keeps completed for their retention, in
// every queue the run used.
func TestPruneLeavesNothingOfTheRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	c := testclock.New(time.Date(2026, 9, 1, 2, 0, 0, 0, time.UTC))
	e.withClock(c)
	e.serve(nil, func(cfg *asynq.Config) { cfg.Queues = map[string]int{tasks.DefaultQueue: 1, "other": 1} })
	ctx := context.Background()
	e.enqueue(customerBatch("full", 0, []string{"A", "B"}))
	e.enqueue(customerBatch("full", 1, []string{"C"}), asynq.Queue("other"))
	e.waitRunFinished("full", 20*time.Second)
	waitFor(t, "the run's tasks to be completed", 10*time.Second, func() (bool, error) {
		return len(asynqTasksLeft(t, e.ledger.rdb, "full")) == 2, nil
	})
	k := keysFor("full")
	for _, h := range []string{k.business, k.auth, k.systemic, k.outbox, k.dead} {
		e.ledger.rdb.HSet(ctx, h, "full:b000000", "1")
	}
	e.ledger.rdb.RPush(ctx, k.rejected, `{"line":3}`)
	if n := len(runKeysLeft(t, e.ledger.rdb, "full")); n != len(k.all()) {
		t.Fatalf("the run has %d keys, want all %d", n, len(k.all()))
	}
	c.Set(c.Now().Add(48 * time.Hour))
	res, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: 24 * time.Hour, Inspector: e.insp})
	if err != nil || len(res.Runs) != 1 || res.Tasks != 2 {
		t.Fatalf("prune = %+v, %v; want 1 run and its 2 tasks", res, err)
	}
	if left := runKeysLeft(t, e.ledger.rdb, "full"); len(left) > 0 {
		t.Errorf("keys left: %v", left)
	}
	if left := asynqTasksLeft(t, e.ledger.rdb, "full"); len(left) > 0 {
		t.Errorf("asynq tasks left: %v", left)
	}
	for _, q := range []string{tasks.DefaultQueue, "other"} {
		if qi, err := e.insp.GetQueueInfo(q); err != nil || qi.Completed != 0 || qi.Size != 0 {
			t.Errorf("queue %s: %+v, %v; want no task", q, qi, err)
		}
	}
	if ttl, err := e.ledger.rdb.PTTL(ctx, k.pruned).Result(); err != nil || ttl <= prunedMarkerTTL-time.Minute || ttl > prunedMarkerTTL {
		t.Errorf("pruned marker TTL %v, %v; want about %v", ttl, err, prunedMarkerTTL)
	}
	if n, _ := e.ledger.rdb.ZCard(ctx, runsKey).Result(); n != 0 {
		t.Errorf("run index holds %d entries, want none", n)
	}
}

// TestRunKeysAllCoversEveryKey: a key added to runKeys is one Prune removes, unless it is
// the pruned marker.
func TestRunKeysAllCoversEveryKey(t *testing.T) {
	t.Parallel()
	k := keysFor("x")
	all := k.all()
	v := reflect.ValueOf(k)
	for i := range v.NumField() {
		name, key := v.Type().Field(i).Name, v.Field(i).String()
		if name != "pruned" && !slices.Contains(all, key) {
			t.Errorf("runKeys.%s (%s) is not in runKeys.all(): Prune would leave it behind", name, key)
		}
	}
	if all[0] != k.meta {
		t.Errorf("all()[0] = %s, want the meta key (pruneScript reads KEYS[1])", all[0])
	}
}

// TestPruneStaleIndexEntry: an index entry whose run's keys are gone is removed, and counted.
func TestPruneStaleIndexEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	ctx := context.Background()
	e.ledger.rdb.ZAdd(ctx, runsKey, redis.Z{Score: 1, Member: "gone"})
	dry, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: time.Hour, DryRun: true})
	if err != nil || dry.Stale != 1 {
		t.Fatalf("dry = %+v, %v", dry, err)
	}
	res, err := e.ledger.Prune(ctx, PruneOptions{OlderThan: time.Hour})
	if err != nil || res.Stale != 1 || len(res.Runs) != 0 {
		t.Fatalf("prune = %+v, %v", res, err)
	}
	if n, _ := e.ledger.rdb.ZCard(ctx, runsKey).Result(); n != 0 {
		t.Errorf("run index holds %d entries", n)
	}
}

// runsFinished tells whether the runs cl-FROM … cl-(TO-1) have nothing pending.
func runsFinished(ctx context.Context, l *Ledger, from, to int) (bool, error) {
	for i := from; i < to; i++ {
		st, err := l.Status(ctx, fmt.Sprintf("cl-%02d", i))
		if err != nil || st.PendingKeys > 0 {
			return false, err
		}
	}
	return true, nil
}

// TestPruneCluster prunes many runs (spread over the slots of a 3-master Redis Cluster)
// from four Prunes at once, as several workers would: each run is reported removed once,
// the kept ones stay whole, nothing of the removed ones is left on any node, asynq's
// completed tasks of theirs included.
func TestPruneCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client()
	t.Cleanup(func() { rdb.Close() })
	l := NewLedger(rdb)
	c := testclock.New(time.Date(2026, 9, 1, 2, 0, 0, 0, time.UTC))
	l.now = c.Now
	h, err := tasks.NewHandler(tasks.HandlerConfig{Resyncer: &fakeSO{}, Ledger: l, Redis: rdb, FastPolicy: fastPolicy(), Now: c.Now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The runs go through asynq on the Cluster, which keeps their tasks completed.
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 4, Queues: map[string]int{tasks.DefaultQueue: 1},
		TaskCheckInterval: 20 * time.Millisecond, IsFailure: tasks.IsFailure, Logger: nopLogger{}, LogLevel: asynq.FatalLevel})
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	const old, recent = 30, 5
	for i := range old + recent {
		if i == old {
			waitFor(t, "the old runs to finish", 20*time.Second, func() (bool, error) { return runsFinished(ctx, l, 0, old) })
			c.Set(c.Now().Add(10 * 24 * time.Hour))
		}
		run := fmt.Sprintf("cl-%02d", i)
		if _, err := l.RegisterBatch(ctx, RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}, tasks.BatchID(run, 0), 3); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(mustTask(t, customerBatch(run, 0, []string{"X", "Y", "Z"}))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the recent runs to finish", 20*time.Second, func() (bool, error) { return runsFinished(ctx, l, old, old+recent) })
	waitFor(t, "every task to be completed", 10*time.Second, func() (bool, error) {
		qi, err := insp.GetQueueInfo(tasks.DefaultQueue)
		return err == nil && qi.Completed == old+recent, err
	})
	c.Set(c.Now().Add(24 * time.Hour))
	var wg sync.WaitGroup
	results := make([]PruneResult, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = l.Prune(ctx, PruneOptions{OlderThan: 5 * 24 * time.Hour, Inspector: insp})
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("prune %d: %v", i, errs[i])
		}
		for _, pr := range r.Runs {
			seen[pr.Run]++
		}
	}
	if len(seen) != old {
		t.Errorf("%d runs removed, want %d: %v", len(seen), old, seen)
	}
	for run, n := range seen {
		if n != 1 {
			t.Errorf("%s reported removed %d times", run, n)
		}
		if left := runKeysLeft(t, rdb, run); len(left) > 0 {
			t.Errorf("keys of %s left: %v", run, left)
		}
		if left := asynqTasksLeft(t, rdb, run); len(left) > 0 {
			t.Errorf("asynq tasks of %s left: %v", run, left)
		}
	}
	if qi, err := insp.GetQueueInfo(tasks.DefaultQueue); err != nil || qi.Completed != recent {
		t.Errorf("queue: %+v, %v; want the %d tasks of the kept runs", qi, err, recent)
	}
	runs, err := l.Runs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != recent {
		t.Errorf("%d runs kept, want %d", len(runs), recent)
	}
	for _, st := range runs {
		if st.State != RunDone || st.ResyncedKeys != 3 {
			t.Errorf("kept run %+v", st)
		}
		n := 0
		l.Changes(ctx, st.Run, func(tasks.ChangeItem) error { n++; return nil })
		if n != 3 {
			t.Errorf("kept run %s has %d change items, want 3", st.Run, n)
		}
	}
}

// TestPruneSparesPendingTasks: a batch pending again (a requeue or a resubmission that raced
// the prune between its check and its clean-up) keeps its task: deleting it would leave its
// keys pending for ever.
func TestPruneSparesPendingTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &fakeSO{}, nil)
	b := tasks.Batch{Run: "raced", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: testKeys("R", 3)}
	id := e.enqueue(b)
	n, err := e.ledger.deleteRunTasks(context.Background(), e.insp, "raced")
	if err != nil || n != 0 {
		t.Fatalf("deleteRunTasks = %d, %v; want 0 deleted", n, err)
	}
	if _, err := e.insp.GetTaskInfo(tasks.DefaultQueue, id); err != nil {
		t.Fatalf("the pending batch's task is gone: %v", err)
	}
}
