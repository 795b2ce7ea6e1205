package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/soap"
	"github.com/erpresync/erpresync/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// keysFile writes n keys "K000000".. to a file, with every 10th key repeated later.
func keysFile(t testing.TB, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "K%06d\n", i)
		if i%10 == 9 {
			fmt.Fprintf(&b, "K%06d\n", i-5)
		}
	}
	p := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pendingKeys reads every pending TypeResync task of queue and returns its keys and the
// task IDs.
func pendingKeys(t *testing.T, db *redistest.DB, queue string) (keys map[string]int, ids []string) {
	t.Helper()
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	keys = map[string]int{}
	for page := 1; ; page++ {
		infos, err := insp.ListPendingTasks(queue, asynq.PageSize(1000), asynq.Page(page))
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range infos {
			b, err := tasks.ParseBatch(ti.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if ti.ID != tasks.BatchID(b.Run, b.Seq) {
				t.Errorf("task ID %s for batch seq %d", ti.ID, b.Seq)
			}
			ids = append(ids, ti.ID)
			for _, k := range b.Keys {
				keys[k]++
			}
		}
		if len(infos) < 1000 {
			return keys, ids
		}
	}
}

func newTestProducer(t *testing.T, rdb redis.UniversalClient, queue string) *Producer {
	t.Helper()
	p, err := NewProducer(ProducerConfig{Redis: rdb, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var customers = RunSpec{ErpConnectionID: 3, ActorType: soap.ActorCustomer}

func TestSubmitEnqueues(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client()
	defer rdb.Close()
	p := newTestProducer(t, rdb, "q1")
	spec := customers
	spec.Run = "r1"
	sum, err := p.Submit(context.Background(), spec, Source{Path: keysFile(t, 1050)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Read != 1155 || sum.Duplicates != 105 || sum.Keys != 1050 || sum.Batches != 11 || sum.BatchesEnqueued != 11 || sum.BatchesPresent != 0 {
		t.Errorf("summary = %+v", sum)
	}
	keys, ids := pendingKeys(t, db, "q1")
	if len(keys) != 1050 || len(ids) != 11 {
		t.Errorf("%d keys in %d tasks", len(keys), len(ids))
	}
	for k, n := range keys {
		if n != 1 {
			t.Errorf("key %s enqueued %d times", k, n)
		}
	}
	st, err := tasks.NewLedger(rdb).Status(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalKeys != 1050 || st.PendingKeys != 1050 || st.Batches != 11 || st.Source != DefaultOrigin {
		t.Errorf("ledger status = %+v", st)
	}

	// The same input again: everything is already there.
	sum, err = p.Submit(context.Background(), spec, Source{Path: keysFile(t, 1050)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.BatchesEnqueued != 0 || sum.BatchesPresent != 11 {
		t.Errorf("resubmit summary = %+v", sum)
	}
	// Different parameters under the same run are refused.
	spec.BatchSize = 50
	_, err = p.Submit(context.Background(), spec, Source{Path: keysFile(t, 10)})
	if !errors.Is(err, ErrRunMismatch) {
		t.Errorf("err = %v, want ErrRunMismatch", err)
	}
}

// cancelAfter cancels when the n-th asynq enqueue script has been sent to Redis.
type cancelAfter struct {
	n      atomic.Int64
	after  int64
	cancel context.CancelFunc
}

func (h *cancelAfter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *cancelAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *cancelAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			if strings.Contains(fmt.Sprint(cmd.Args()), "asynq:{q}:pending") && h.n.Add(1) == h.after {
				h.cancel()
			}
		}
		return err
	}
}

func TestCrashAndResubmit(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	path := keysFile(t, 5000)
	spec := customers
	spec.Run = "crash"
	spec.BatchSize = 10 // 500 batches

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	crashing := db.Client()
	defer crashing.Close()
	hook := &cancelAfter{after: 120, cancel: cancel}
	crashing.AddHook(hook)
	sum1, err := newTestProducer(t, crashing, "q").Submit(ctx, spec, Source{Path: path})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first submit: err = %v, want context.Canceled", err)
	}
	if sum1.BatchesEnqueued < 100 || sum1.BatchesEnqueued >= 500 {
		t.Fatalf("first submit enqueued %d batches; the test wants a partial run", sum1.BatchesEnqueued)
	}

	rdb := db.Client()
	defer rdb.Close()
	sum2, err := newTestProducer(t, rdb, "q").Submit(context.Background(), spec, Source{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if sum2.Batches != 500 || sum2.BatchesEnqueued+sum2.BatchesPresent != 500 || sum2.BatchesPresent < sum1.BatchesEnqueued {
		t.Errorf("resubmit summary = %+v (first enqueued %d)", sum2, sum1.BatchesEnqueued)
	}
	keys, ids := pendingKeys(t, db, "q")
	if len(keys) != 5000 || len(ids) != 500 {
		t.Errorf("%d keys in %d tasks, want 5000 in 500", len(keys), len(ids))
	}
	for k, n := range keys {
		if n != 1 {
			t.Errorf("key %s enqueued %d times", k, n)
		}
	}
	slices.Sort(ids)
	for i, id := range ids {
		if want := tasks.BatchID("crash", i); id != want {
			t.Fatalf("task %d: id %s, want %s", i, id, want)
		}
	}
	st, err := tasks.NewLedger(rdb).Status(context.Background(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalKeys != 5000 || st.Batches != 500 {
		t.Errorf("ledger counts %d keys in %d batches, want 5000 in 500", st.TotalKeys, st.Batches)
	}
}

func TestStrictEnqueuesNothing(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client()
	defer rdb.Close()
	p := filepath.Join(t.TempDir(), "k.txt")
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "K%d\n", i)
	}
	b.WriteString("bad\x00key\n")
	os.WriteFile(p, []byte(b.String()), 0o644)
	spec := customers
	spec.Run = "strict"
	spec.Strict = true
	_, err := newTestProducer(t, rdb, "q").Submit(context.Background(), spec, Source{Path: p})
	if !errors.Is(err, ErrInvalidKeys) {
		t.Fatalf("err = %v", err)
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if qs, _ := insp.Queues(); len(qs) != 0 {
		t.Errorf("queues %v exist after a failed strict submission", qs)
	}
	if _, err := tasks.NewLedger(rdb).Status(context.Background(), "strict"); !errors.Is(err, tasks.ErrRunNotFound) {
		t.Errorf("ledger status err = %v, want ErrRunNotFound", err)
	}
}

func TestProgressReports(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client()
	defer rdb.Close()
	var mu sync.Mutex
	var last Progress
	calls := 0
	p, _ := NewProducer(ProducerConfig{Redis: rdb, Queue: "q", ProgressInterval: time.Millisecond, Progress: func(pr Progress) {
		mu.Lock()
		defer mu.Unlock()
		if last.Done {
			t.Error("progress reported after Done")
		}
		calls++
		last = pr
	}})
	spec := customers
	sum, err := p.Submit(context.Background(), spec, Source{Path: keysFile(t, 300)})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !last.Done || last.KeysEnqueued != 300 || last.BatchesEnqueued != 3 || last.Bytes != last.TotalBytes || last.Run != sum.Run {
		t.Errorf("last progress = %+v", last)
	}
	if !strings.HasPrefix(sum.Run, "run-") || len(sum.Run) != len("run-20261127-101500-ab12") {
		t.Errorf("generated run name %q", sum.Run)
	}
}

func TestAddKeyCoalesces(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client()
	defer rdb.Close()
	p := newTestProducer(t, rdb, "trickle")
	ctx := context.Background()
	for i := range 250 {
		if err := p.AddKey(ctx, 7, soap.ActorSupplier, fmt.Sprintf("S%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	err := p.AddKey(ctx, 7, soap.ActorSupplier, strings.Repeat("s", 255))
	var ke *soap.KeyError
	if !errors.As(err, &ke) || err.Error() != `trickle key: external key "`+strings.Repeat("s", 40)+`": longer than 254 characters (255)` {
		t.Errorf("AddKey(too long) = %v", err)
	}

	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	group := tasks.GroupName(7, soap.ActorSupplier)
	agg, err := insp.ListAggregatingTasks("trickle", group, asynq.PageSize(1000))
	if err != nil || len(agg) != 250 {
		t.Fatalf("aggregating tasks: %d, %v", len(agg), err)
	}

	// A real server with the tasks aggregator merges them into full batches.
	var mu sync.Mutex
	var got [][]string
	srv := asynq.NewServer(db.Opt(), asynq.Config{
		Queues:           map[string]int{"trickle": 1},
		Concurrency:      2,
		GroupAggregator:  tasks.NewAggregator(tasks.AggregatorConfig{}),
		GroupMaxSize:     100,
		GroupGracePeriod: time.Second,
		LogLevel:         asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeResync, func(ctx context.Context, t *asynq.Task) error {
		var b tasks.Batch
		if err := json.Unmarshal(t.Payload(), &b); err != nil {
			return err
		}
		mu.Lock()
		got = append(got, b.Keys)
		mu.Unlock()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, b := range got {
			n += len(b)
		}
		sizes := make([]int, len(got))
		for i, b := range got {
			sizes[i] = len(b)
		}
		mu.Unlock()
		if n == 250 {
			slices.Sort(sizes)
			if !slices.Equal(sizes, []int{50, 100, 100}) {
				t.Errorf("batch sizes %v, want 100, 100, 50", sizes)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s, %d of 250 keys arrived in batches %v", n, sizes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
