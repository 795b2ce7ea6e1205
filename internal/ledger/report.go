package ledger

import (
	"maps"
	"time"

	"github.com/erpresync/erpresync/tasks"
)

// RunReport is a run's status as operators and producers read it: the ledger's RunStatus
// with the numbers derived from it (percent done, rate, ETA) and the batches waiting to be
// retried. It is the JSON of `enqueue status --json` and of the intake API's
// GET /v1/runs/{run}; both build it here, so the two never differ.
type RunReport struct {
	Run             string `json:"run"`
	State           string `json:"state"`
	ErpConnectionID int    `json:"erp_connection"`
	ActorType       string `json:"actor_type"`
	Source          string `json:"source,omitempty"`
	TotalKeys       int64  `json:"total_keys"`
	ResyncedKeys    int64  `json:"resynced_keys"`
	DeadKeys        int64  `json:"dead_keys"`
	PendingKeys     int64  `json:"pending_keys"`
	// RejectedKeys counts input records the producer skipped as invalid (not in TotalKeys).
	RejectedKeys int64 `json:"rejected_keys"`
	// Percent is (resynced + dead) / total, 0 to 100.
	Percent float64 `json:"percent"`
	Batches int64   `json:"batches"`
	Calls   int64   `json:"calls"`
	// KeysPerSecond is the keys done (resynced or dead) per second since the run started,
	// up to FinishedAt or now.
	KeysPerSecond float64 `json:"keys_per_second"`
	// ETASeconds is the pending keys at KeysPerSecond: 0 when nothing is pending, null
	// while the rate is unknown. ETA formats it for people.
	ETASeconds *float64 `json:"eta_seconds"`
	// Records counts changed CRM rows: kind ("added", "updated", "deleted", always all
	// three) → table → rows.
	Records      map[string]map[string]int64 `json:"records"`
	StartedAt    *time.Time                  `json:"started_at"`
	LastActivity *time.Time                  `json:"last_activity"`
	FinishedAt   *time.Time                  `json:"finished_at"`
	// RetryingBatches counts the run's batches waiting in asynq's retry set (SuperOffice
	// down, throttling, refused credentials, a systemic failure); RetryReason is the most
	// recent one's last error. Their keys are among PendingKeys. Filled by the caller
	// from RetryingBatches, not by NewRunReport.
	RetryingBatches int    `json:"retrying_batches"`
	RetryReason     string `json:"retry_reason,omitempty"`
	// Paused says, for a run with pending keys, which open circuit breakers hold it back:
	// "paused: SuperOffice unavailable since …, next probe in … (reason); tenant T". Filled
	// by the caller, which reads the breakers.
	Paused []string `json:"paused,omitempty"`
	// Repair is what `enqueue status --repair` found and did; absent without it.
	Repair *RepairResult `json:"repair,omitempty"`
}

// NewRunReport derives a report from st; now is the end of an active run's rate window.
// The numbers come from RunStatus.Progress, as the runs page's do.
func NewRunReport(st RunStatus, now time.Time) RunReport {
	j := RunReport{Run: st.Run, State: st.State, ErpConnectionID: st.ErpConnectionID, ActorType: st.ActorType.String(),
		Source: st.Source, TotalKeys: st.TotalKeys, ResyncedKeys: st.ResyncedKeys, DeadKeys: st.DeadKeys,
		PendingKeys: st.PendingKeys, RejectedKeys: st.RejectedKeys, Batches: st.Batches, Calls: st.Calls, Records: map[string]map[string]int64{},
		StartedAt: timePtr(st.StartedAt), LastActivity: timePtr(st.LastActivity), FinishedAt: timePtr(st.FinishedAt)}
	for _, k := range []string{tasks.KindAdded, tasks.KindUpdated, tasks.KindDeleted} {
		j.Records[k] = map[string]int64{}
		maps.Copy(j.Records[k], st.Records[k])
	}
	p := st.Progress(now)
	j.Percent, j.KeysPerSecond = p.Percent, p.KeysPerSecond
	if p.ETAKnown {
		eta := p.ETA.Seconds()
		j.ETASeconds = &eta
	}
	return j
}

// ETA is ETASeconds for people, as Progress.FormatETA writes it ("2m5s", "0s", "-").
func (r RunReport) ETA() string {
	p := Progress{ETAKnown: r.ETASeconds != nil}
	if p.ETAKnown {
		p.ETA = time.Duration(*r.ETASeconds * float64(time.Second))
	}
	return p.FormatETA()
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
