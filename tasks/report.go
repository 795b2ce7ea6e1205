package tasks

import (
	"errors"
	"maps"
	"time"

	"github.com/hibiken/asynq"
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
	// Percent is (resynced + dead) / total, 0 to 100.
	Percent float64 `json:"percent"`
	Batches int64   `json:"batches"`
	Calls   int64   `json:"calls"`
	// KeysPerSecond is the keys done (resynced or dead) per second since the run started,
	// up to FinishedAt or now.
	KeysPerSecond float64 `json:"keys_per_second"`
	// ETASeconds is the pending keys at KeysPerSecond: 0 when nothing is pending, null
	// while the rate is unknown.
	ETASeconds *float64 `json:"eta_seconds"`
	// Records counts changed CRM rows: kind ("added", "updated", "deleted", always all
	// three) → table → rows.
	Records      map[string]map[string]int64 `json:"records"`
	StartedAt    *time.Time                  `json:"started_at"`
	LastActivity *time.Time                  `json:"last_activity"`
	FinishedAt   *time.Time                  `json:"finished_at"`
	// RetryingBatches counts the run's batches waiting in asynq's retry set (SuperOffice
	// down, throttling, refused credentials, a systemic failure); RetryReason is the most
	// recent one's last error. Their keys are among PendingKeys. Filled by
	// RetryingBatches, not by NewRunReport.
	RetryingBatches int    `json:"retrying_batches"`
	RetryReason     string `json:"retry_reason,omitempty"`
}

// NewRunReport derives a report from st; now is the end of an active run's rate window.
func NewRunReport(st RunStatus, now time.Time) RunReport {
	j := RunReport{Run: st.Run, State: st.State, ErpConnectionID: st.ErpConnectionID, ActorType: st.ActorType.String(),
		Source: st.Source, TotalKeys: st.TotalKeys, ResyncedKeys: st.ResyncedKeys, DeadKeys: st.DeadKeys,
		PendingKeys: st.PendingKeys, Batches: st.Batches, Calls: st.Calls, Records: map[string]map[string]int64{},
		StartedAt: timePtr(st.StartedAt), LastActivity: timePtr(st.LastActivity), FinishedAt: timePtr(st.FinishedAt)}
	for _, k := range []string{KindAdded, KindUpdated, KindDeleted} {
		j.Records[k] = map[string]int64{}
		maps.Copy(j.Records[k], st.Records[k])
	}
	if st.TotalKeys > 0 {
		j.Percent = float64(st.ResyncedKeys+st.DeadKeys) * 100 / float64(st.TotalKeys)
	}
	end := now
	if !st.FinishedAt.IsZero() {
		end = st.FinishedAt
	}
	if d := end.Sub(st.StartedAt).Seconds(); d > 0 && !st.StartedAt.IsZero() {
		j.KeysPerSecond = float64(st.ResyncedKeys+st.DeadKeys) / d
	}
	if st.PendingKeys == 0 {
		zero := 0.0
		j.ETASeconds = &zero
	} else if j.KeysPerSecond > 0 {
		eta := float64(st.PendingKeys) / j.KeysPerSecond
		j.ETASeconds = &eta
	}
	return j
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// MaxRetryScan bounds how many retry-set tasks RetryingBatches reads to find a run's
// held batches.
const MaxRetryScan = 10000

// RetryingBatches counts run's batches in queue's retry set and returns the newest one's
// last error, reading at most MaxRetryScan tasks. A queue asynq does not know has none.
// (asynq's Inspector takes no context.)
func RetryingBatches(insp *asynq.Inspector, queue, run string) (n int, reason string, err error) {
	var newest time.Time
	const page = 500
	for p := 1; (p-1)*page < MaxRetryScan; p++ {
		list, err := insp.ListRetryTasks(queue, asynq.Page(p), asynq.PageSize(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return 0, "", nil
		}
		if err != nil {
			return 0, "", err
		}
		for _, ti := range list {
			b, err := ParseBatch(ti.Payload)
			if err != nil || b.Run != run {
				continue
			}
			n++
			if ti.LastFailedAt.After(newest) {
				newest, reason = ti.LastFailedAt, ti.LastErr
			}
		}
		if len(list) < page {
			break
		}
	}
	return n, reason, nil
}
