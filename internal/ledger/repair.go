package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/erpresync/erpresync/tasks"

	"github.com/hibiken/asynq"
)

// RepairResult is what Repair found among a run's unfinished batches.
type RepairResult struct {
	Run string `json:"run"`
	// Unfinished counts the batches the ledger holds as pending, and the halves of split
	// batches it has not finished.
	Unfinished int `json:"unfinished_batches"`
	// Queued counts those that asynq still holds (pending, active, scheduled, retry,
	// archived or completed), or that wait in their tenant's lane (WithLanes): they need
	// nothing.
	Queued int `json:"queued_batches"`
	// Requeued lists the halves Repair enqueued again from their parent's task.
	Requeued []string `json:"requeued"`
	// Lost lists the producer's batches that are neither finished in the ledger nor in
	// asynq: Redis lost their tasks (a failover drops the writes its replica had not
	// received yet), and with them the only copy of their keys in Redis. Submitting the
	// run's source again under the same run name enqueues exactly these (the batches
	// queued or finished are skipped).
	Lost []string `json:"lost"`
}

// Repair looks for the run's batches that nothing will ever finish: the ledger holds them
// as unfinished, but asynq has no task for them in queues (none: DefaultQueue). It enqueues
// lost halves of split batches again from their parent's task (which asynq keeps after
// completion for its retention), and reports the producer's batches it cannot rebuild.
// Safe to run at any time and more than once; a batch that is merely in flight is in asynq
// and left alone, as is a tenant's batch still in its lane when l was made WithLanes
// (without, a file tenant's batches not yet dispatched would be reported lost).
func (l *Ledger) Repair(ctx context.Context, insp *asynq.Inspector, run string, queues ...string) (RepairResult, error) {
	res := RepairResult{Run: run, Requeued: []string{}, Lost: []string{}}
	if len(queues) == 0 {
		queues = []string{tasks.DefaultQueue}
	}
	if _, err := l.Status(ctx, run); err != nil {
		return res, err
	}
	states, err := l.rdb.HGetAll(ctx, l.keys(run).batches).Result()
	if err != nil {
		return res, fmt.Errorf("ledger: batches of %s: %w", run, err)
	}
	find := func(id string) (*asynq.TaskInfo, error) {
		for _, q := range queues {
			info, err := insp.GetTaskInfo(q, id)
			switch {
			case err == nil:
				return info, nil
			case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			default:
				return nil, fmt.Errorf("asynq: task %s: %w", id, err)
			}
		}
		return nil, nil
	}
	client := asynq.NewClientFromRedisClient(l.rdb) // shares l.rdb; nothing to close
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		switch states[id] {
		case statePending:
			res.Unfinished++
			queued, err := l.queued(ctx, find, id)
			if err != nil {
				return res, err
			}
			if queued {
				res.Queued++
			} else {
				res.Lost = append(res.Lost, id)
			}
		case stateSplit:
			if err := l.repairHalves(ctx, client, find, run, id, states, &res); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// queued reports whether the producer's batch id waits in its tenant's lane or is in asynq
// (find). The lane is asked first: a batch only ever moves from its lane to asynq, so one
// moving between the two looks is found in asynq.
func (l *Ledger) queued(ctx context.Context, find func(string) (*asynq.TaskInfo, error), id string) (bool, error) {
	if l.inLane != nil && l.tenant != "" {
		in, err := l.inLane(ctx, l.tenant, id)
		if err != nil || in {
			if err != nil {
				err = fmt.Errorf("lane of tenant %s: batch %s: %w", l.tenant, id, err)
			}
			return in, err
		}
	}
	info, err := find(id)
	return info != nil, err
}

// repairHalves checks the halves of the split batch id and enqueues those that are
// unfinished and not in asynq, rebuilt from the parent's task.
func (l *Ledger) repairHalves(ctx context.Context, client *asynq.Client, find func(string) (*asynq.TaskInfo, error), run, id string, states map[string]string, res *RepairResult) error {
	var missing []string
	for i := range 2 {
		child := tasks.ChildID(id, i)
		if st := states[child]; st == stateDone || st == stateDead || st == stateSplit {
			continue
		}
		res.Unfinished++
		info, err := find(child)
		if err != nil {
			return err
		}
		if info != nil {
			res.Queued++
			continue
		}
		missing = append(missing, child)
	}
	if len(missing) == 0 {
		return nil
	}
	parent, err := find(id)
	if err != nil {
		return err
	}
	var b tasks.Batch
	if parent == nil || json.Unmarshal(parent.Payload, &b) != nil || len(b.Keys) < 2 {
		res.Lost = append(res.Lost, missing...)
		return nil
	}
	hs, err := tasks.HalfTasks(b, id, parent.Queue, parent.MaxRetry, nil)
	if err != nil {
		return err
	}
	var open []tasks.Half
	for _, h := range hs {
		for _, m := range missing {
			if h.ID == m {
				open = append(open, h)
			}
		}
	}
	if _, err := tasks.EnqueueHalves(ctx, client, open); err != nil {
		return err
	}
	for _, h := range open {
		res.Requeued = append(res.Requeued, h.ID)
	}
	return nil
}
