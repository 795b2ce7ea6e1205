package runreport

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

func TestNewRunReport(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)
	active := ledger.RunStatus{Run: "r", State: ledger.RunActive, TotalKeys: 1000, ResyncedKeys: 300, DeadKeys: 100, PendingKeys: 600,
		StartedAt: start, Records: map[string]map[string]int64{tasks.KindAdded: {"contact": 2}}}
	r := NewRunReport(active, start.Add(10*time.Second))
	if r.Percent != 40 || r.KeysPerSecond != 40 || r.ETASeconds == nil || *r.ETASeconds != 15 || r.FinishedAt != nil ||
		r.Records[tasks.KindAdded]["contact"] != 2 || r.Records[tasks.KindDeleted] == nil || r.ActorType != "Unknown" {
		t.Errorf("active: %+v", r)
	}
	done := active
	done.State, done.ResyncedKeys, done.PendingKeys, done.FinishedAt = ledger.RunDone, 900, 0, start.Add(20*time.Second)
	r = NewRunReport(done, start.Add(time.Hour)) // the rate ends when the run did
	if r.Percent != 100 || r.KeysPerSecond != 50 || *r.ETASeconds != 0 {
		t.Errorf("done: %+v", r)
	}
	b, _ := json.Marshal(NewRunReport(ledger.RunStatus{Run: "new", State: ledger.RunActive, PendingKeys: 5}, start))
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["eta_seconds"] != nil || m["started_at"] != nil || m["records"] == nil {
		t.Errorf("a run without a rate yet: %s", b)
	}
}

// TestPercentNeverShows100WhilePending: one key of 3,000 pending is 99.9%, not 100.0%.
func TestPercentNeverShows100WhilePending(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)
	for _, total := range []int64{2000, 3000, 10_000, 1_000_000} {
		st := ledger.RunStatus{Run: "r", State: ledger.RunActive, TotalKeys: total, ResyncedKeys: total - 1, PendingKeys: 1, StartedAt: start}
		r := NewRunReport(st, start.Add(time.Minute))
		if s := fmt.Sprintf("%.1f", r.Percent); s == "100.0" || r.Percent >= 100 {
			t.Errorf("%d of %d keys done: %v%% (%s%%), want below 100", total-1, total, r.Percent, s)
		}
		if !strings.HasPrefix(r.Line(), fmt.Sprintf("%d/%d keys done (99.9%%)", total-1, total)) {
			t.Errorf("line %q", r.Line())
		}
	}
	if p := Percent(1, 3); p != 33.3 {
		t.Errorf("Percent(1, 3) = %v, want 33.3", p)
	}
	if p := Percent(5, 5); p != 100 {
		t.Errorf("Percent(5, 5) = %v, want 100", p)
	}
	// More done than counted (a resubmission racing a status read): never above 100.
	if p := Percent(5, 3); p != 100 {
		t.Errorf("Percent(5, 3) = %v, want 100", p)
	}
}

// TestETANeverOverflows: a rate too slow to say anything gives no ETA, not a negative one.
func TestETANeverOverflows(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	st := ledger.RunStatus{Run: "slow", State: ledger.RunActive, TotalKeys: 1_000_001, ResyncedKeys: 1, PendingKeys: 1_000_000, StartedAt: start}
	r := NewRunReport(st, start.Add(24*time.Hour))
	if r.ETASeconds != nil {
		t.Errorf("ETA of 1 key a day with a million pending: %v s, want unknown", *r.ETASeconds)
	}
	if eta := r.ETA(); eta != "-" {
		t.Errorf("ETA() = %q, want -", eta)
	}
}

// TestReportETAWithPendingRetry: a run whose last key waits on a retry due in 7 minutes
// has an ETA of 7 minutes, not the 0s its rate implies, and says when the retry is due.
func TestReportETAWithPendingRetry(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)
	now := start.Add(5 * time.Minute)
	due := now.Add(7 * time.Minute)
	// 2,999 keys in 5 minutes: the one left would take a tenth of a second at that rate.
	st := ledger.RunStatus{Run: "r", State: ledger.RunActive, TotalKeys: 3000, ResyncedKeys: 2999, PendingKeys: 1, StartedAt: start}

	r := NewRunReport(st, now)
	r.AddRetrying(Retrying{Batches: 1, Keys: 1, LastError: "transient: HTTP 503", NextAt: due, LastAt: due}, now)
	if r.ETA() != "7m0s" || r.Waiting != "1 batch retries at 14:12:00 UTC (in 7m0s)" || r.NeedsOperator() {
		t.Errorf("one batch waiting: ETA %s, waiting %q, needs operator %v", r.ETA(), r.Waiting, r.NeedsOperator())
	}
	if want := "2999/3000 keys done (99.9%), 0 dead, 10.0 keys/s, ETA 7m0s; 1 batch retries at 14:12:00 UTC (in 7m0s)"; r.Line() != want {
		t.Errorf("line\n%q, want\n%q", r.Line(), want)
	}
	if r.NextRetryAt == nil || !r.NextRetryAt.Equal(due) || r.RetryingKeys != 1 {
		t.Errorf("report %+v", r)
	}

	// Keys left that do not wait: the rate's ETA, but never before the last retry is due.
	st.ResyncedKeys, st.PendingKeys = 1500, 1500 // 5 keys/s: 5 minutes for the rest
	r = NewRunReport(st, now)
	r.AddRetrying(Retrying{Batches: 2, Keys: 100, NextAt: now.Add(time.Minute), LastAt: due}, now)
	if r.ETA() != "7m0s" || r.Waiting != "" {
		t.Errorf("some keys waiting: ETA %s, waiting %q", r.ETA(), r.Waiting)
	}
	r = NewRunReport(st, now)
	r.AddRetrying(Retrying{Batches: 2, Keys: 100, NextAt: now.Add(time.Minute), LastAt: now.Add(2 * time.Minute)}, now)
	if r.ETA() != "5m0s" {
		t.Errorf("retries due before the rest is done: ETA %s, want the rate's 5m0s", r.ETA())
	}

	// Nothing done yet: no rate, but the retries say when at the earliest.
	st.ResyncedKeys, st.PendingKeys = 0, 3000
	r = NewRunReport(st, now)
	r.AddRetrying(Retrying{Batches: 30, Keys: 3000, AuthBatches: 30, AuthError: "auth: login refused", NextAt: now.Add(4 * time.Minute), LastAt: due}, now)
	if r.ETA() != "7m0s" || r.Waiting != "30 batches retry from 14:09:00 to 14:12:00 UTC (the first in 4m0s)" || !r.NeedsOperator() {
		t.Errorf("every batch held: ETA %s, waiting %q, needs operator %v", r.ETA(), r.Waiting, r.NeedsOperator())
	}
	if h := r.Held(); len(h) != 1 || !strings.Contains(h[0], "30 batches held for an auth failure") || !strings.Contains(h[0], "auth: login refused") {
		t.Errorf("held %q", h)
	}
	if !strings.Contains(r.Line(), "; held: 30 batches held for an auth failure") {
		t.Errorf("line %q does not say what holds the run", r.Line())
	}
}

// TestLastErrorClass: the class a batch's error carries survives asynq's LastErr.
func TestLastErrorClass(t *testing.T) {
	t.Parallel()
	for _, c := range []tasks.Class{tasks.ClassTransient, tasks.ClassThrottled, tasks.ClassAuth, tasks.ClassPermanent} {
		e := &tasks.Error{Class: c, Err: errors.New("HTTP 403 Forbidden: x: y")}
		if got := tasks.LastErrorClass(e.Error()); got != c {
			t.Errorf("LastErrorClass(%q) = %v, want %v", e.Error(), got, c)
		}
	}
	for _, msg := range []string{"", "dead letter: auth failure: x after 1 attempt (1 key)", "ledger: record: x", "business failure ERP_X"} {
		if got := tasks.LastErrorClass(msg); got != tasks.ClassNone {
			t.Errorf("LastErrorClass(%q) = %v, want none", msg, got)
		}
	}
}

// TestNeedsOperatorWithTruncatedScan: in an auth outage larger than the retry scan reads,
// the batches read decide, so status --wait still gives up on a run only an operator can move.
func TestNeedsOperatorWithTruncatedScan(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)
	st := ledger.RunStatus{Run: "big", State: ledger.RunActive, TotalKeys: 2_000_000, PendingKeys: 2_000_000, StartedAt: now.Add(-time.Hour)}
	seen := Retrying{Batches: 10_000, Keys: 1_000_000, AuthBatches: 10_000, AuthError: "auth: login refused", NextAt: now.Add(time.Minute), LastAt: now.Add(5 * time.Minute)}
	r := NewRunReport(st, now)
	r.AddRetrying(seen, now)
	if r.NeedsOperator() {
		t.Errorf("half the pending keys seen, scan complete: NeedsOperator, want not")
	}
	seen.Truncated = true
	r = NewRunReport(st, now)
	r.AddRetrying(seen, now)
	if !r.NeedsOperator() || !r.RetryScanTruncated {
		t.Errorf("scan truncated, every batch read held for auth: NeedsOperator false (%+v)", r)
	}
}
