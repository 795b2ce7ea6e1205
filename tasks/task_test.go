package tasks

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

func validBatch() Batch {
	return Batch{Run: "run-1", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: []string{"10001", "10002"}, Seq: 7}
}

func TestBatchValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mod     func(*Batch)
		wantErr string
	}{
		{name: "valid", mod: func(*Batch) {}},
		{name: "no run", mod: func(b *Batch) { b.Run = "" }, wantErr: "run name is empty"},
		{name: "bad run", mod: func(b *Batch) { b.Run = "a b" }, wantErr: "only letters"},
		{name: "hash tag in run", mod: func(b *Batch) { b.Run = "a{b}" }, wantErr: "only letters"},
		{name: "connection", mod: func(b *Batch) { b.ErpConnectionID = 0 }, wantErr: "must be positive"},
		{name: "unknown actor", mod: func(b *Batch) { b.ActorType = erpsync.ActorUnknown }, wantErr: "actor type"},
		{name: "invalid actor", mod: func(b *Batch) { b.ActorType = 42 }, wantErr: "actor type"},
		{name: "no keys", mod: func(b *Batch) { b.Keys = nil }, wantErr: "no keys"},
		{name: "too many keys", mod: func(b *Batch) { b.Keys = slices.Repeat([]string{"k"}, MaxBatchSize+1) }, wantErr: "at most 1000"},
		{name: "blank key", mod: func(b *Batch) { b.Keys[1] = " " }, wantErr: "blank (only white space)"},
		{name: "control character", mod: func(b *Batch) { b.Keys[1] = "a\x01" }, wantErr: "control character"},
		{name: "long key", mod: func(b *Batch) { b.Keys[1] = strings.Repeat("x", 255) }, wantErr: "longer than 254"},
		{name: "duplicate", mod: func(b *Batch) { b.Keys[1] = b.Keys[0] }, wantErr: "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := validBatch()
			tt.mod(&b)
			err := b.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("Validate() = %v, want ErrInvalidBatch mentioning %q", err, tt.wantErr)
			}
			if _, err := NewResyncTask(b); !errors.Is(err, ErrInvalidBatch) {
				t.Errorf("NewResyncTask accepted an invalid batch: %v", err)
			}
		})
	}
}

func TestBatchID(t *testing.T) {
	t.Parallel()
	if got := BatchID("run-1", 42); got != "run-1:b000042" {
		t.Errorf("BatchID = %q", got)
	}
	if BatchID("r", 1) == BatchID("r", 10) || BatchID("r", 1) != BatchID("r", 1) {
		t.Error("BatchID is not deterministic and distinct")
	}
	if got := GroupName(3, erpsync.ActorCustomer); got != "erpresync:3:Customer" {
		t.Errorf("GroupName = %q", got)
	}
}

func TestNewResyncTaskOptions(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	client := asynq.NewClient(db.Opt())
	defer client.Close()
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()

	b := validBatch()
	task, err := NewResyncTask(b)
	if err != nil {
		t.Fatal(err)
	}
	if task.Type() != TypeResync {
		t.Errorf("type = %q", task.Type())
	}
	info, err := client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != BatchID(b.Run, b.Seq) || info.Queue != DefaultQueue || info.MaxRetry != DefaultMaxRetry ||
		info.Timeout != DefaultTimeout || info.Retention != DefaultRetention {
		t.Errorf("task info = id %q queue %q maxretry %d timeout %v retention %v", info.ID, info.Queue, info.MaxRetry, info.Timeout, info.Retention)
	}
	var got Batch
	if err := json.Unmarshal(task.Payload(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != info.ID || got.ActorType != erpsync.ActorCustomer || len(got.Keys) != 2 {
		t.Errorf("payload = %+v", got)
	}
	if !strings.Contains(string(task.Payload()), `"actor_type":"Customer"`) {
		t.Errorf("payload %s does not carry the actor type by name", task.Payload())
	}
	// The same batch again conflicts instead of running twice.
	if _, err := client.Enqueue(task); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Errorf("second enqueue: %v, want ErrTaskIDConflict", err)
	}
	// Options override the defaults.
	b.Seq = 8
	task, err = NewResyncTask(b, asynq.Queue("other"), asynq.MaxRetry(2), asynq.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	info, err = client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	if info.Queue != "other" || info.MaxRetry != 2 || info.Timeout != 5*time.Second {
		t.Errorf("overridden task info = queue %q maxretry %d timeout %v", info.Queue, info.MaxRetry, info.Timeout)
	}
	if _, err := NewResyncTask(b, asynq.Timeout(500*time.Millisecond)); !errors.Is(err, ErrInvalidBatch) {
		t.Errorf("sub-second timeout accepted: %v", err)
	}
}

func TestNewTrickleTask(t *testing.T) {
	t.Parallel()
	task, err := NewTrickleTask(3, erpsync.ActorPerson, "P-1")
	if err != nil {
		t.Fatal(err)
	}
	var tr Trickle
	if err := json.Unmarshal(task.Payload(), &tr); err != nil {
		t.Fatal(err)
	}
	if task.Type() != TypeTrickle || tr.Key != "P-1" || tr.ErpConnectionID != 3 || tr.ActorType != erpsync.ActorPerson || tr.At.IsZero() {
		t.Errorf("trickle = %s %+v", task.Type(), tr)
	}
	for _, bad := range []func() error{
		func() error { _, err := NewTrickleTask(0, erpsync.ActorPerson, "k"); return err },
		func() error { _, err := NewTrickleTask(1, erpsync.ActorUnknown, "k"); return err },
		func() error { _, err := NewTrickleTask(1, erpsync.ActorPerson, ""); return err },
	} {
		if err := bad(); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("invalid trickle accepted: %v", err)
		}
	}
}

// handedOverAt returns trickle task as if it had been handed over at at.
func handedOverAt(t *testing.T, task *asynq.Task, at time.Time) *asynq.Task {
	t.Helper()
	var tr Trickle
	if err := json.Unmarshal(task.Payload(), &tr); err != nil {
		t.Fatal(err)
	}
	tr.At = at
	payload, _ := json.Marshal(tr)
	return asynq.NewTask(task.Type(), payload)
}

func TestAggregatorDedupes(t *testing.T) {
	t.Parallel()
	day := time.Date(2025, 3, 4, 23, 59, 0, 0, time.UTC)
	// Aggregated after midnight: the batch stays in the run of the day its keys were handed over.
	agg := NewAggregator(AggregatorConfig{Now: func() time.Time { return day.Add(time.Hour) }})
	var ts []*asynq.Task
	for i, k := range []string{"A", "B", "A", "C", "B", "A"} {
		task, err := NewTrickleTask(3, erpsync.ActorCustomer, k)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, handedOverAt(t, task, day.Add(time.Duration(i)*time.Second)))
	}
	ts = append(ts, asynq.NewTask(TypeTrickle, []byte("not json")))
	out := agg.Aggregate(GroupName(3, erpsync.ActorCustomer), ts)
	if out.Type() != TypeResync {
		t.Fatalf("aggregated type = %q", out.Type())
	}
	b, err := ParseBatch(out.Payload())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(b.Keys, ",") != "A,B,C" {
		t.Errorf("keys = %v, want [A B C]", b.Keys)
	}
	if b.Run != "trickle-2025-03-04-3-Customer" || b.Source != "trickle" || b.ErpConnectionID != 3 || b.ActorType != erpsync.ActorCustomer {
		t.Errorf("batch = %+v", b)
	}
	if !strings.HasPrefix(b.ID, b.Run+":t") {
		t.Errorf("batch ID %q", b.ID)
	}
	other := agg.Aggregate(GroupName(3, erpsync.ActorCustomer), ts[:1])
	ob, _ := ParseBatch(other.Payload())
	if ob.ID == b.ID {
		t.Error("two aggregations got the same batch ID")
	}
}

// TestNewTrickleTaskKeepsItsGroup: the group names the ERP connection and actor type the
// aggregator batches keys for; an option must not move a key into another group, where the
// aggregator would have to drop it.
func TestNewTrickleTaskKeepsItsGroup(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	client := asynq.NewClient(db.Opt())
	defer client.Close()
	task, err := NewTrickleTask(3, erpsync.ActorPerson, "P-1", asynq.Group(GroupName(4, erpsync.ActorCustomer)), asynq.MaxRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	info, err := client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	if info.Group != GroupName(3, erpsync.ActorPerson) || info.MaxRetry != 2 {
		t.Errorf("group %q, max retry %d; want %q, 2", info.Group, info.MaxRetry, GroupName(3, erpsync.ActorPerson))
	}
}
