package tasks

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/erpsync"
)

// AggregatorConfig configures NewAggregator.
type AggregatorConfig struct {
	// Logger receives a warning for each trickle payload it cannot read. Zero value: no logs.
	Logger zerolog.Logger
	// Options are added to each aggregated TypeResync task after the defaults of
	// NewResyncTask (asynq ignores a Queue option here: the batch stays in the group's queue).
	Options []asynq.Option
	// Now names the run after its day when the trickle payloads carry no time; nil means time.Now.
	Now func() time.Time
}

// TricklePrefix begins the name of every trickle run (TrickleRun). Producers may not name a
// bulk run so (ValidateBulkRunName): its batches would mix with a day's trickle keys.
const TricklePrefix = "trickle-"

// TrickleRun is the run a trickle batch belongs to: one run per UTC day, ERP connection and
// actor type, "trickle-2006-01-02-3-Customer", so that `enqueue status` can follow a day's
// trickle like any other run.
func TrickleRun(day time.Time, erpConnectionID int, actor erpsync.ActorType) string {
	return fmt.Sprintf(TricklePrefix+"%s-%d-%s", day.UTC().Format("2006-01-02"), erpConnectionID, actor)
}

// NewAggregator returns the asynq.GroupAggregator for TypeTrickle tasks: it merges a
// group's tasks into one TypeResync batch of run TrickleRun(first key's day, conn, actor), keeping the
// first occurrence of each key (in the order they were handed over) and dropping duplicates. The batch gets a fresh unique
// task ID ("RUN:t<hex>"), Source "trickle", and is registered in the ledger by the handler
// when it first runs. Set asynq.Config.GroupMaxSize to at most MaxBatchSize (DefaultBatchSize
// is a good choice); a larger group is still processed, split by the handler before calling.
// Unreadable trickle payloads are logged and skipped; if nothing is left the aggregated
// task carries no keys and the handler dead-letters nothing and archives it.
func NewAggregator(cfg AggregatorConfig) asynq.GroupAggregator {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	return asynq.GroupAggregatorFunc(func(group string, ts []*asynq.Task) *asynq.Task {
		trs := make([]Trickle, 0, len(ts))
		for _, t := range ts {
			var tr Trickle
			if err := json.Unmarshal(t.Payload(), &tr); err != nil {
				log.Warn().Str("group", group).Err(err).Msg("trickle: unreadable payload skipped")
				continue
			}
			trs = append(trs, tr)
		}
		// asynq hands the group over in no useful order; keep the order keys arrived in.
		sort.SliceStable(trs, func(i, j int) bool { return trs[i].At.Before(trs[j].At) })
		var b Batch
		seen := make(map[string]struct{}, len(trs))
		for _, tr := range trs {
			if b.Keys == nil {
				b.Tenant, b.ErpConnectionID, b.ActorType = tr.Tenant, tr.ErpConnectionID, tr.ActorType
			}
			if tr.Tenant != b.Tenant || tr.ErpConnectionID != b.ErpConnectionID || tr.ActorType != b.ActorType {
				log.Warn().Str("group", group).Str("key", tr.Key).Msg("trickle: key of another tenant, connection or actor type in group; skipped")
				continue
			}
			if _, dup := seen[tr.Key]; dup {
				continue
			}
			seen[tr.Key] = struct{}{}
			b.Keys = append(b.Keys, tr.Key)
		}
		// The run is the day the batch's first key was handed over (as for a trickle processed
		// alone), not the day it is aggregated: keys handed over while no worker ran join the
		// run `enqueue key` named. A batch straddling midnight UTC joins the earlier day's run.
		day := now()
		if len(trs) > 0 && !trs[0].At.IsZero() {
			day = trs[0].At
		}
		b.Run = TrickleRun(day, b.ErpConnectionID, b.ActorType)
		b.Source = "trickle"
		id := b.RunKey() + ":t" + Nonce()
		b.ID = id
		payload, _ := json.Marshal(b) // a Batch always encodes
		opts := append([]asynq.Option{
			asynq.MaxRetry(DefaultMaxRetry),
			asynq.Timeout(DefaultTimeout),
			asynq.Retention(DefaultRetention),
			asynq.TaskID(id),
		}, cfg.Options...)
		return asynq.NewTask(TypeResync, payload, opts...)
	})
}

// Nonce is a time-ordered unique suffix: unix milliseconds and 4 random bytes, in hex.
func Nonce() string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%x%s", time.Now().UnixMilli(), hex.EncodeToString(r[:]))
}
