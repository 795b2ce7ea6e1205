package lanes

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// ErrConflict reports a job whose ID is already in its tenant's lane, dispatched and not yet
// Done, or in asynq. It wraps asynq.ErrTaskIDConflict, so a producer that treats asynq's
// conflict as "already handed over" treats the lanes' the same.
var ErrConflict = fmt.Errorf("lanes: job ID already queued: %w", asynq.ErrTaskIDConflict)

// Job is one asynq task waiting in a tenant's lane. Its fields become the task's options.
type Job struct {
	// ID becomes the asynq TaskID: unique per queue, and what makes enqueueing idempotent.
	ID string `json:"-"`
	// Type and Payload are the asynq task's.
	Type    string `json:"type"`
	Payload []byte `json:"payload,omitempty"`
	// Queue is the asynq queue, one of Config.Queues; empty means Config.Queues[0].
	Queue string `json:"queue,omitempty"`
	// MaxRetry is asynq.MaxRetry: 0 = no retry.
	MaxRetry int `json:"max_retry"`
	// Timeout is asynq.Timeout; 0 = asynq's default.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retention is asynq.Retention, raised to Config.Lease.
	Retention time.Duration `json:"retention,omitempty"`
}

// check reports what is wrong with j, naming the field; queue is the resolved queue.
func (j Job) check(queues []string) error {
	switch {
	case j.ID == "":
		return errors.New("job ID is empty: give a unique task ID")
	case strings.TrimSpace(j.Type) == "":
		return fmt.Errorf("job %q: Type is empty: give the asynq task type", j.ID)
	case j.Queue != "" && !slices.Contains(queues, j.Queue):
		return fmt.Errorf("job %q: Queue %q is not one the dispatcher feeds: want one of %s", j.ID, j.Queue, strings.Join(queues, ", "))
	case j.MaxRetry < 0:
		return fmt.Errorf("job %q: MaxRetry is %d: want 0 or more", j.ID, j.MaxRetry)
	case j.Timeout < 0 || j.Retention < 0:
		return fmt.Errorf("job %q: Timeout and Retention must not be negative", j.ID)
	}
	return nil
}

// queue is the asynq queue of j.
func (j Job) queue(queues []string) string {
	if j.Queue == "" {
		return queues[0]
	}
	return j.Queue
}

func (j Job) encode(queues []string) (string, error) {
	j.Queue = j.queue(queues)
	b, err := json.Marshal(j)
	return string(b), err
}

func decodeJob(id, s string) (Job, error) {
	var j Job
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return j, fmt.Errorf("lanes: job %q: stored job unreadable: %w", id, err)
	}
	j.ID = id
	return j, nil
}

// task is j as an asynq task with its options; retention is at least minRetention.
func (j Job) task(minRetention time.Duration) (*asynq.Task, []asynq.Option) {
	opts := []asynq.Option{asynq.TaskID(j.ID), asynq.Queue(j.Queue), asynq.MaxRetry(j.MaxRetry),
		asynq.Retention(max(j.Retention, minRetention))}
	if j.Timeout > 0 {
		opts = append(opts, asynq.Timeout(j.Timeout))
	}
	return asynq.NewTask(j.Type, j.Payload), opts
}

// checkTenant is the lanes' own rule of a tenant ID: braces would break the hash tag that
// keeps a tenant's keys in one Redis Cluster slot.
func checkTenant(tenant string, valid func(string) error) error {
	if strings.ContainsAny(tenant, "{}") {
		return fmt.Errorf("lanes: tenant %q contains '{' or '}'", tenant)
	}
	if valid != nil {
		if err := valid(tenant); err != nil {
			return fmt.Errorf("lanes: %w", err)
		}
	}
	return nil
}
