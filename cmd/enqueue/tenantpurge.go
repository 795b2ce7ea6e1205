package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

// purgePage is how many lane jobs or asynq tasks tenants purge reads per round trip.
const purgePage = 500

// purgePasses bounds the passes over a lane or an asynq list: each pass reads it through,
// and another follows while the previous one removed something (a list that shifts as its
// tasks are deleted, a producer still adding).
const purgePasses = 5

// purgeResult is what `enqueue tenants purge` removed and recorded.
type purgeResult struct {
	Tenant string `json:"tenant"`
	// Lane is the batches removed from the tenant's lane; Asynq those deleted from asynq, by
	// state (pending, scheduled, retry, aggregating).
	Lane  int            `json:"lane"`
	Asynq map[string]int `json:"asynq"`
	// DeadKeys is how many keys were recorded as dead letters (PURGED, "purged by an
	// operator"), in Runs.
	DeadKeys int      `json:"dead_keys"`
	Runs     []string `json:"runs"`
	// Active is the tenant's tasks left alone because a worker is running them; Unreadable
	// the tenant's tasks or jobs left alone because they carry no batch the ledger can record.
	Active     int      `json:"active"`
	Unreadable []string `json:"unreadable,omitempty"`

	runs map[string]bool
}

// tenantPurge removes the waiting batches of the tenant of rc (removed from the tenants
// file, its batches held): those in its lane, and its pending, scheduled, retry and
// aggregating tasks in every asynq queue. Each batch's keys are recorded as dead letters
// first, then it is removed, so an interrupted purge loses nothing: run it again. Active
// tasks are left alone.
func (c *cli) tenantPurge(ctx context.Context, rc *redisConn, q *lanes.Queue, asJSON bool) int {
	res := &purgeResult{Tenant: rc.tenant, Asynq: map[string]int{}, runs: map[string]bool{}}
	l := rc.ledger()
	err := purgeLane(ctx, q, l, res)
	if err == nil {
		insp := asynq.NewInspectorFromRedisClient(rc.rdb)
		err = purgeAsynq(ctx, insp, l, res)
	}
	for r := range res.runs {
		res.Runs = append(res.Runs, r)
	}
	slices.Sort(res.Runs)
	if res.Runs == nil {
		res.Runs = []string{}
	}
	if err != nil {
		c.printPurge(res, false)
		return c.failJSON(asJSON, exitUsage, "tenants purge %s: %v (what was removed is listed above; run it again to finish)", rc.tenant, err)
	}
	c.printPurge(res, asJSON)
	return exitOK
}

func (c *cli) printPurge(res *purgeResult, asJSON bool) {
	if asJSON {
		writeJSON(c.stdout, res)
		return
	}
	fmt.Fprintf(c.stdout, "tenant %s: removed %s from its lane and %s from asynq (%d pending, %d scheduled, %d retry, %d aggregating)\n",
		res.Tenant, batches(res.Lane), plural(int64(res.Asynq["pending"]+res.Asynq["scheduled"]+res.Asynq["retry"]+res.Asynq["aggregating"]), "task"),
		res.Asynq["pending"], res.Asynq["scheduled"], res.Asynq["retry"], res.Asynq["aggregating"])
	fmt.Fprintf(c.stdout, "recorded %s as dead letters (%s: %s) in %s\n", plural(int64(res.DeadKeys), "key"),
		ledger.PurgedErrorCode, ledger.PurgedReason, orDash(strings.Join(res.Runs, ", ")))
	if res.Active > 0 {
		fmt.Fprintf(c.stdout, "left alone: %s running on a worker\n", plural(int64(res.Active), "active task"))
	}
	for _, u := range res.Unreadable {
		fmt.Fprintf(c.stdout, "left alone: %s carries no batch the ledger can record\n", u)
	}
}

// record dead-letters the batch a lane job or asynq task carries (attempts made so far);
// ok is false, and the batch is listed unreadable, when it carries none of rc's tenant.
func (res *purgeResult) record(ctx context.Context, l *ledger.Ledger, typ string, payload []byte, id, queue string, attempts int) (ok bool, err error) {
	b, ok := ledger.BatchOf(typ, payload)
	if !ok || b.Tenant != res.Tenant {
		if !slices.Contains(res.Unreadable, queue+"/"+id) {
			res.Unreadable = append(res.Unreadable, queue+"/"+id)
		}
		return false, nil
	}
	applied, err := l.RecordPurged(ctx, b, id, queue, attempts)
	if err != nil {
		return false, err
	}
	if applied {
		res.DeadKeys += len(b.Keys)
	}
	res.runs[b.Run] = true
	return true, nil
}

// purgeLane records and removes the jobs in the tenant's lane, page by page, then drops the
// lane itself (lanes.Queue.Purge).
func purgeLane(ctx context.Context, q *lanes.Queue, l *ledger.Ledger, res *purgeResult) error {
	for pass := 0; pass < purgePasses; pass++ {
		removed := 0
		for cursor := uint64(0); ; {
			jobs, next, err := q.Jobs(ctx, res.Tenant, cursor, purgePage)
			if err != nil {
				return err
			}
			var ids []string
			for _, j := range jobs {
				ok, err := res.record(ctx, l, j.Type, j.Payload, j.ID, j.Queue, 0)
				if err != nil {
					return err
				}
				if ok {
					ids = append(ids, j.ID)
				}
			}
			n, err := q.Remove(ctx, res.Tenant, ids...)
			res.Lane += n
			removed += n
			if err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		if removed == 0 {
			break
		}
	}
	if len(res.Unreadable) > 0 {
		return nil // the lane keeps them, for an operator to look at
	}
	n, err := q.Purge(ctx, res.Tenant)
	res.Lane += n // none unless a producer added batches during the purge
	return err
}

// taskList lists one page of a queue's tasks in one state.
type taskList struct {
	state string
	list  func(queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error)
}

// purgeAsynq records and deletes the tenant's pending, scheduled, retry and aggregating tasks
// in every asynq queue, and counts its active ones (left alone).
func purgeAsynq(ctx context.Context, insp *asynq.Inspector, l *ledger.Ledger, res *purgeResult) error {
	queues, err := insp.Queues()
	if err != nil {
		return fmt.Errorf("asynq queues: %w", err)
	}
	for _, qname := range queues {
		lists := []taskList{{"pending", insp.ListPendingTasks}, {"scheduled", insp.ListScheduledTasks}, {"retry", insp.ListRetryTasks}}
		groups, err := insp.Groups(qname)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			return fmt.Errorf("asynq groups of %s: %w", qname, err)
		}
		// The tenant's trickle groups, named as tasks.TenantGroupName names them.
		prefix := strings.TrimSuffix(tasks.TenantGroupName(res.Tenant, 1, erpsync.ActorCustomer), "1:"+erpsync.ActorCustomer.String())
		for _, g := range groups {
			if strings.HasPrefix(g.Group, prefix) {
				lists = append(lists, taskList{"aggregating", func(q string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error) {
					return insp.ListAggregatingTasks(q, g.Group, opts...)
				}})
			}
		}
		for _, tl := range lists {
			if err := purgeList(ctx, insp, l, qname, tl, res); err != nil {
				return err
			}
		}
		if err := countActive(insp, qname, res); err != nil {
			return err
		}
	}
	return nil
}

// purgeList goes through one list of a queue page by page, recording and deleting the
// tenant's tasks. A page where something was deleted is read again (the tasks behind moved
// up into it), so it ends once a read deletes nothing: each pass deletes at least one task.
func purgeList(ctx context.Context, insp *asynq.Inspector, l *ledger.Ledger, qname string, tl taskList, res *purgeResult) error {
	for page := 1; ; {
		infos, err := tl.list(qname, asynq.Page(page), asynq.PageSize(purgePage))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("asynq %s tasks of %s: %w", tl.state, qname, err)
		}
		deleted := 0
		for _, t := range infos {
			if payloadTenant(t.Payload) != res.Tenant {
				continue
			}
			ok, err := res.record(ctx, l, t.Type, t.Payload, t.ID, qname, t.Retried)
			if err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			switch err := insp.DeleteTask(qname, t.ID); {
			case err == nil:
				res.Asynq[tl.state]++
				deleted++
			case errors.Is(err, asynq.ErrTaskNotFound):
				// gone meanwhile: handled by a worker, which finds it dead
			default:
				// active now (a worker took it; countActive counts it): its batch is dead in
				// the ledger, so the handler skips it
			}
		}
		switch {
		case deleted > 0:
			// read the page again
		case len(infos) < purgePage:
			return nil
		default:
			page++
		}
	}
}

// countActive counts the tenant's active tasks in qname, which the purge leaves alone.
func countActive(insp *asynq.Inspector, qname string, res *purgeResult) error {
	for page := 1; ; page++ {
		infos, err := insp.ListActiveTasks(qname, asynq.Page(page), asynq.PageSize(purgePage))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("asynq active tasks of %s: %w", qname, err)
		}
		for _, t := range infos {
			if payloadTenant(t.Payload) == res.Tenant {
				res.Active++
			}
		}
		if len(infos) < purgePage {
			return nil
		}
	}
}

// payloadTenant is the tenant a task's payload names, as tasks.Router reads it.
func payloadTenant(payload []byte) string {
	var p struct {
		Tenant string `json:"tenant"`
	}
	_ = json.Unmarshal(payload, &p)
	return p.Tenant
}

func batches(n int) string {
	if n == 1 {
		return "1 batch"
	}
	return fmt.Sprintf("%d batches", n)
}
