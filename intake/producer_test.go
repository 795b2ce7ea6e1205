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

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
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
			if ti.ID != tasks.BatchID(b.RunKey(), b.Seq) {
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

var customers = RunSpec{ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}

// customersRun is customers as run.
func customersRun(run string) RunSpec {
	spec := customers
	spec.Run = run
	return spec
}

func TestSubmitEnqueues(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	p := newTestProducer(t, rdb, "q1")
	spec := customersRun("r1")
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
	wantEachOnce(t, keys)
	st, err := ledger.NewLedger(rdb).Status(context.Background(), "r1")
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

// cancelAfter cancels when the n-th asynq enqueue script (or, with match set, the n-th
// script whose arguments contain match) has been sent to Redis.
type cancelAfter struct {
	n      atomic.Int64
	after  int64
	cancel func()
	match  string
}

func (h *cancelAfter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *cancelAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *cancelAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			match := h.match
			if match == "" {
				match = "asynq:{q}:pending"
			}
			if strings.Contains(fmt.Sprint(cmd.Args()), match) && h.n.Add(1) == h.after {
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
	spec := customersRun("crash")
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

	rdb := db.TestClient(t)
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
	wantEachOnce(t, keys)
	slices.Sort(ids)
	for i, id := range ids {
		if want := tasks.BatchID("crash", i); id != want {
			t.Fatalf("task %d: id %s, want %s", i, id, want)
		}
	}
	st, err := ledger.NewLedger(rdb).Status(context.Background(), "crash")
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
	rdb := db.TestClient(t)
	p := filepath.Join(t.TempDir(), "k.txt")
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "K%d\n", i)
	}
	b.WriteString("bad\x00key\n")
	os.WriteFile(p, []byte(b.String()), 0o644)
	spec := customersRun("strict")
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
	if _, err := ledger.NewLedger(rdb).Status(context.Background(), "strict"); !errors.Is(err, ledger.ErrRunNotFound) {
		t.Errorf("ledger status err = %v, want ErrRunNotFound", err)
	}
	// Nothing at all was written: the fixed input may be submitted under the run with other
	// settings.
	if n, err := rdb.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Errorf("%d keys in Redis after a failed strict submission (%v)", n, err)
	}
	os.WriteFile(p, []byte("K1\nK2\n"), 0o644)
	spec.BatchSize = 50
	if _, err := newTestProducer(t, rdb, "q").Submit(context.Background(), spec, Source{Path: p}); err != nil {
		t.Errorf("fixed input after a failed strict submission: %v", err)
	}
}

func TestProgressReports(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
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
	rdb := db.TestClient(t)
	p, err := NewProducer(ProducerConfig{Redis: rdb, TrickleQueue: "trickle"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 250 {
		if err := p.AddKey(ctx, 7, erpsync.ActorSupplier, fmt.Sprintf("S%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	err = p.AddKey(ctx, 7, erpsync.ActorSupplier, strings.Repeat("s", 255))
	var ke *erpsync.KeyError
	if !errors.As(err, &ke) || err.Error() != `invalid batch: trickle key: external key "`+strings.Repeat("s", 40)+`": longer than 254 characters (255)` {
		t.Errorf("AddKey(too long) = %v", err)
	}

	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	group := tasks.GroupName(7, erpsync.ActorSupplier)
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
	var sizes []int
	testwait.For(t, "all 250 keys in batches", 20*time.Second, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		sizes = sizes[:0]
		for _, b := range got {
			n += len(b)
			sizes = append(sizes, len(b))
		}
		return n == 250, fmt.Errorf("%d keys arrived in batches %v", n, sizes)
	})
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{50, 100, 100}) {
		t.Errorf("batch sizes %v, want 100, 100, 50", sizes)
	}
}

// TestResubmitToAnotherQueueIsRefused: asynq task IDs are unique per queue, so a run
// resubmitted to another queue would enqueue every batch a second time.
func TestResubmitToAnotherQueueIsRefused(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	path := keysFile(t, 250)
	spec := customersRun("moved")
	if _, err := newTestProducer(t, rdb, "qa").Submit(context.Background(), spec, Source{Path: path}); err != nil {
		t.Fatal(err)
	}
	sum, err := newTestProducer(t, rdb, "qb").Submit(context.Background(), spec, Source{Path: path})
	if !errors.Is(err, ErrRunMismatch) || !strings.Contains(err.Error(), "queue qa") {
		t.Errorf("resubmit to another queue: err = %v, want ErrRunMismatch naming queue qa", err)
	}
	if sum.BatchesEnqueued != 0 {
		t.Errorf("resubmit to another queue enqueued %d batches", sum.BatchesEnqueued)
	}
	if keys, _ := pendingKeys(t, db, "qa"); len(keys) != 250 {
		t.Errorf("queue qa holds %d keys, want 250", len(keys))
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if qi, err := insp.GetQueueInfo("qb"); err == nil && qi.Size != 0 {
		t.Errorf("queue qb holds %d tasks", qi.Size)
	}
}

// TestResubmitOtherInputIsRefused: a batch ID already taken by other keys means the input is
// not the one first submitted under the run; treating the batch as present would silently
// drop the new keys.
func TestResubmitOtherInputIsRefused(t *testing.T) {
	t.Parallel()
	lines := func(prefix string, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s%04d\n", prefix, i)
		}
		return b.String()
	}
	tests := []struct {
		name   string
		second string // the input submitted second
		want   string
	}{
		{"other keys", lines("B", 250), `key 1 is "A0000" there, "B0000" in this input`},
		{"keys appended", lines("A", 260), `it holds 50 keys, this input 60`},
		{"one key changed", strings.Replace(lines("A", 250), "A0117\n", "X0117\n", 1), `key 18 is "A0117" there, "X0117" in this input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			rdb := db.TestClient(t)
			p, err := NewProducer(ProducerConfig{Redis: rdb, Queue: "q", Concurrency: 1}) // the first difference is reported
			if err != nil {
				t.Fatal(err)
			}
			spec := customersRun("changed")
			if _, err := p.Submit(context.Background(), spec, Source{Path: writeFile(t, "k1.txt", lines("A", 250))}); err != nil {
				t.Fatal(err)
			}
			_, err = p.Submit(context.Background(), spec, Source{Path: writeFile(t, "k2.txt", tt.second)})
			if !errors.Is(err, ErrRunMismatch) || !strings.Contains(err.Error(), "already holds other keys ("+tt.want+")") {
				t.Errorf("err = %v, want ErrRunMismatch with %q", err, tt.want)
			}
		})
	}
}

// TestTaskOptionsChecked: options that would break a run's batch IDs, or that asynq would
// refuse for every batch, fail NewProducer instead of a half-registered run.
func TestTaskOptionsChecked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opt  asynq.Option
		want string
	}{
		{"task ID", asynq.TaskID("x"), "task option TaskID("},
		{"queue", asynq.Queue("x"), "task option Queue("},
		{"group", asynq.Group("x"), "task option Group("},
		{"sub-second timeout", asynq.Timeout(500 * time.Millisecond), "task timeout 500ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewProducer(ProducerConfig{TaskOptions: []asynq.Option{asynq.MaxRetry(2), tt.opt}})
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrConfig containing %q", err, tt.want)
			}
		})
	}
	if _, err := NewProducer(ProducerConfig{TaskOptions: []asynq.Option{asynq.MaxRetry(2), asynq.Retention(time.Hour)}}); err != nil {
		t.Errorf("ordinary options: %v", err)
	}
}

// TestProgressMatchesSummary: the last progress report and the summary count the same keys
// as enqueued, also when a resubmission finds every batch present.
func TestProgressMatchesSummary(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	var last Progress
	p, err := NewProducer(ProducerConfig{Redis: rdb, Queue: "q", Progress: func(pr Progress) { last = pr }})
	if err != nil {
		t.Fatal(err)
	}
	spec := customersRun("again")
	path := keysFile(t, 300)
	for i := range 2 {
		sum, err := p.Submit(context.Background(), spec, Source{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if !last.Done || last.KeysEnqueued != sum.KeysEnqueued || last.BatchesEnqueued != int64(sum.BatchesEnqueued) || last.BatchesPresent != int64(sum.BatchesPresent) {
			t.Errorf("submission %d: last progress %+v, summary %+v", i+1, last, sum)
		}
	}
}

// TestCancelWithCause: a context cancelled with a cause (signal.NotifyContext gives the
// signal as the cause) still ends Submit with an error that is context.Canceled.
func TestCancelWithCause(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	signal := errors.New("interrupt signal received")
	rdb.AddHook(&cancelAfter{after: 3, cancel: func() { cancel(signal) }})
	spec := customersRun("signal")
	spec.BatchSize = 10
	_, err := newTestProducer(t, rdb, "q").Submit(ctx, spec, Source{Path: keysFile(t, 5000)})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, signal) {
		t.Errorf("err = %v, want context.Canceled with the cause", err)
	}
}

// TestInterruptLeavesNoBatchUnqueued: a batch registered in the ledger when the context is
// cancelled (Ctrl-C) is still enqueued; otherwise the run would count keys that nothing
// will ever resync, and stay active until someone resubmits it.
func TestInterruptLeavesNoBatchUnqueued(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb.AddHook(&cancelAfter{after: 5, cancel: cancel, match: "erpresync:{interrupted}"})
	spec := customersRun("interrupted")
	spec.BatchSize = 10
	sum, err := newTestProducer(t, rdb, "q").Submit(ctx, spec, Source{Path: keysFile(t, 5000)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	keys, ids := pendingKeys(t, db, "q")
	st, err := ledger.NewLedger(rdb).Status(context.Background(), "interrupted")
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches != int64(len(ids)) || st.TotalKeys != int64(len(keys)) || sum.BatchesEnqueued != len(ids) {
		t.Errorf("ledger: %d batches, %d keys; queue: %d batches, %d keys; summary: %d enqueued",
			st.Batches, st.TotalKeys, len(ids), len(keys), sum.BatchesEnqueued)
	}
}

// TestNoKeys: an input without a valid key is an error wrapping ErrNoKeys naming the input
// (unless AllowEmpty), enqueues nothing, and leaves the run in the ledger as empty with its
// rejected keys; a dry run says the same without touching Redis.
func TestNoKeys(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	tests := []struct {
		name, content, csvColumn string
		stdin                    bool
		allowEmpty               bool
		want                     string // error; "" for none
		rejected                 int64
	}{
		{name: "empty file", want: "no keys were read: in.txt is empty"},
		{name: "empty stdin", stdin: true, want: "no keys were read: stdin is empty"},
		{name: "empty CSV", csvColumn: "erp_key", want: "no keys were read: in.txt is empty"},
		{name: "blank lines", content: "\n  \r\n\n", want: "no keys were read: in.txt holds no key (only blank lines or a CSV header)"},
		{name: "CSV header only", content: "name,erp_key\n", csvColumn: "erp_key", want: "no keys were read: in.txt holds no key (only blank lines or a CSV header)"},
		{name: "only invalid", content: "a\x00\nb\x01\n", want: "no keys were read: in.txt holds 2 records, 2 invalid, no valid key", rejected: 2},
		{name: "allowed", allowEmpty: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := Source{Name: "in.txt", CSVColumn: tt.csvColumn}
			if tt.stdin {
				src = Source{R: strings.NewReader(tt.content)}
			} else {
				src.Path = writeFile(t, "in.txt", tt.content)
			}
			queue := fmt.Sprintf("nokeys%d", i)
			run := "nokeys-" + strings.ReplaceAll(tt.name, " ", "-")
			spec := customers
			spec.Run, spec.AllowEmpty = run, tt.allowEmpty
			for _, dry := range []bool{true, false} {
				spec.DryRun = dry
				_, err := newTestProducer(t, db.Client(), queue).Submit(context.Background(), spec, src)
				if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, ErrNoKeys) || err.Error() != "submit run "+run+": "+tt.want) {
					t.Fatalf("dry run %v: err = %v, want %q", dry, err, tt.want)
				}
				if tt.stdin {
					src.R = strings.NewReader(tt.content)
				}
			}
			st, err := ledger.NewLedger(db.Client()).Status(context.Background(), run)
			if err != nil || st.State != ledger.RunEmpty || st.TotalKeys != 0 || st.RejectedKeys != tt.rejected {
				t.Errorf("status = %+v, %v; want an empty run with %d rejected", st, err, tt.rejected)
			}
			insp := asynq.NewInspectorFromRedisClient(db.Client())
			if qi, err := insp.GetQueueInfo(queue); err == nil && qi.Size != 0 {
				t.Errorf("enqueued %d tasks", qi.Size)
			}
		})
	}
}

// TestRejectedKeysRecorded: keys skipped as invalid are kept in the run with line and reason,
// and a resubmission of the same input does not count them twice.
func TestRejectedKeysRecorded(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	path := writeFile(t, "k.txt", "A1\nb\x01d\nA2\n"+strings.Repeat("L", 300)+"\n")
	spec := customersRun("rej")
	for range 2 {
		if _, err := newTestProducer(t, db.Client(), "rej").Submit(context.Background(), spec, Source{Path: path, Name: "k.txt"}); err != nil {
			t.Fatal(err)
		}
	}
	l := ledger.NewLedger(db.Client())
	st, _ := l.Status(context.Background(), "rej")
	rej, err := l.Rejected(context.Background(), "rej")
	if err != nil || st.RejectedKeys != 2 || st.TotalKeys != 2 || len(rej) != 2 {
		t.Fatalf("status %+v, rejected %+v, %v", st, rej, err)
	}
	want := ledger.RejectedKey{Source: "k.txt", Line: 2, Key: "b\x01d", Reason: "contains control character U+0001 at byte 1, which XML 1.0 cannot carry"}
	if rej[0] != want || rej[1].Line != 4 || rej[1].Reason != "longer than 254 characters (300)" || len(rej[1].Key) > 45 {
		t.Errorf("rejected = %+v", rej)
	}
}

// TestCutSubmissionIsIncomplete: a submission cut off before its end leaves its run
// incomplete in the ledger, never finished, whatever its batches do (ledger.RunIncomplete);
// submitting the same input again completes and seals it.
func TestCutSubmissionIsIncomplete(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	path := keysFile(t, 300)
	spec := customersRun("cut")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newTestProducer(t, rdb, "q")
	p.cfg.onBatch = func(int, []string) { cancel() }
	if _, err := p.Submit(ctx, spec, Source{Path: path}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cut submission: %v, want context.Canceled", err)
	}
	// Until its lease lapses the run may still be receiving; then it is incomplete.
	l := ledger.NewLedger(rdb).WithClock(func() time.Time { return time.Now().Add(ledger.IntakeLease + time.Second) })
	st, err := l.Status(context.Background(), "cut")
	if err != nil || st.State != ledger.RunIncomplete || !st.FinishedAt.IsZero() {
		t.Fatalf("after the cut: %+v %v; want incomplete, not finished", st, err)
	}
	if _, err := newTestProducer(t, rdb, "q").Submit(context.Background(), spec, Source{Path: path}); err != nil {
		t.Fatal(err)
	}
	if st, err = l.Status(context.Background(), "cut"); err != nil || st.State != ledger.RunActive || st.TotalKeys != 300 {
		t.Fatalf("resubmitted: %+v %v; want active with 300 keys", st, err)
	}
}

// TestTrickleRunNameRefused: a producer may not name its run like a trickle run.
func TestTrickleRunNameRefused(t *testing.T) {
	t.Parallel()
	p, err := NewProducer(ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	spec := customers
	spec.Run, spec.DryRun = tasks.TrickleRun(time.Now(), 3, spec.ActorType), true
	if _, err := p.Submit(context.Background(), spec, Source{R: strings.NewReader("A\n")}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Submit as %s: %v, want a refusal", spec.Run, err)
	}
}

// wantEachOnce checks that every key of pendingKeys' count was enqueued exactly once.
func wantEachOnce(t *testing.T, keys map[string]int) {
	t.Helper()
	for k, n := range keys {
		if n != 1 {
			t.Errorf("key %s enqueued %d times", k, n)
		}
	}
}

// TestSubmissionRenewsItsIntake: a submission that takes longer than the intake lease keeps
// its run receiving (not incomplete) by renewing the lease while it goes on.
func TestSubmissionRenewsItsIntake(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	path := keysFile(t, 300)
	spec := customersRun("long")
	p := newTestProducer(t, rdb, "q")
	p.cfg.renewEvery = 20 * time.Millisecond
	release := make(chan struct{})
	var once sync.Once
	p.cfg.onBatch = func(int, []string) { once.Do(func() { <-release }) }
	opened := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := p.Submit(context.Background(), spec, Source{Path: path})
		done <- err
	}()
	// Seen from a lease's length after it was opened, the run still receives only if the
	// submission renewed the lease meanwhile.
	later := ledger.NewLedger(rdb).WithClock(func() time.Time { return opened.Add(ledger.IntakeLease + 200*time.Millisecond) })
	unblock := sync.OnceFunc(func() { close(release) })
	defer unblock() // also when the wait fails
	testwait.For(t, "the submission's intake renewed", 10*time.Second, func() (bool, error) {
		st, err := later.Status(context.Background(), "long")
		return err == nil && st.Receiving, err
	})
	unblock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
