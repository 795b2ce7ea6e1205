package ledger

import "time"

// Progress is what a run's counters imply at one moment: how much is done, how fast, and
// how long the rest will take. `enqueue status` and the runs page both show it.
type Progress struct {
	// Done counts keys that need no more work: resynced + dead.
	Done int64
	// Percent is Done as a share of TotalKeys, 0–100; 0 for a run without keys.
	Percent float64
	// KeysPerSecond is Done divided by the time from StartedAt to FinishedAt (to now while
	// the run is active); 0 before the run has started or when no time has passed.
	KeysPerSecond float64
	// ETA is how long the pending keys will take at KeysPerSecond: 0 once nothing is
	// pending. ETAKnown is false while nothing is done yet, so there is no rate to go by.
	ETA      time.Duration
	ETAKnown bool
}

// Progress derives the run's Progress; now stands in for FinishedAt while the run is active.
func (s RunStatus) Progress(now time.Time) Progress {
	p := Progress{Done: s.ResyncedKeys + s.DeadKeys}
	if s.TotalKeys > 0 {
		p.Percent = float64(p.Done) * 100 / float64(s.TotalKeys)
	}
	end := now
	if !s.FinishedAt.IsZero() {
		end = s.FinishedAt
	}
	if d := end.Sub(s.StartedAt).Seconds(); d > 0 && !s.StartedAt.IsZero() {
		p.KeysPerSecond = float64(p.Done) / d
	}
	switch {
	case s.PendingKeys == 0:
		p.ETAKnown = true
	case p.KeysPerSecond > 0:
		p.ETA = time.Duration(float64(s.PendingKeys) / p.KeysPerSecond * float64(time.Second))
		p.ETAKnown = true
	}
	return p
}

// FormatETA is the ETA for people, rounded to the second ("2m5s", "0s"), or "-" when it
// is not known.
func (p Progress) FormatETA() string {
	if !p.ETAKnown {
		return "-"
	}
	return p.ETA.Round(time.Second).String()
}
