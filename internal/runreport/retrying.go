package runreport

import (
	"errors"
	"time"

	"github.com/erpresync/erpresync/tasks"

	"github.com/hibiken/asynq"
)

// MaxRetryScan bounds how many tasks of a queue's retry set RetryingBatches reads.
const MaxRetryScan = 10000

// Retrying is what a queue's retry set holds of one run: batches waiting to be tried again
// (SuperOffice down, throttling, refused credentials, a systemic failure). Their keys are
// among the run's pending keys.
type Retrying struct {
	Batches int
	// Keys counts the keys of those batches.
	Keys int64
	// LastError is the last error of the batch that failed most recently; LastFailedAt
	// when. Both are empty when Batches is 0.
	LastError    string
	LastFailedAt time.Time
	// NextAt and LastAt are when the first and the last of the batches are due again
	// (asynq's NextProcessAt); zero when Batches is 0.
	NextAt, LastAt time.Time
	// AuthBatches counts the batches held for an auth failure (class auth: credentials or
	// a ticket SuperOffice refused, HTTP 401/403, HTTP 421): a cause only an operator can
	// fix, so the next retry meets it again until someone does. AuthError is the most
	// recent one's last error.
	AuthBatches int
	AuthError   string
	authAt      time.Time
	// Truncated is true when a retry set held more than MaxRetryScan tasks: the counts are
	// of the batches read, a part of the run's.
	Truncated bool
}

// add counts one waiting batch of n keys.
func (r *Retrying) add(n int, lastErr string, failedAt, due time.Time) {
	r.Batches++
	r.Keys += int64(n)
	if failedAt.After(r.LastFailedAt) || r.LastError == "" {
		r.LastFailedAt, r.LastError = failedAt, lastErr
	}
	if r.NextAt.IsZero() || due.Before(r.NextAt) {
		r.NextAt = due
	}
	if due.After(r.LastAt) {
		r.LastAt = due
	}
	if tasks.LastErrorClass(lastErr) == tasks.ClassAuth {
		r.AuthBatches++
		if failedAt.After(r.authAt) || r.AuthError == "" {
			r.authAt, r.AuthError = failedAt, lastErr
		}
	}
}

// merge adds o's batches to r.
func (r *Retrying) merge(o Retrying) {
	r.Truncated = r.Truncated || o.Truncated
	r.Batches += o.Batches
	r.Keys += o.Keys
	if o.LastFailedAt.After(r.LastFailedAt) {
		r.LastFailedAt, r.LastError = o.LastFailedAt, o.LastError
	}
	if !o.NextAt.IsZero() && (r.NextAt.IsZero() || o.NextAt.Before(r.NextAt)) {
		r.NextAt = o.NextAt
	}
	if o.LastAt.After(r.LastAt) {
		r.LastAt = o.LastAt
	}
	r.AuthBatches += o.AuthBatches
	if o.authAt.After(r.authAt) {
		r.authAt, r.AuthError = o.authAt, o.AuthError
	}
}

// RetryingBatches counts run's batches in queue's retry set, reading at most MaxRetryScan
// tasks; queue "" reads the retry sets of every queue asynq knows. A queue asynq does not
// know holds none. run is the ledger's name of the run, tasks.RunKey(tenant, run): a plain
// run name is the implicit tenant's, and another tenant's batches of that name are not its.
func RetryingBatches(insp *asynq.Inspector, queue, run string) (Retrying, error) {
	if queue != "" {
		return retryingIn(insp, queue, run)
	}
	queues, err := insp.Queues()
	if err != nil {
		return Retrying{}, err
	}
	var all Retrying
	for _, q := range queues {
		r, err := retryingIn(insp, q, run)
		if err != nil {
			return Retrying{}, err
		}
		all.merge(r)
	}
	return all, nil
}

func retryingIn(insp *asynq.Inspector, queue, run string) (Retrying, error) {
	var r Retrying
	const page = 500
	for p := 1; (p-1)*page < MaxRetryScan; p++ {
		list, err := insp.ListRetryTasks(queue, asynq.Page(p), asynq.PageSize(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return Retrying{}, nil
		}
		if err != nil {
			return Retrying{}, err
		}
		for _, ti := range list {
			b, err := tasks.ParseBatch(ti.Payload)
			if err != nil || b.RunKey() != run {
				continue
			}
			r.add(len(b.Keys), ti.LastErr, ti.LastFailedAt, ti.NextProcessAt)
		}
		if len(list) < page {
			return r, nil
		}
	}
	r.Truncated = true
	return r, nil
}
