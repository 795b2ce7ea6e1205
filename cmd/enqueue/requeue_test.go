package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

// enqueueEnv is enqueue with environment variables.
func enqueueEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] },
		progressEvery: time.Hour, now: time.Now}
	code := c.run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

// deadOf lists the run's dead letters through the command.
func deadOf(t *testing.T, url, run string) []tasks.DeadLetter {
	t.Helper()
	r := enqueue(t, "", "dead", "list", "--run", run, "--json", "--redis-url", url)
	var dls []tasks.DeadLetter
	if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil || r.code != 0 {
		t.Fatalf("dead list: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return dls
}

// TestRequeueGoesBackToTheRunsQueue: the dead letters of a run submitted with --queue demo,
// requeued as the runs page says (no --queue), go back to demo, not to the default queue that
// production workers serve; a --queue or ENQUEUE_QUEUE naming another queue is refused before
// anything moves.
func TestRequeueGoesBackToTheRunsQueue(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	keys := writeKeys(t, "k.txt", "G1\nBAD1\n")
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", "demo-rq",
		"--batch-size", "1", "--redis-url", url, "--queue", "demo")
	if r.code != 0 {
		t.Fatalf("submit: exit %d\n%s", r.code, r.stderr)
	}
	startWorker(t, db, "demo")
	if r = enqueue(t, "", "status", "demo-rq", "--wait", "--interval", "20ms", "--redis-url", url); r.code != exitBad {
		t.Fatalf("status --wait: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before := deadOf(t, url, "demo-rq")
	if len(before) != 1 || before[0].Queue != "demo" {
		t.Fatalf("dead letters %+v, want BAD1 from queue demo", before)
	}

	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--queue", "erpresync"}, "enqueue: --queue erpresync: run demo-rq ran in queue demo; a requeue sends each batch back to the queue it ran in: leave out --queue"},
		{map[string]string{"ENQUEUE_QUEUE": "erpresync"}, nil, "enqueue: ENQUEUE_QUEUE=erpresync: run demo-rq ran in queue demo; a requeue sends each batch back to the queue it ran in: leave out ENQUEUE_QUEUE"},
	} {
		r = enqueueEnv(t, c.env, append([]string{"dead", "requeue", "--run", "demo-rq", "--redis-url", url}, c.args...)...)
		if r.code != exitUsage || strings.TrimSpace(r.stderr) != c.want {
			t.Errorf("requeue %v %v: exit %d\n%s%s\nwant %s", c.env, c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
	if after := deadOf(t, url, "demo-rq"); len(after) != 1 || after[0].BatchID != before[0].BatchID {
		t.Fatalf("a refused requeue moved dead letters: %+v", after)
	}

	r = enqueue(t, "", "dead", "requeue", "--run", "demo-rq", "--redis-url", url, "--queue", "demo")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "requeued 1 key in 1 batch") {
		t.Fatalf("requeue --queue demo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dl := waitForDead(t, url, "demo-rq", before[0].BatchID)
	r = enqueue(t, "", "dead", "requeue", "--run", "demo-rq", "--redis-url", url)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "requeued 1 key in 1 batch") {
		t.Fatalf("requeue: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The demo worker takes it and it dies again, in demo; nothing waits in the default queue.
	dl = waitForDead(t, url, "demo-rq", dl.BatchID)
	if dl.Queue != "demo" || !strings.HasPrefix(dl.BatchID, "demo-rq:r") {
		t.Errorf("requeued dead letter %+v, want one of a requeued batch in queue demo", dl)
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if qs, err := insp.Queues(); err != nil || slices.Contains(qs, tasks.DefaultQueue) {
		t.Errorf("queues %v, %v; want none named %s", qs, err, tasks.DefaultQueue)
	}
}

// waitForDead waits until the run has one dead letter of a batch other than old, and returns it.
func waitForDead(t *testing.T, url, run, old string) tasks.DeadLetter {
	t.Helper()
	var dls []tasks.DeadLetter
	testwait.Until(t, "a new dead letter of "+run, 20*time.Second, func() bool {
		dls = deadOf(t, url, run)
		return len(dls) == 1 && dls[0].BatchID != old
	})
	return dls[0]
}
