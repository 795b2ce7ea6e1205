package runreport_test

import (
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
)

func TestProgress(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)
	now := start.Add(100 * time.Second)
	tests := []struct {
		name string
		st   ledger.RunStatus
		want runreport.Progress
		eta  string
	}{
		{"no keys yet", ledger.RunStatus{}, runreport.Progress{ETAKnown: true}, "0s"},
		{"active, half done",
			ledger.RunStatus{TotalKeys: 1000, ResyncedKeys: 450, DeadKeys: 50, PendingKeys: 500, StartedAt: start},
			runreport.Progress{Done: 500, Pending: 500, Percent: 50, KeysPerSecond: 5, ETA: 100 * time.Second, ETAKnown: true}, "1m40s"},
		{"active, nothing done: no rate, no ETA",
			ledger.RunStatus{TotalKeys: 10, PendingKeys: 10, StartedAt: start},
			runreport.Progress{Pending: 10}, "-"},
		{"finished: the rate stops at FinishedAt",
			ledger.RunStatus{TotalKeys: 200, ResyncedKeys: 200, StartedAt: start, FinishedAt: start.Add(40 * time.Second)},
			runreport.Progress{Done: 200, Percent: 100, KeysPerSecond: 5, ETAKnown: true}, "0s"},
		{"not started: no rate",
			ledger.RunStatus{TotalKeys: 3, PendingKeys: 3},
			runreport.Progress{Pending: 3}, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runreport.ProgressOf(tt.st, now)
			if got != tt.want {
				t.Errorf("Progress = %+v, want %+v", got, tt.want)
			}
			if eta := got.FormatETA(); eta != tt.eta {
				t.Errorf("FormatETA = %q, want %q", eta, tt.eta)
			}
		})
	}
}
