package ledger

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
	// LastError is the last error of the batch that failed most recently; LastFailedAt
	// when. Both are empty when Batches is 0.
	LastError    string
	LastFailedAt time.Time
}

// RetryingBatches counts run's batches in queue's retry set, reading at most MaxRetryScan
// tasks; queue "" reads the retry sets of every queue asynq knows. A queue asynq does not
// know holds none.
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
		all.Batches += r.Batches
		if r.LastFailedAt.After(all.LastFailedAt) {
			all.LastFailedAt, all.LastError = r.LastFailedAt, r.LastError
		}
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
			if err != nil || b.Run != run {
				continue
			}
			r.Batches++
			if ti.LastFailedAt.After(r.LastFailedAt) {
				r.LastFailedAt, r.LastError = ti.LastFailedAt, ti.LastErr
			}
		}
		if len(list) < page {
			break
		}
	}
	return r, nil
}
