package runreport

import (
	"fmt"
	"math"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
)

// Progress is what a run's counters imply at one moment: how much is done, how fast, and
// how long the rest will take. `enqueue status`, the intake API, the runs page and
// `worker demo` all show it.
type Progress struct {
	// Done counts keys that need no more work: resynced + dead.
	Done int64
	// Pending counts the keys still to do.
	Pending int64
	// Percent is Done as a share of TotalKeys, 0–100, rounded down to a tenth: 99.9 while
	// a key of a large run is pending, 100 only once none is; 0 for a run without keys.
	Percent float64
	// KeysPerSecond is Done divided by the time from StartedAt to FinishedAt (to now while
	// the run is active); 0 before the run has started or when no time has passed.
	KeysPerSecond float64
	// ETA is how long the pending keys will take at KeysPerSecond, and at least until the
	// last batch waiting to be retried is due (WithRetrying): 0 once nothing is pending.
	// ETAKnown is false while nothing is done yet and no retry time says more.
	ETA      time.Duration
	ETAKnown bool
	// Retrying is the run's batches waiting in asynq's retry set, as WithRetrying got them.
	Retrying Retrying
}

// Percent is done of total in percent, rounded down to a tenth, so that a run with a key
// pending never shows 100.0%, and never more than 100.
func Percent(done, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return math.Floor(float64(min(done, total))*1000/float64(total)) / 10
}

// maxETA is the longest ETA a report states: a rate that slow says nothing of when a run
// ends (and a longer time.Duration would overflow).
const maxETA = 365 * 24 * time.Hour

// ProgressOf derives run s's Progress; now stands in for FinishedAt while the run is active.
func ProgressOf(s ledger.RunStatus, now time.Time) Progress {
	p := Progress{Done: s.ResyncedKeys + s.DeadKeys, Pending: s.PendingKeys, Percent: Percent(s.ResyncedKeys+s.DeadKeys, s.TotalKeys)}
	end := now
	if !s.FinishedAt.IsZero() {
		end = s.FinishedAt
	}
	if d := end.Sub(s.StartedAt).Seconds(); d > 0 && !s.StartedAt.IsZero() {
		p.KeysPerSecond = float64(p.Done) / d
	}
	switch {
	case s.Receiving:
		// Its producer is still submitting: how many keys are to come is not known yet.
	case s.PendingKeys == 0:
		p.ETAKnown = true
	case p.KeysPerSecond > 0 && float64(s.PendingKeys)/p.KeysPerSecond < maxETA.Seconds():
		p.ETA = time.Duration(float64(s.PendingKeys) / p.KeysPerSecond * float64(time.Second))
		p.ETAKnown = true
	}
	return p
}

// WithRetrying takes the batches waiting in the retry set into account: the run cannot end
// before the last of them is due, so the ETA is at least that far off. When every pending
// key waits on a retry, the retry times are the ETA, known even without a rate.
func (p Progress) WithRetrying(r Retrying, now time.Time) Progress {
	p.Retrying = r
	if r.Batches == 0 || p.Pending == 0 {
		return p
	}
	wait := max(r.LastAt.Sub(now), 0)
	switch {
	case p.AllRetrying():
		p.ETA, p.ETAKnown = wait, true
	case p.ETAKnown && wait > p.ETA:
		p.ETA = wait
	}
	return p
}

// AllRetrying reports whether every pending key waits in a batch in the retry set, so
// nothing moves before the first of them is due.
func (p Progress) AllRetrying() bool {
	return p.Pending > 0 && p.Retrying.Batches > 0 && p.Retrying.Keys >= p.Pending
}

// RetryNote says, when every pending key waits on a retry, when they are due: "1 batch
// retries at 14:07:05 UTC (in 6m40s)", "3 batches retry from 14:07:05 to 14:12:00 UTC
// (the first in 2s)"; "" otherwise.
func (p Progress) RetryNote(now time.Time) string {
	if !p.AllRetrying() {
		return ""
	}
	r := p.Retrying
	in := max(r.NextAt.Sub(now), 0).Round(time.Second)
	const clock = "15:04:05"
	if r.Batches == 1 || r.NextAt.Equal(r.LastAt) {
		verb := "retries"
		if r.Batches > 1 {
			verb = "retry"
		}
		return fmt.Sprintf("%s %s at %s UTC (in %s)", batches(r.Batches), verb, r.NextAt.UTC().Format(clock), in)
	}
	return fmt.Sprintf("%s retry from %s to %s UTC (the first in %s)", batches(r.Batches),
		r.NextAt.UTC().Format(clock), r.LastAt.UTC().Format(clock), in)
}

// FormatETA is the ETA for people, rounded to the second ("2m5s", "0s"), or "-" when it
// is not known.
func (p Progress) FormatETA() string {
	if !p.ETAKnown {
		return "-"
	}
	return p.ETA.Round(time.Second).String()
}

// batches is "1 batch", "3 batches".
func batches(n int) string {
	if n == 1 {
		return "1 batch"
	}
	return fmt.Sprintf("%d batches", n)
}
