package ledger

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/erpresync/erpresync/tasks"
)

func TestNewRunReport(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)
	active := RunStatus{Run: "r", State: RunActive, TotalKeys: 1000, ResyncedKeys: 300, DeadKeys: 100, PendingKeys: 600,
		StartedAt: start, Records: map[string]map[string]int64{tasks.KindAdded: {"contact": 2}}}
	r := NewRunReport(active, start.Add(10*time.Second))
	if r.Percent != 40 || r.KeysPerSecond != 40 || r.ETASeconds == nil || *r.ETASeconds != 15 || r.FinishedAt != nil ||
		r.Records[tasks.KindAdded]["contact"] != 2 || r.Records[tasks.KindDeleted] == nil || r.ActorType != "Unknown" {
		t.Errorf("active: %+v", r)
	}
	done := active
	done.State, done.ResyncedKeys, done.PendingKeys, done.FinishedAt = RunDone, 900, 0, start.Add(20*time.Second)
	r = NewRunReport(done, start.Add(time.Hour)) // the rate ends when the run did
	if r.Percent != 100 || r.KeysPerSecond != 50 || *r.ETASeconds != 0 {
		t.Errorf("done: %+v", r)
	}
	b, _ := json.Marshal(NewRunReport(RunStatus{Run: "new", State: RunActive, PendingKeys: 5}, start))
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["eta_seconds"] != nil || m["started_at"] != nil || m["records"] == nil {
		t.Errorf("a run without a rate yet: %s", b)
	}
}
