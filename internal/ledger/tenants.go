package ledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/tasks"
)

// PurgedErrorCode and PurgedReason mark the dead letters of a batch an operator purged
// (`enqueue tenants purge`): `enqueue dead requeue --error-code PURGED` sends them again once
// their tenant is served again.
const (
	PurgedErrorCode = "PURGED"
	PurgedReason    = "purged by an operator"
)

// RecordPurged records every key of batch b (task or lane job id, from asynq queue queue,
// after attempts attempts) as a dead letter with PurgedReason, so that a run whose batches an
// operator removed ends visibly. b must be of l's tenant: a purge never writes into another
// tenant's runs. False if the batch was finished already.
func (l *Ledger) RecordPurged(ctx context.Context, b tasks.Batch, id, queue string, attempts int) (bool, error) {
	if b.Tenant != l.tenant {
		return false, fmt.Errorf("ledger: purge batch %s of tenant %q through the ledger of tenant %q", id, b.Tenant, l.tenant)
	}
	applied, err := l.deadBatch(ctx, b, id, tasks.DeadLetter{Queue: queue, Class: tasks.ClassPermanent.String(),
		ErrorCode: PurgedErrorCode, Reason: PurgedReason, Attempts: attempts, At: l.now().UTC()})
	if err != nil {
		return false, fmt.Errorf("ledger: record purged batch %s: %w", id, err)
	}
	return applied, nil
}

// tenantScanCount is the COUNT hint of the SCAN that finds the tenants' run indexes: keys
// looked at per round trip.
const tenantScanCount = 1000

// Tenants calls fn with the ID of every tenant that has a run index, in no particular
// order: "" for the implicit tenant (erpresync:runs), then the file tenants' (SCAN MATCH
// erpresync:tenant:{*}:runs over every master of a cluster, a page at a time, so memory stays
// bounded however many tenants and keys there are). SCAN may name a tenant twice; fn must
// not mind. l's own tenant does not matter.
func (l *Ledger) Tenants(ctx context.Context, fn func(id string) error) error {
	n, err := l.rdb.Exists(ctx, runsKey).Result()
	if err != nil {
		return fmt.Errorf("ledger: list tenants: %w", err)
	}
	if n == 1 {
		if err := fn(""); err != nil {
			return err
		}
	}
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, keyPrefix+"tenant:{*}:runs", tenantScanCount).Iterator()
		for iter.Next(ctx) {
			id := strings.TrimSuffix(strings.TrimPrefix(iter.Val(), keyPrefix+"tenant:{"), "}:runs")
			if err := fn(id); err != nil {
				return err
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("ledger: list tenants: %w", err)
		}
		return nil
	}
	switch c := l.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, scan)
	case *redis.Client:
		return scan(ctx, c)
	default:
		return fmt.Errorf("ledger: list tenants: a %T cannot scan keys", l.rdb)
	}
}

// runPage is how many runs RunCounts reads per round trip.
const runPage = 500

// RunCounts returns how many runs l's tenant has in its index and how many of them are
// RunActive (keys pending, or a producer still submitting), reading a page of runs' meta per
// round trip.
func (l *Ledger) RunCounts(ctx context.Context) (total, active int, err error) {
	for start := int64(0); ; start += runPage {
		names, err := l.rdb.ZRange(ctx, l.runsKey(), start, start+runPage-1).Result()
		if err != nil {
			return total, active, fmt.Errorf("ledger: list runs: %w", err)
		}
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(names))
		for i, r := range names {
			cmds[i] = pipe.HGetAll(ctx, l.keys(r).meta)
		}
		if len(names) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return total, active, fmt.Errorf("ledger: status of runs: %w", err)
			}
		}
		for i, r := range names {
			m := cmds[i].Val()
			if m["run"] == "" {
				continue // indexed, but its keys were deleted
			}
			total++
			if l.statusOf(r, m, nil).State == RunActive {
				active++
			}
		}
		if len(names) < runPage {
			return total, active, nil
		}
	}
}
