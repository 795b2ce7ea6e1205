package main

import (
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

// TestSentinelWorker runs the worker process with REDIS_URL=redis-sentinel://:pw@…: it
// finds the master through the sentinel, authenticates to both with the URL's password, and
// finishes a run.
func TestSentinelWorker(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t, "s3ntinel-pw")
	db := s.Master.NewDB(t)
	sim := startSim(t)
	keys := testKeys("V", 200)
	const run = "sentinel"
	submit(t, db, run, erpsync.ActorSupplier, keys, 50)
	env := workerEnv(db, sim)
	env["REDIS_URL"] = s.URL(db.Index)
	startWorker(t, env)
	rdb := db.TestClient(t)
	assertResyncedOnce(t, sim, waitDone(t, rdb, run, time.Minute), erpsync.ActorSupplier, keys)
}
