package runreport

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/tenantstate"
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
	// Receiving is true while the run's producer is still submitting its input (the run is
	// active even with nothing pending; RunStatus.Receiving).
	Receiving bool `json:"receiving,omitempty"`
	// Percent is (resynced + dead) / total, 0 to 100, rounded down to a tenth (Percent):
	// never 100 while a key is pending.
	Percent float64 `json:"percent"`
	Batches int64   `json:"batches"`
	Calls   int64   `json:"calls"`
	// KeysPerSecond is the keys done (resynced or dead) per second since the run started,
	// up to FinishedAt or now.
	KeysPerSecond float64 `json:"keys_per_second"`
	// ETASeconds is the pending keys at KeysPerSecond, and at least until the last batch
	// waiting to be retried is due (AddRetrying): 0 when nothing is pending, null while
	// neither a rate nor a retry time says. ETA formats it for people.
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
	// RetryingKeys counts the keys of those batches; NextRetryAt and LastRetryAt are when
	// the first and the last of them are due again.
	RetryingKeys int64 `json:"retrying_keys"`
	// RetryScanTruncated is true when a retry set held more tasks than were read
	// (MaxRetryScan): the retry counts are then a part of the run's.
	RetryScanTruncated bool       `json:"retry_scan_truncated,omitempty"`
	NextRetryAt        *time.Time `json:"next_retry_at"`
	LastRetryAt        *time.Time `json:"last_retry_at"`
	// Waiting says, when every pending key waits on a retry, when they are due: "1 batch
	// retries at 14:07:05 UTC (in 6m40s)".
	Waiting string `json:"waiting,omitempty"`
	// AuthHeldBatches counts the waiting batches held for an auth failure (credentials or
	// a ticket SuperOffice refused, HTTP 401/403/421): they wait for an operator to fix the
	// worker's SuperOffice settings. AuthHeldError is the most recent one's error.
	AuthHeldBatches int    `json:"auth_held_batches"`
	AuthHeldError   string `json:"auth_held_error,omitempty"`
	// Paused says, for a run with pending keys, which open circuit breakers hold it back:
	// "paused: SuperOffice unavailable since …, next probe in … (reason); tenant T", and which
	// tenants' state does: "SuperOffice: tenant Cust12345 in OfflineMaintenance since …,
	// next check …" (tenantstate.PauseReason). Filled by Report.
	Paused []string `json:"paused,omitempty"`
	// Repair is what `enqueue status --repair` found and did; absent without it.
	Repair *ledger.RepairResult `json:"repair,omitempty"`
}

// NewRunReport derives a report from st; now is the end of an active run's rate window.
// The numbers come from RunStatus.Progress, as the runs page's do.
func NewRunReport(st ledger.RunStatus, now time.Time) RunReport {
	j := RunReport{Run: st.Run, State: st.State, ErpConnectionID: st.ErpConnectionID, ActorType: st.ActorType.String(),
		Source: st.Source, TotalKeys: st.TotalKeys, ResyncedKeys: st.ResyncedKeys, DeadKeys: st.DeadKeys,
		PendingKeys: st.PendingKeys, RejectedKeys: st.RejectedKeys, Receiving: st.Receiving, Batches: st.Batches, Calls: st.Calls, Records: map[string]map[string]int64{},
		StartedAt: timePtr(st.StartedAt), LastActivity: timePtr(st.LastActivity), FinishedAt: timePtr(st.FinishedAt)}
	for _, k := range []string{tasks.KindAdded, tasks.KindUpdated, tasks.KindDeleted} {
		j.Records[k] = map[string]int64{}
		maps.Copy(j.Records[k], st.Records[k])
	}
	p := ProgressOf(st, now)
	j.Percent, j.KeysPerSecond = p.Percent, p.KeysPerSecond
	if p.ETAKnown {
		eta := p.ETA.Seconds()
		j.ETASeconds = &eta
	}
	return j
}

// Report is run st's whole report at now: NewRunReport and, while keys are pending, the
// run's batches waiting in queue's retry set ("" reads every queue's; AddRetrying), the
// open circuit breakers that hold it (flow.Pauses) and its tenant's pause while SuperOffice
// says the tenant is not running (tenantstate.Pauses). `enqueue status`, the intake API and
// `worker demo` all build it here. st is a run of the implicit tenant; TenantReport is
// Report for another's.
func Report(ctx context.Context, rdb redis.UniversalClient, insp *asynq.Inspector, queue string, st ledger.RunStatus, now time.Time) (RunReport, error) {
	return TenantReport(ctx, rdb, insp, queue, "", st, now)
}

// TenantReport is Report of run st of tenant ("" the implicit tenant): only that tenant's
// batches count as the run's in the retry set.
func TenantReport(ctx context.Context, rdb redis.UniversalClient, insp *asynq.Inspector, queue, tenant string, st ledger.RunStatus, now time.Time) (RunReport, error) {
	r := NewRunReport(st, now)
	if st.PendingKeys == 0 {
		return r, nil
	}
	rt, err := RetryingBatches(insp, queue, tasks.RunKey(tenant, st.Run))
	if err != nil {
		return r, fmt.Errorf("retry set: %w", err)
	}
	r.AddRetrying(rt, now)
	if r.Paused, err = flow.Pauses(ctx, rdb, tenant, st.ErpConnectionID, now); err != nil {
		return r, fmt.Errorf("circuit breakers: %w", err)
	}
	states, err := tenantstate.TenantPauses(ctx, rdb, tenant) // never another tenant's
	if err != nil {
		return r, err
	}
	for _, p := range states {
		r.Paused = append(r.Paused, p.Reason)
	}
	return r, nil
}

// AddRetrying fills in the run's batches waiting in the retry set (RetryingBatches) and
// what they mean for the ETA (Progress.WithRetrying).
func (r *RunReport) AddRetrying(rt Retrying, now time.Time) {
	r.RetryingBatches, r.RetryReason, r.RetryingKeys, r.RetryScanTruncated = rt.Batches, rt.LastError, rt.Keys, rt.Truncated
	r.NextRetryAt, r.LastRetryAt = timePtr(rt.NextAt), timePtr(rt.LastAt)
	r.AuthHeldBatches, r.AuthHeldError = rt.AuthBatches, rt.AuthError
	p := r.progress().WithRetrying(rt, now)
	r.setETA(p)
	r.Waiting = p.RetryNote(now)
}

// progress is the report's numbers as a Progress again.
func (r RunReport) progress() Progress {
	p := Progress{Done: r.ResyncedKeys + r.DeadKeys, Pending: r.PendingKeys, Percent: r.Percent,
		KeysPerSecond: r.KeysPerSecond, ETAKnown: r.ETASeconds != nil}
	if p.ETAKnown {
		p.ETA = time.Duration(*r.ETASeconds * float64(time.Second))
	}
	return p
}

func (r *RunReport) setETA(p Progress) {
	r.ETASeconds = nil
	if p.ETAKnown {
		eta := p.ETA.Seconds()
		r.ETASeconds = &eta
	}
}

// ETA is ETASeconds for people, as Progress.FormatETA writes it ("2m5s", "0s", "-").
func (r RunReport) ETA() string { return r.progress().FormatETA() }

// NeedsOperator reports whether the run cannot move until an operator acts: every
// pending key waits on a retry, and every waiting batch is held for an auth failure,
// which the next retry meets again until the SuperOffice settings are fixed. When the
// retry set was too large to read whole, the batches read decide.
func (r RunReport) NeedsOperator() bool {
	return r.PendingKeys > 0 && (r.RetryingKeys >= r.PendingKeys || r.RetryScanTruncated) &&
		r.AuthHeldBatches > 0 && r.AuthHeldBatches == r.RetryingBatches
}

// Held says what holds the run's batches back, one line each: the auth hold ("2 batches
// held for an auth failure, until the SuperOffice login settings are fixed: auth: …") and
// the open circuit breakers (Paused).
func (r RunReport) Held() []string {
	var out []string
	if r.PendingKeys > 0 && r.AuthHeldBatches > 0 {
		out = append(out, fmt.Sprintf("%s held for an auth failure, until the worker's SuperOffice login settings are fixed: %s",
			batches(r.AuthHeldBatches), erpsync.Truncate(oneLine(r.AuthHeldError), 300)))
	}
	return append(out, r.Paused...)
}

// Line is the run's progress in one line, as `enqueue status --wait` and `worker demo`
// print it: "1260/3000 keys done (42.0%), 2 dead, 35.2 keys/s, ETA 1m3s", then when the
// pending keys wait on retries and what holds them: "; 1 batch retries at 14:07:05 UTC
// (in 6m40s); held: …".
func (r RunReport) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d keys done (%.1f%%), %d dead, %.1f keys/s, ETA %s",
		r.ResyncedKeys+r.DeadKeys, r.TotalKeys, r.Percent, r.DeadKeys, r.KeysPerSecond, r.ETA())
	if r.Receiving {
		b.WriteString("; its producer is still submitting keys")
	}
	if r.Waiting != "" {
		b.WriteString("; " + r.Waiting)
	}
	for _, h := range r.Held() {
		b.WriteString("; held: " + strings.TrimPrefix(h, "paused: "))
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
