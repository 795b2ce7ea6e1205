package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestClusterPipeline runs the whole pipeline on a real three-master Redis Cluster, as
// REDIS_CLUSTER_ADDRS configures it: producer batches and trickle keys are enqueued through
// a cluster client, the worker (asynq server, aggregator, handler, ledger scripts,
// reconciliation, queue metrics) runs on asynq.RedisClusterClientOpt, and the ledger's
// readers and Requeue work on the cluster. Nothing may log a cluster error (CROSSSLOT, a
// script touching a key of another node, ...).
func TestClusterPipeline(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	cluster := redistest.StartCluster(t, 3)
	sim := startSim(t)
	keys := testKeys("K", 300)
	poison := keys[137]
	sim.SetPoison(poison)
	resyncer, _ := newClient(t, sim)

	rdb := cluster.Client()
	defer rdb.Close()
	ctx := context.Background()
	lg := ledger.NewLedger(rdb)

	const run = "cluster"
	const actor = erpsync.ActorCustomer
	submitTo(t, rdb, run, actor, keys, 25)
	trickleKeys := testKeys("T", 5)
	producer := asynq.NewClientFromRedisClient(rdb)
	for _, k := range trickleKeys {
		task, err := tasks.NewTrickleTask(testConn, actor, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := producer.EnqueueContext(ctx, task); err != nil {
			t.Fatalf("enqueue trickle key %s: %v", k, err)
		}
	}

	var logs lockedWriter
	logs.mu, logs.w = &sync.Mutex{}, &bytes.Buffer{}
	a := inProcess(t, cluster.Opt(), resyncer, func(c *workerSetup) {
		c.BusinessRetries = 1 // the poison key is dead after two attempts: a shorter test
		c.Logger = zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs)).Level(zerolog.WarnLevel)
	})

	st := waitDone(t, rdb, run, time.Minute)
	t.Logf("batch run done %s after start", time.Since(begin).Round(time.Millisecond))
	good := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == poison })
	if st.TotalKeys != int64(len(keys)) || st.ResyncedKeys != int64(len(good)) || st.DeadKeys != 1 || st.State != ledger.RunDoneWithDead {
		t.Fatalf("ledger: %+v, want %d resynced and 1 dead of %d", st, len(good), len(keys))
	}
	snap := sim.Counts()
	for _, k := range good {
		if snap.Resynced[k] < 1 {
			t.Errorf("key %s never resynced", k)
		}
	}
	if n := snap.Resynced[poison]; n != 0 {
		t.Errorf("poison key %s resynced %d times", poison, n)
	}
	want := expectedRecords(actor, good)
	if !sameRecords(st.Records, want) {
		t.Errorf("ledger records %v, want %v", st.Records, want)
	}

	// Dead letters, by run and across runs (the latter reads the cross-slot run index).
	for _, r := range []string{run, ""} {
		dead, err := lg.DeadLetters(ctx, r)
		if err != nil {
			t.Fatalf("DeadLetters(%q): %v", r, err)
		}
		if len(dead) != 1 || dead[0].Key != poison || dead[0].Run != run || dead[0].ErrorCode != netserversim.DefaultErrorCode {
			t.Fatalf("DeadLetters(%q) = %+v, want the poison key %s alone", r, dead, poison)
		}
	}

	// Changes: one item per changed row, all of this run, matching the record counts.
	var items int64
	if err := lg.Changes(ctx, run, func(it tasks.ChangeItem) error {
		if it.Run != run {
			return fmt.Errorf("change item of run %q", it.Run)
		}
		items++
		return nil
	}); err != nil {
		t.Fatalf("Changes: %v", err)
	}
	var rows int64
	for _, tables := range st.Records {
		for _, n := range tables {
			rows += n
		}
	}
	if items == 0 || items != rows {
		t.Errorf("Changes gave %d items, the records count %d rows", items, rows)
	}

	// The trickle keys were grouped by asynq on the cluster and aggregated into a run of
	// their own; Runs finds it next to the batch run.
	trickleRun := tasks.TrickleRun(time.Now(), testConn, actor)
	var runs []ledger.RunStatus
	waitFor(t, time.Minute, func() (bool, string) {
		var err error
		if runs, err = lg.Runs(ctx, 0); err != nil {
			return false, "Runs: " + err.Error()
		}
		for _, r := range runs {
			if r.Source == "trickle" && r.TotalKeys == int64(len(trickleKeys)) && r.PendingKeys == 0 {
				trickleRun = r.Run
				return true, ""
			}
		}
		return false, fmt.Sprintf("no finished trickle run of %d keys in %+v", len(trickleKeys), runs)
	})
	t.Logf("trickle run done %s after start", time.Since(begin).Round(time.Millisecond))
	names := map[string]ledger.RunStatus{}
	for _, r := range runs {
		names[r.Run] = r
	}
	if len(runs) != 2 || names[run].Run == "" || names[trickleRun].Run == "" {
		t.Fatalf("Runs = %+v, want %s and %s", runs, run, trickleRun)
	}
	if tr := names[trickleRun]; tr.ResyncedKeys != int64(len(trickleKeys)) || !sameRecords(tr.Records, expectedRecords(actor, trickleKeys)) {
		t.Errorf("trickle run %+v, want %d keys resynced once each", tr, len(trickleKeys))
	}
	for _, k := range trickleKeys {
		if sim.ResyncCount(k) < 1 {
			t.Errorf("trickle key %s never resynced", k)
		}
	}

	// asynq's inspector on the cluster: the poison batch is archived, and the queue
	// metrics (Queues + GetQueueInfo per queue) scrape without error.
	insp := asynq.NewInspector(cluster.Opt())
	defer insp.Close()
	archived, err := insp.ListArchivedTasks(tasks.DefaultQueue)
	if err != nil {
		t.Fatalf("ListArchivedTasks: %v", err)
	}
	if len(archived) != 1 || !strings.Contains(archived[0].LastErr, netserversim.DefaultErrorCode) {
		t.Fatalf("archived tasks %+v, want the poison batch alone", archived)
	}
	if up := gaugeValue(t, a, "erpresync_queue_scrape_ok"); up != 1 {
		t.Errorf("erpresync_queue_scrape_ok = %v, want 1", up)
	}
	// The server's heartbeat (what the dashboard's servers page reads) is on the cluster.
	servers, err := insp.Servers()
	if err != nil {
		t.Fatalf("Servers: %v", err)
	}
	if len(servers) != 1 || servers[0].Queues[tasks.DefaultQueue] != 1 {
		t.Errorf("Servers = %+v, want the one in-process worker on queue %s", servers, tasks.DefaultQueue)
	}

	// Requeue on the cluster (outbox script, enqueue, archived task deleted): with the key
	// healed it is resynced and the run finishes clean.
	sim.SetPoison()
	res, err := lg.Requeue(ctx, producer, insp, ledger.DeadFilter{Run: run})
	if err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	if res.Keys != 1 || len(res.Batches) != 1 || res.Archived != 1 {
		t.Fatalf("Requeue = %+v, want 1 key, 1 batch, 1 archived task deleted", res)
	}
	waitFor(t, time.Minute, func() (bool, string) {
		st = runStatus(t, rdb, run)
		return st.State == ledger.RunDone, fmt.Sprintf("%+v", st)
	})
	if st.ResyncedKeys != int64(len(keys)) || !sameRecords(st.Records, expectedRecords(actor, keys)) {
		t.Errorf("after requeue: %+v, want every key resynced once", st)
	}
	t.Logf("requeued key done %s after start", time.Since(begin).Round(time.Millisecond))

	// The reconciliation loop (ReconcileEvery 1 s) has run on the cluster several times by
	// now; look for cluster errors anywhere in the worker's log.
	out := logs.String()
	for _, bad := range []string{"CROSSSLOT", "non local key", "MOVED", "ASK ", "CLUSTERDOWN", "reconcile archived tasks"} {
		if strings.Contains(out, bad) {
			t.Errorf("worker log mentions %q:\n%s", bad, out)
		}
	}
}

// gaugeValue gathers the app's registry and returns the value of an unlabelled gauge.
func gaugeValue(t testing.TB, a *app, name string) float64 {
	t.Helper()
	mfs, err := a.deps.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
