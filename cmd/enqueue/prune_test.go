package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// enqueueAt runs the command in-process with its clock at now.
func enqueueAt(t *testing.T, now time.Time, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" },
		progressEvery: time.Hour, now: func() time.Time { return now }}
	code := c.run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

// finishedRun records a run of keys, resynced at "at" by the real handler (a key starting
// with BAD is dead-lettered), as a worker would have.
func finishedRun(t *testing.T, rdb redis.UniversalClient, run string, at time.Time, keys ...string) {
	t.Helper()
	now := func() time.Time { return at }
	l := ledger.NewLedger(rdb).WithClock(now)
	h, err := tasks.NewHandler(tasks.HandlerConfig{Resyncer: fakeSO{}, Ledger: l, Redis: rdb, BusinessRetries: -1, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for seq, k := range keys {
		if _, err := l.RegisterBatch(ctx, ledger.RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}, tasks.BatchID(run, seq), 1); err != nil {
			t.Fatal(err)
		}
		task, err := tasks.NewResyncTask(tasks.Batch{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: []string{k}, Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ProcessTask(ctx, task); (err != nil) != strings.HasPrefix(k, "BAD") {
			t.Fatalf("key %s: %v", k, err)
		}
	}
}

func runNames(t *testing.T, now time.Time, conn ...string) []string {
	t.Helper()
	r := enqueueAt(t, now, append([]string{"runs", "--json"}, conn...)...)
	var list []struct {
		Run string `json:"run"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != 0 {
		t.Fatalf("runs: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	var out []string
	for _, x := range list {
		out = append(out, x.Run)
	}
	return out
}

func TestRunsPrune(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	t0 := time.Date(2026, 10, 1, 2, 0, 0, 0, time.UTC)
	finishedRun(t, rdb, "old-clean", t0, "A", "B")
	finishedRun(t, rdb, "old-dead", t0.Add(time.Hour), "C", "BAD1")
	finishedRun(t, rdb, "recent", t0.Add(25*24*time.Hour), "D")
	now := t0.Add(31 * 24 * time.Hour)
	url := []string{"--redis-url", db.URL()}

	r := enqueueAt(t, now, append([]string{"runs", "--prune", "--dry-run"}, url...)...)
	if r.code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantContains(t, "dry run output", r.stdout,
		"would remove old-clean: done, 2 keys, 0 dead letters, 4 change items, finished 2026-10-01T02:00:00Z",
		"would remove old-dead: done_with_dead, 2 keys, 1 dead letter, 2 change items, finished 2026-10-01T03:00:00Z",
		"dry run: would remove 2 runs (4 keys, 1 dead letter) finished before 2026-10-02T02:00:00Z; nothing was removed",
	)
	if got := runNames(t, now, url...); len(got) != 3 {
		t.Fatalf("after the dry run: runs %v, want all 3", got)
	}

	r = enqueueAt(t, now, append([]string{"runs", "--prune", "--json"}, url...)...)
	var res ledger.PruneResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 {
		t.Fatalf("prune: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(res.Runs) != 2 || res.DryRun || !res.Cutoff.Equal(t0.Add(24*time.Hour*31-30*24*time.Hour)) {
		t.Errorf("prune = %+v", res)
	}
	if got := runNames(t, now, url...); len(got) != 1 || got[0] != "recent" {
		t.Errorf("after the prune: runs %v, want [recent]", got)
	}
	if r := enqueueAt(t, now, append([]string{"dead", "list", "--run", "old-dead"}, url...)...); r.code != 2 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("dead list of a pruned run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := enqueueAt(t, now, append([]string{"changes", "old-clean"}, url...)...); r.code != 2 {
		t.Errorf("changes of a pruned run: exit %d\n%s", r.code, r.stdout)
	}

	r = enqueueAt(t, now, append([]string{"runs", "--prune"}, url...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "no run finished before 2026-10-02T02:00:00Z (retention 720h0m0s); nothing to remove") {
		t.Errorf("second prune: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A shorter retention reaches the recent run too.
	r = enqueueAt(t, now, append([]string{"runs", "--prune", "--older-than", "5d"}, url...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "removed recent: done, 1 key, 0 dead letters, 2 change items") ||
		!strings.Contains(r.stdout, "removed 1 run (1 key, 0 dead letters, 0 archived tasks, 0 other asynq tasks)") {
		t.Errorf("prune --older-than 5d: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestRunsPruneUsage(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"runs", "--dry-run"}, "--dry-run goes with --prune"},
		{[]string{"runs", "--older-than", "3d"}, "--older-than goes with --prune"},
		{[]string{"runs", "--prune", "--older-than", "0"}, "keeps runs for ever"},
		{[]string{"runs", "--prune", "--older-than", "3x"}, `retention "3x": want a period such as 30d, 72h or 90m`},
	} {
		r := enqueueAt(t, now, append(tt.args, "--redis-url", deadURL)...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// TestRunsPruneCluster prunes on a 3-master Redis Cluster: the runs (on slots of their own)
// go, nothing of them is left on any node, the recent one stays.
func TestRunsPruneCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client()
	t.Cleanup(func() { rdb.Close() })
	t0 := time.Date(2026, 10, 1, 2, 0, 0, 0, time.UTC)
	old := []string{"c-alpha", "c-beta", "c-gamma", "c-delta", "c-epsilon", "c-zeta"}
	for _, run := range old {
		finishedRun(t, rdb, run, t0, "K1", "K2", "BAD3")
	}
	finishedRun(t, rdb, "c-recent", t0.Add(29*24*time.Hour), "K1")
	now := t0.Add(31 * 24 * time.Hour)
	conn := []string{"--redis-cluster-addrs", strings.Join(cl.Addrs(), ",")}

	r := enqueueAt(t, now, append([]string{"runs", "--prune", "--dry-run"}, conn...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "dry run: would remove 6 runs (18 keys, 6 dead letters)") {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = enqueueAt(t, now, append([]string{"runs", "--prune"}, conn...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "removed 6 runs (18 keys, 6 dead letters, 0 archived tasks, 0 other asynq tasks)") {
		t.Fatalf("prune: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := runNames(t, now, conn...); len(got) != 1 || got[0] != "c-recent" {
		t.Errorf("runs after the prune: %v", got)
	}
	ctx := context.Background()
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		keys, err := n.Keys(ctx, "erpresync:{c-[a-z]*}:*").Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			if !strings.Contains(k, "{c-recent}") && !strings.HasSuffix(k, ":pruned") {
				t.Errorf("key left on %s: %s", n.Options().Addr, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
