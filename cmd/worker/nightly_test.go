package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/nightly"
	"github.com/erpresync/erpresync/internal/redistest"
)

// TestNightlyScheduleInWorker wires NIGHTLY_CONFIG into a running worker: the schedule
// fires, the export file becomes tonight's run, and every key in it is resynced.
func TestNightlyScheduleInWorker(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	sim := startSim(t)
	client, _ := newClient(t, sim)
	dir := t.TempDir()
	keys := testKeys("N", 250)
	if err := os.WriteFile(filepath.Join(dir, "customers-2026-11-27.txt"), []byte(strings.Join(keys, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"entries": [{"name": "customers", "cron": "@every 1s", "erp_connection": %d, "actor_type": "Customer", "source": %q}]}`,
		testConn, filepath.Join(dir, "customers-*.txt"))
	var logs lockedWriter
	logs.mu, logs.w = &sync.Mutex{}, &bytes.Buffer{}
	log := zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs)).Level(zerolog.WarnLevel)
	hook, err := nightlySetup(values{"NIGHTLY_CONFIG": cfg}, log)
	if err != nil || hook == nil {
		t.Fatalf("nightlySetup: %v", err)
	}
	a := inProcess(t, db.Opt(), client, func(c *workerSetup) { c.extra, c.Logger = hook, log })
	rdb := db.TestClient(t)
	run := nightly.RunName("customers", time.Now())
	st := waitDone(t, rdb, run, time.Minute)
	if st.ResyncedKeys != 250 || st.TotalKeys != 250 {
		t.Fatalf("nightly run: %+v", st)
	}
	for _, k := range keys {
		if sim.ResyncCount(k) < 1 {
			t.Fatalf("key %s not resynced", k)
		}
	}
	if snap := sim.Counts(); snap.ResyncAll != 0 {
		t.Fatalf("%d resync-all calls", snap.ResyncAll)
	}
	a.shutdown() // the scheduler stops first, and cleanly
	if out := logs.String(); strings.Contains(out, `"level":"error"`) {
		t.Fatalf("errors logged:\n%s", out)
	}
}

func TestNightlyConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	_, err := nightlySetup(values{"NIGHTLY_CONFIG": `{"entries": [{"name": "x", "cron": "not a cron", "erp_connection": 1, "actor_type": "Customer", "source": "/tmp/x"}]}`}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "NIGHTLY_CONFIG") || !strings.Contains(err.Error(), "cron") {
		t.Fatalf("err = %v, want it to name NIGHTLY_CONFIG and the cron spec", err)
	}
}

func TestNightlyQueueIsStable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		queues map[string]int
		want   string
	}{
		{map[string]int{"erpresync": 1}, "erpresync"},
		{map[string]int{"low": 1, "high": 5, "mid": 3}, "high"},
		{map[string]int{"b": 2, "a": 2, "c": 1}, "a"},
		{nil, "erpresync"},
	}
	for _, tt := range tests {
		for range 20 { // map order varies from one iteration to the next
			if got := nightlyQueue(tt.queues); got != tt.want {
				t.Fatalf("nightlyQueue(%v) = %q, want %q", tt.queues, got, tt.want)
			}
		}
	}
}
