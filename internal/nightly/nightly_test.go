package nightly

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testclock"
	"github.com/erpresync/erpresync/internal/testwait"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestParseConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(`{"entries": [{"name": "customers", "cron": "30 2 * * *", "erp_connection": 3,
		"actor_type": "Customer", "source": "/x/c-*.csv", "csv_column": "erp_key", "csv_delimiter": ";"},
		{"name": "suppliers", "cron": "@daily", "erp_connection": 3, "actor_type": "2", "source": "/x/s.txt"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Entries) != 2 || cfg.Entries[0].ActorType != erpsync.ActorCustomer || cfg.Entries[1].ActorType != erpsync.ActorSupplier ||
		cfg.Entries[0].source("p").CSVComma != ';' {
		t.Errorf("config = %+v", cfg)
	}
	list, err := LoadConfig(`[{"name":"a","cron":"@every 1h","erp_connection":1,"actor_type":"person","source":"/a"}]`)
	if err != nil || len(list.Entries) != 1 {
		t.Errorf("bare list: %+v, %v", list, err)
	}

	ok := `"name":"a","cron":"@daily","erp_connection":1,"actor_type":"Customer","source":"/a"`
	tests := []struct {
		name, json, want string
	}{
		{"bad name", `[{"name":"a b","cron":"@daily","erp_connection":1,"actor_type":"Customer","source":"/a"}]`,
			`invalid nightly configuration: name "a b": want 1 to 40 letters, digits, '-' or '_'`},
		{"bad cron", `[{"name":"a","cron":"2 * *","erp_connection":1,"actor_type":"Customer","source":"/a"}]`,
			`invalid nightly configuration: a: cron "2 * *": expected exactly 5 fields, found 3: [2 * *] (want five fields like "30 2 * * *" or a descriptor like "@daily")`},
		{"connection", `[{"name":"a","cron":"@daily","actor_type":"Customer","source":"/a"}]`,
			`invalid nightly configuration: a: erp_connection 0: must be a positive integer`},
		{"actor", `[{"name":"a","cron":"@daily","erp_connection":1,"source":"/a"}]`,
			`invalid nightly configuration: a: actor_type: actor type Unknown: want one of Customer, Supplier, Partner, Person, Project, Employee, Sale`},
		{"unknown actor", `[{"name":"a","cron":"@daily","erp_connection":1,"actor_type":"Client","source":"/a"}]`,
			`invalid nightly configuration: actor type "Client": want one of Customer, Supplier, Partner, Person, Project, Employee, Sale`},
		{"source", `[{"name":"a","cron":"@daily","erp_connection":1,"actor_type":"Customer"}]`,
			`invalid nightly configuration: a: source is empty: want a file path or a glob`},
		{"twice", `[{` + ok + `},{` + ok + `}]`, `invalid nightly configuration: entry 1: name "a" is used twice`},
		{"unknown field", `[{` + ok + `,"cronn":"x"}]`, `invalid nightly configuration: json: unknown field "cronn"`},
		{"batch size", `[{` + ok + `,"batch_size":5000}]`, `invalid nightly configuration: a: batch_size 5000: want 1 to 1000 (0 for the default 100)`},
		{"quote delimiter", `[{` + ok + `,"csv_column":"k","csv_delimiter":"\""}]`,
			`invalid nightly configuration: a: CSV delimiter '"': want a single character other than a quote or a line break`},
		{"blank column", `[{` + ok + `,"csv_column":" "}]`, `invalid nightly configuration: a: CSV column " " is blank: want a header name or a 0-based index`},
		{"negative column", `[{` + ok + `,"csv_column":"-1"}]`, `invalid nightly configuration: a: CSV column -1: an index counts from 0`},
		{"bad glob", `[{"name":"a","cron":"@daily","erp_connection":1,"actor_type":"Customer","source":"/x/[a-"}]`,
			`invalid nightly configuration: a: source "/x/[a-": syntax error in pattern (want a file path or a glob like /exports/customers-*.csv)`},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(tt.json))
		got := ""
		if err != nil {
			got = strings.TrimPrefix(err.Error(), "entry 0: ")
		}
		if got != tt.want || !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v\nwant %s", tt.name, err, tt.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

type fixture struct {
	db      *redistest.DB
	rdb     *redis.Client
	h       *Handler
	clock   *testclock.Clock
	metrics *Metrics
	dir     string
	queue   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	queue := "nightly-test"
	p, err := intake.NewProducer(intake.ProducerConfig{Redis: rdb, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, rdb: rdb, queue: queue, dir: t.TempDir(),
		clock:   testclock.New(time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)),
		metrics: NewMetrics(prometheus.NewRegistry())}
	f.h, err = NewHandler(HandlerConfig{Producer: p, Redis: rdb, Metrics: f.metrics, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) write(t *testing.T, name string, keys ...string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(keys, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) fire(t *testing.T, e Entry) error {
	t.Helper()
	return f.h.ProcessTask(context.Background(), nightlyTask(t, e))
}

// nightlyTask builds the task exactly as Register does.
func nightlyTask(t *testing.T, e Entry) *asynq.Task {
	t.Helper()
	s := &recordingScheduler{}
	if _, err := Register(s, Config{Entries: []Entry{e}}); err != nil {
		t.Fatal(err)
	}
	return s.tasks[0]
}

type recordingScheduler struct{ tasks []*asynq.Task }

func (r *recordingScheduler) Register(spec string, t *asynq.Task, opts ...asynq.Option) (string, error) {
	r.tasks = append(r.tasks, t)
	return fmt.Sprint(len(r.tasks)), nil
}

func (f *fixture) outcome(entry, outcome string) float64 {
	return testutil.ToFloat64(f.metrics.Runs.WithLabelValues(entry, outcome))
}

func (f *fixture) status(t *testing.T, run string) (ledger.RunStatus, error) {
	t.Helper()
	return ledger.NewLedger(f.rdb).Status(context.Background(), run)
}

func TestHandlerSubmitsAndRefusesOverlap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := Entry{Name: "customers", Cron: "@daily", ErpConnection: 3, ActorType: erpsync.ActorCustomer,
		Source: filepath.Join(f.dir, "customers-*.txt")}
	old := f.write(t, "customers-1.txt", "OLD1")
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	f.write(t, "customers-2.txt", "C1", "C2", "C1", "C3")

	if err := f.fire(t, e); err != nil {
		t.Fatal(err)
	}
	st, err := f.status(t, "nightly-customers-2026-11-27")
	if err != nil || st.TotalKeys != 3 || st.State != ledger.RunActive || st.Source != "nightly" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	if f.outcome("customers", OutcomeSubmitted) != 1 || testutil.ToFloat64(f.metrics.Keys.WithLabelValues("customers")) != 3 {
		t.Errorf("metrics after the first run")
	}

	// The same day again (a retry, a second scheduler): nothing new is enqueued.
	if err := f.fire(t, e); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.status(t, "nightly-customers-2026-11-27"); st.TotalKeys != 3 || st.Batches != 1 {
		t.Errorf("status after refire = %+v", st)
	}
	if testutil.ToFloat64(f.metrics.Keys.WithLabelValues("customers")) != 3 {
		t.Errorf("keys counted twice")
	}

	// Next day, the first run still pending: refused, counted, no error.
	f.clock.Add(24 * time.Hour)
	for range 3 {
		if err := f.fire(t, e); err != nil {
			t.Fatalf("overlap returned %v, want nil", err)
		}
	}
	if got := f.outcome("customers", OutcomeOverlap); got != 3 {
		t.Errorf("overlap count = %v", got)
	}
	if _, err := f.status(t, "nightly-customers-2026-11-28"); !errors.Is(err, ledger.ErrRunNotFound) {
		t.Errorf("second run started despite overlap: %v", err)
	}

	// Once the first run is done, the next day's run starts.
	finishRuns(t, f.db, f.queue)
	if st, _ := f.status(t, "nightly-customers-2026-11-27"); st.State != ledger.RunDone {
		t.Fatalf("first run = %+v", st)
	}
	if err := f.fire(t, e); err != nil {
		t.Fatal(err)
	}
	if st, err := f.status(t, "nightly-customers-2026-11-28"); err != nil || st.TotalKeys != 3 {
		t.Errorf("second run = %+v, %v", st, err)
	}
}

func TestHandlerSourceProblems(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	entry := func(name, source string) Entry {
		return Entry{Name: name, Cron: "@daily", ErpConnection: 3, ActorType: erpsync.ActorCustomer, Source: source}
	}
	tests := []struct {
		name    string
		source  string
		wantErr error
		outcome string
		msg     string
	}{
		{"missing", filepath.Join(f.dir, "nope.txt"), ErrSourceMissing, OutcomeSourceMissing,
			`nightly missing: source "` + filepath.Join(f.dir, "nope.txt") + `": nightly source missing: no file matches`},
		{"glob-none", filepath.Join(f.dir, "none-*.csv"), ErrSourceMissing, OutcomeSourceMissing, ""},
		{"empty", f.write(t, "empty.txt"), ErrSourceEmpty, OutcomeSourceEmpty,
			`nightly empty: nightly source empty: submit run nightly-empty-2026-11-27: no keys were read: ` + filepath.Join(f.dir, "empty.txt") + ` is empty`},
		{"blank", f.write(t, "blank.txt", "", "  ", ""), ErrSourceEmpty, OutcomeSourceEmpty, ""},
		{"invalid", f.write(t, "invalid.txt", "a\x00", "b\x01"), ErrSourceEmpty, OutcomeSourceEmpty,
			`nightly invalid: nightly source empty: submit run nightly-invalid-2026-11-27: no keys were read: ` + filepath.Join(f.dir, "invalid.txt") + ` holds 2 records, 2 invalid, no valid key`},
	}
	for _, tt := range tests {
		err := f.fire(t, entry(tt.name, tt.source))
		if !errors.Is(err, tt.wantErr) || tt.msg != "" && err.Error() != tt.msg {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if tt.wantErr == ErrSourceEmpty && !errors.Is(err, intake.ErrNoKeys) {
			t.Errorf("%s: err = %v, want it to wrap intake.ErrNoKeys (the rule enqueue applies)", tt.name, err)
		}
		if got := f.outcome(tt.name, tt.outcome); got != 1 {
			t.Errorf("%s: outcome %s counted %v times", tt.name, tt.outcome, got)
		}
		// An empty source leaves its run visible, as `enqueue` does; a missing one has no run.
		st, err := f.status(t, "nightly-"+tt.name+"-2026-11-27")
		if tt.wantErr == ErrSourceEmpty && (err != nil || st.State != ledger.RunEmpty) {
			t.Errorf("%s: status = %+v, %v; want an empty run", tt.name, st, err)
		}
		if tt.wantErr == ErrSourceMissing && !errors.Is(err, ledger.ErrRunNotFound) {
			t.Errorf("%s: status = %+v, %v; want no run", tt.name, st, err)
		}
	}
	insp := asynq.NewInspector(f.db.Opt())
	defer insp.Close()
	if qs, _ := insp.Queues(); len(qs) != 0 {
		t.Errorf("something was enqueued: queues %v", qs)
	}
}

// TestSchedulerFiresAndOverlaps runs the real pieces: an asynq.Scheduler with a short spec,
// an asynq.Server serving the nightly handler, and a clock that moves a day per firing.
// The first firing submits; later ones find the run still pending and count overlaps.
func TestSchedulerFiresAndOverlaps(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	src := f.write(t, "persons.txt", "P1", "P2")
	cfg := Config{Entries: []Entry{{Name: "persons", Cron: "@every 1s", ErpConnection: 5, ActorType: erpsync.ActorPerson, Source: src}}}

	sched := asynq.NewScheduler(f.db.Opt(), &asynq.SchedulerOpts{LogLevel: asynq.FatalLevel})
	ids, err := Register(sched, cfg, asynq.Queue("sched"))
	if err != nil || len(ids) != 1 {
		t.Fatalf("Register = %v, %v", ids, err)
	}
	if err := sched.Start(); err != nil {
		t.Fatal(err)
	}
	defer sched.Shutdown()

	var mu sync.Mutex
	fired := 0
	srv := asynq.NewServer(f.db.Opt(), asynq.Config{Queues: map[string]int{"sched": 1}, Concurrency: 1, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeNightly, func(ctx context.Context, task *asynq.Task) error {
		err := f.h.ProcessTask(ctx, task)
		mu.Lock()
		fired++
		mu.Unlock()
		f.clock.Add(24 * time.Hour)
		return err
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	testwait.For(t, "the scheduler firing twice", 15*time.Second, func() (bool, error) {
		mu.Lock()
		n := fired
		mu.Unlock()
		return n >= 2, fmt.Errorf("fired %d times", n)
	})
	if st, err := f.status(t, "nightly-persons-2026-11-27"); err != nil || st.TotalKeys != 2 {
		t.Errorf("first run = %+v, %v", st, err)
	}
	if f.outcome("persons", OutcomeSubmitted) != 1 || f.outcome("persons", OutcomeOverlap) < 1 {
		t.Errorf("outcomes: submitted %v, overlap %v", f.outcome("persons", OutcomeSubmitted), f.outcome("persons", OutcomeOverlap))
	}
}

func TestRegisterRejectsBadConfig(t *testing.T) {
	t.Parallel()
	s := &recordingScheduler{}
	_, err := Register(s, Config{Entries: []Entry{{Name: "x"}}})
	if !errors.Is(err, ErrConfig) || len(s.tasks) != 0 {
		t.Errorf("err = %v, %d tasks", err, len(s.tasks))
	}
}

// TestRetryAfterMidnightKeepsItsRun: a retry resubmits the run its first attempt named, even
// when it runs on the next day; it must not start the next day's run with this day's file.
func TestRetryAfterMidnightKeepsItsRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	src := filepath.Join(f.dir, "late.txt")
	e := Entry{Name: "late", Cron: "@daily", ErpConnection: 3, ActorType: erpsync.ActorCustomer, Source: src}
	client := asynq.NewClient(f.db.Opt())
	defer client.Close()
	task := nightlyTask(t, e)
	if _, err := client.Enqueue(task, asynq.Queue("retry"), asynq.TaskID("late-1"), asynq.MaxRetry(1)); err != nil {
		t.Fatal(err)
	}

	second := make(chan error, 1)
	srv := asynq.NewServer(f.db.Opt(), asynq.Config{Queues: map[string]int{"retry": 1}, Concurrency: 1, LogLevel: asynq.FatalLevel,
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return 0 },
		TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 20 * time.Millisecond})
	var attempts atomic.Int32
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeNightly, func(ctx context.Context, task *asynq.Task) error {
		err := f.h.ProcessTask(ctx, task)
		if attempts.Add(1) == 1 {
			// The export arrives late, and the retry runs after midnight.
			if err := os.WriteFile(src, []byte("L1\nL2\n"), 0o644); err != nil {
				t.Error(err)
			}
			f.clock.Add(24 * time.Hour)
		} else {
			second <- err
		}
		return err
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no retry within 15 s")
	}
	if st, err := f.status(t, "nightly-late-2026-11-27"); err != nil || st.TotalKeys != 2 {
		t.Errorf("the first attempt's run: %+v, %v", st, err)
	}
	if _, err := f.status(t, "nightly-late-2026-11-28"); !errors.Is(err, ledger.ErrRunNotFound) {
		t.Errorf("the retry started the next day's run: %v", err)
	}
}
