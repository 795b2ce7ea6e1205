package tasks

import (
	"context"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// Ledger is what the handler needs of the run ledger (package internal/ledger is the one
// implementation): it claims a batch before the call and records how it ended, each step
// one atomic transition that a re-run never counts twice.
type Ledger interface {
	// Claim registers a producer's batch (one without a parent) if it is new and returns
	// its state (BatchNone for a batch the ledger has not seen).
	Claim(ctx context.Context, b Batch, id string) (BatchState, error)
	// CountCalls adds n ForceResyncExternal calls to the run.
	CountCalls(ctx context.Context, run string, n int) error
	// CountBusiness counts one business refusal of the batch and returns the count so far.
	CountBusiness(ctx context.Context, run, id string) (int, error)
	// HoldSince records now as the start of the batch's auth hold unless one is recorded,
	// and returns the first.
	HoldSince(ctx context.Context, run, id string, now time.Time) (time.Time, error)
	// RecordSuccess records the batch done with its changes; false if it was finished already.
	RecordSuccess(ctx context.Context, run, id string, keys, calls int, items []ChangeItem, now time.Time) (bool, error)
	// MarkSplit marks the batch split unless it is finished: SplitMarked, or the state it
	// finished in (BatchSplit, BatchDone, BatchDead).
	MarkSplit(ctx context.Context, run, id string, now time.Time) (BatchState, error)
	// RecordDead records the batch's keys as dead letters; false if it was finished already.
	RecordDead(ctx context.Context, run, id string, dls []DeadLetter, now time.Time) (bool, error)
	// DeadReason is the recorded reason of a dead batch, or a generic sentence.
	DeadReason(ctx context.Context, run, id, key string) string
}

// BatchState is a batch's state in the ledger.
type BatchState string

// Batch states; a batch moves pending → done | split | dead, and dead → pending on requeue.
const (
	BatchNone    BatchState = ""
	BatchPending BatchState = "pending"
	BatchDone    BatchState = "done"
	BatchSplit   BatchState = "split"
	BatchDead    BatchState = "dead"
	// SplitMarked is what Ledger.MarkSplit returns when it marked the batch split.
	SplitMarked BatchState = "applied"
)

// Change kinds, as in ChangeItem.Kind and the ledger's record counts.
const (
	KindAdded   = "added"
	KindUpdated = "updated"
	KindDeleted = "deleted"
)

// DeadLetter is one key that could not be resynced, with the reason.
type DeadLetter struct {
	Run     string `json:"run"`
	Key     string `json:"key"`
	BatchID string `json:"batch_id"`
	// Queue is the asynq queue the batch ran in (for removing its archived task).
	Queue           string            `json:"queue,omitempty"`
	ErpConnectionID int               `json:"erp_connection"`
	ActorType       erpsync.ActorType `json:"actor_type"`
	// Class is the classifier's verdict (Class.String): "permanent", "business", ...
	Class           string `json:"class"`
	ErrorCode       string `json:"error_code,omitempty"`
	TechExplanation string `json:"tech_explanation,omitempty"`
	UserExplanation string `json:"user_explanation,omitempty"`
	// Reason is the sentence a person reads: what happened and after how many attempts.
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
}

// ChangeItem is one CRM row that a successful call reported in Changes.
type ChangeItem struct {
	Run      string    `json:"run"`
	Table    string    `json:"table"`
	RecordID int32     `json:"record_id"`
	Kind     string    `json:"kind"`
	TaskID   string    `json:"task_id"`
	At       time.Time `json:"at"`
}

// QueueName is the asynq queue the dead letter's batch ran in, where the ledger's requeue sends its key
// again and where its archived task is: Queue, which every version has recorded (the
// handler's queue, or the archived task's for the ledger's reconciliation), or DefaultQueue for a
// dead letter without one.
func (d DeadLetter) QueueName() string {
	if d.Queue == "" {
		return DefaultQueue
	}
	return d.Queue
}
