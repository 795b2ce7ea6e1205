package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

// refusingSO is a SuperOffice that refuses the worker's login for every call.
type refusingSO struct{}

func (refusingSO) ForceResyncExternal(context.Context, int, erpsync.ActorType, []string) (*erpsync.Result, error) {
	return nil, fmt.Errorf("password login for DEMO: %w", erpsync.ErrLoginRefused)
}

// TestStatusWaitGivesUpOnAuthHold: a run whose every batch is held for a refused login
// never finishes by itself. `status` says what holds it and when the batches are due
// again; `status --wait` prints the hold on its progress line and, once nothing has moved
// for --held-timeout, exits 3 saying what to fix instead of waiting for ever.
func TestStatusWaitGivesUpOnAuthHold(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	keys := writeKeys(t, "k.txt", "H1\nH2\nH3\n")
	rdb := db.TestClient(t)
	h, err := tasks.NewHandler(tasks.HandlerConfig{Resyncer: refusingSO{}, Ledger: ledger.NewLedger(rdb), Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	serveHeld(t, db, keys, h, tasks.IsFailure, func(_ int, err error, _ *asynq.Task) time.Duration { return tasks.RetryAfter(err) })

	r := enqueue(t, "", "status", "held", "--redis-url", url, "--queue", "held")
	wantContains(t, "status", r.stdout,
		"keys              3 total: 0 resynced, 0 dead, 3 pending (0.0% done)",
		"waiting to retry  2 batches (3 keys), next due 20",
		"waiting           every pending key waits on a retry: 2 batches retr",
		"held              2 batches held for an auth failure, until the worker's SuperOffice login settings are fixed: auth: password login for DEMO: ",
	)
	if !strings.Contains(r.stdout, "ETA 4m5") && !strings.Contains(r.stdout, "ETA 5m0s") {
		t.Errorf("status: the ETA is not the auth hold's 5 minutes:\n%s", r.stdout)
	}

	r = enqueueWithDeadline(t, "", "status", "held", "--wait", "--interval", "20ms", "--held-timeout", "100ms", "--json", "--redis-url", url, "--queue", "held")
	if r.code != exitHeld {
		t.Errorf("status --wait: exit %d, want %d\n%s", r.code, exitHeld, r.stderr)
	}
	wantContains(t, "status --wait: stderr", r.stderr,
		"enqueue: held: 0/3 keys done (0.0%), 0 dead, 0.0 keys/s, ETA ",
		"; held: 2 batches held for an auth failure, until the worker's SuperOffice login settings are fixed: auth: ",
		"enqueue: gave up waiting for held: every pending key is held for an auth failure and no key has finished for 100ms",
	)
	var rep runreport.RunReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.AuthHeldBatches != 2 || rep.RetryingKeys != 3 || !rep.NeedsOperator() || rep.NextRetryAt == nil || rep.ETASeconds == nil || *rep.ETASeconds < 240 {
		t.Errorf("status --wait --json: %+v", rep)
	}

	// --held-timeout 0 waits for ever: it still waits, polling, when it is interrupted after
	// its second progress line.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out strings.Builder
	errw := &afterLines{lines: 2, then: cancel}
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: errw, getenv: func(string) string { return "" }, progressEvery: 0, now: time.Now}
	code := c.run(ctx, []string{"status", "held", "--wait", "--interval", "20ms", "--held-timeout", "0", "--redis-url", url, "--queue", "held"})
	if code != exitUsage || strings.Contains(errw.String(), "gave up") || strings.Count(errw.String(), "enqueue: held: 0/3 keys done") < 2 {
		t.Errorf("--held-timeout 0: exit %d, want 2 (interrupted while waiting)\n%s", code, errw.String())
	}
}

// afterLines is a stderr that calls then (once) when it has seen lines lines.
type afterLines struct {
	strings.Builder
	lines int
	then  func()
	once  sync.Once
}

func (w *afterLines) Write(p []byte) (int, error) {
	n, err := w.Builder.Write(p)
	if strings.Count(w.String(), "\n") >= w.lines {
		w.once.Do(w.then)
	}
	return n, err
}

// serveHeld submits the keys in file keys (three, in two batches) as run "held" on queue
// "held", serves the queue with h under isFailure (nil: every error) and retryDelay, and
// waits until both batches are in asynq's retry set. The server stops when the test ends.
func serveHeld(t *testing.T, db *redistest.DB, keys string, h asynq.Handler, isFailure func(error) bool, retryDelay asynq.RetryDelayFunc) {
	t.Helper()
	if r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", "held",
		"--batch-size", "2", "--redis-url", db.URL(), "--queue", "held"); r.code != 0 {
		t.Fatalf("submit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	srv := asynq.NewServer(db.Opt(), asynq.Config{Queues: map[string]int{"held": 1}, Concurrency: 2, LogLevel: asynq.FatalLevel,
		IsFailure: isFailure, RetryDelayFunc: retryDelay})
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	testwait.For(t, "the batches in the retry set", 30*time.Second, func() (bool, error) {
		qi, err := insp.GetQueueInfo("held")
		if err != nil {
			return false, err
		}
		return qi.Retry == 2, fmt.Errorf("%+v", qi)
	})
}
