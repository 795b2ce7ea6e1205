package lanes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/hibiken/asynq"
)

// TestAsynqKeys checks the asynq key names the lanes read against asynq itself.
func TestAsynqKeys(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	c := db.TestClient(t)
	ac := asynq.NewClientFromRedisClient(c)
	defer ac.Close()
	if _, err := ac.Enqueue(asynq.NewTask("x", nil), asynq.TaskID("id-1"), asynq.Queue("kq")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n := c.LLen(ctx, asynqPendingKey("kq")).Val(); n != 1 {
		t.Errorf("LLEN %s = %d, want 1", asynqPendingKey("kq"), n)
	}
	if n := c.Exists(ctx, asynqTaskKey("kq", "id-1")).Val(); n != 1 {
		t.Errorf("EXISTS %s = %d, want 1", asynqTaskKey("kq", "id-1"), n)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	c := db.TestClient(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no redis", Config{Queues: []string{"q"}}, "Config.Redis"},
		{"no queues", Config{Redis: c}, "Config.Queues"},
		{"empty queue", Config{Redis: c, Queues: []string{""}}, "Config.Queues[0]"},
		{"short idle", Config{Redis: c, Queues: []string{"q"}, MaxIdle: time.Millisecond}, "Config.MaxIdle"},
		{"in-flight under lease", Config{Redis: c, Queues: []string{"q"}, Lease: time.Hour, InFlightLease: time.Minute}, "Config.InFlightLease"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}

func TestEnqueueConflicts(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{ValidTenant: func(s string) error {
		if s == "bad" {
			return errors.New("tenant id \"bad\" is not allowed")
		}
		return nil
	}})
	ctx := context.Background()
	job := Job{ID: "k1", Type: "test:job"}
	if err := q.Enqueue(ctx, "acme", job); err != nil {
		t.Fatal(err)
	}
	err := q.Enqueue(ctx, "acme", job)
	if !errors.Is(err, ErrConflict) || !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("second Enqueue = %v, want ErrConflict wrapping asynq.ErrTaskIDConflict", err)
	}
	// In asynq already (enqueued there directly, or dispatched).
	ac := asynq.NewClientFromRedisClient(q.cfg.Redis)
	defer ac.Close()
	if _, err := ac.Enqueue(asynq.NewTask("test:job", nil), asynq.TaskID("k2"), asynq.Queue("lanes-test")); err != nil {
		t.Fatal(err)
	}
	conflicts, err := q.EnqueueMany(ctx, "acme", []Job{{ID: "k2", Type: "t"}, {ID: "k3", Type: "t"}, {ID: "k3", Type: "t"}, {ID: "k1", Type: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(conflicts)
	if want := []string{"k1", "k2", "k3"}; !slices.Equal(conflicts, want) {
		t.Errorf("conflicts = %v, want %v", conflicts, want)
	}
	if n, _ := q.Len(ctx, "acme"); n != 2 {
		t.Errorf("Len = %d, want 2 (k1, k3)", n)
	}
	for _, tt := range []struct {
		tenant string
		job    Job
		want   string
	}{
		{"acme", Job{Type: "t"}, "job ID is empty"},
		{"acme", Job{ID: "x"}, "Type is empty"},
		{"acme", Job{ID: "x", Type: "t", Queue: "other"}, `Queue "other" is not one the dispatcher feeds: want one of lanes-test`},
		{"acme", Job{ID: "x", Type: "t", MaxRetry: -1}, "MaxRetry is -1"},
		{"a{b}", Job{ID: "x", Type: "t"}, "contains '{' or '}'"},
		{"bad", Job{ID: "x", Type: "t"}, `tenant id "bad" is not allowed`},
	} {
		if err := q.Enqueue(ctx, tt.tenant, tt.job); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Enqueue(%q, %+v) = %v, want an error with %q", tt.tenant, tt.job, err, tt.want)
		}
	}
}

// TestEnqueueManyLarge stores a batch larger than one script call in order.
func TestEnqueueManyLarge(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{})
	js := jobs("big", 2*chunk+7)
	enqueue(t, q, "big", js)
	js[chunk+3].ID = "new-1" // one new job among nine stored ones
	conflicts, err := q.EnqueueMany(context.Background(), "big", js[chunk:chunk+10])
	if err != nil || len(conflicts) != 9 {
		t.Fatalf("EnqueueMany again: %d conflicts (want 9, one new), err %v", len(conflicts), err)
	}
	lane := q.cfg.Redis.LRange(context.Background(), q.tenantKeys("big").lane, 0, -1).Val()
	if len(lane) != 2*chunk+8 || lane[0] != "big-1" || lane[2*chunk+6] != fmt.Sprintf("big-%d", 2*chunk+7) || lane[2*chunk+7] != "new-1" {
		t.Errorf("lane has %d IDs from %s to %s", len(lane), lane[0], lane[len(lane)-1])
	}
}

// TestRoundRobin: jobs go to asynq one per tenant in turn, in each tenant's order.
func TestRoundRobin(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{LowWater: 1000})
	enqueue(t, q, "a", jobs("a", 4))
	enqueue(t, q, "b", jobs("b", 2))
	enqueue(t, q, "c", jobs("c", 1))
	run(t, q)
	eventually(t, 10*time.Second, "7 tasks in asynq", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 7 })
	got := pendingIDs(t, q.cfg.Redis, "lanes-test")
	want := []string{"a-1", "b-1", "c-1", "a-2", "b-2", "a-3", "a-4"}
	if !slices.Equal(got, want) {
		t.Errorf("dispatch order %v, want %v", got, want)
	}
	eventually(t, 10*time.Second, "an empty schedule", func() bool {
		due, err := q.Due(context.Background())
		return err == nil && len(due) == 0
	})
}

// TestLowWater: the dispatcher fills asynq up to LowWater and no further.
func TestLowWater(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{LowWater: 5})
	enqueue(t, q, "a", jobs("a", 20))
	run(t, q)
	eventually(t, 10*time.Second, "5 tasks in asynq", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 5 })
	st, err := q.Stats(context.Background(), "a")
	if err != nil || st.Queued != 15 || st.InFlight != 5 {
		t.Errorf("Stats = %+v, %v; want 15 queued, 5 in flight", st, err)
	}
	// Draining asynq lets the next ones through.
	q.cfg.Redis.Del(context.Background(), asynqPendingKey("lanes-test"))
	eventually(t, 10*time.Second, "5 more tasks in asynq", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 5 })
	if n, _ := q.Len(context.Background(), "a"); n != 10 {
		t.Errorf("Len = %d, want 10", n)
	}
}

// TestExactlyOnce: dispatchers of three workers, producers enqueuing while they run, and
// asynq servers: every job runs exactly once and the lanes end empty.
func TestExactlyOnce(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var qs []*Queue
	for range 3 {
		qs = append(qs, testQueue(t, db, Config{LowWater: 4}))
	}
	rec := newRecorder(qs[0], 0)
	serve(t, db, []string{"lanes-test"}, 4, rec)
	for _, q := range qs {
		run(t, q)
	}
	tenants := []string{"t1", "t2", "t3", "t4"}
	const per = 150
	for i, tenant := range tenants {
		go func() {
			js := jobs(tenant, per)
			for lo := 0; lo < per; lo += 30 {
				if _, err := qs[i%3].EnqueueMany(context.Background(), tenant, js[lo:lo+30]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	eventually(t, 60*time.Second, "every job run", func() bool { return rec.count() >= per*len(tenants) })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id, n := range rec.runs {
		if n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
	if len(rec.runs) != per*len(tenants) {
		t.Errorf("%d distinct jobs ran, want %d", len(rec.runs), per*len(tenants))
	}
	for _, tenant := range tenants {
		st, err := qs[0].Stats(context.Background(), tenant)
		if err != nil || st != (Stats{}) {
			t.Errorf("Stats(%s) = %+v, %v; want all zero", tenant, st, err)
		}
	}
}

// TestCrashBetweenTakeAndEnqueue: a dispatcher whose asynq enqueue fails, and one killed
// right after it took a job, leave their jobs leased; another dispatcher takes them after the
// lease, and asynq gets each once.
func TestCrashBetweenTakeAndEnqueue(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	broken := testQueue(t, db, Config{Lease: 3 * time.Second, OnError: func(error) {}})
	broken.client.Close()
	broken.client = asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond})
	enqueue(t, broken, "a", jobs("a", 2))
	ctx := context.Background()
	if _, err := broken.turn(ctx, "a", 0); err == nil {
		t.Fatal("turn with asynq unreachable: no error")
	}
	take(t, broken, "a") // killed after the take
	if st, _ := broken.Stats(ctx, "a"); st.Leased != 2 || st.Queued != 2 || st.InFlight != 2 {
		t.Fatalf("after the failed hand-overs: %+v, want both jobs queued and leased", st)
	}
	healthy := testQueue(t, db, Config{Lease: 3 * time.Second})
	run(t, healthy)
	eventually(t, 10*time.Second, "both jobs in asynq", func() bool { return len(pendingIDs(t, healthy.cfg.Redis, "lanes-test")) == 2 })
	eventually(t, 10*time.Second, "an empty lane", func() bool { st, _ := healthy.Stats(ctx, "a"); return st.Queued == 0 })
	if got := pendingIDs(t, healthy.cfg.Redis, "lanes-test"); !slices.Equal(got, []string{"a-1", "a-2"}) {
		t.Errorf("asynq has %v, want [a-1 a-2]", got)
	}
}

// take leases tenant's next job as a dispatcher would, and returns it.
func take(t *testing.T, q *Queue, tenant string) Job {
	t.Helper()
	k := q.tenantKeys(tenant)
	v, err := takeScript.Run(context.Background(), q.cfg.Redis, []string{k.lane, k.jobs, k.leased, k.inflight}, micros(q.cfg.Lease), micros(q.cfg.InFlightLease), 0).Slice()
	if err != nil || v[0] != "job" {
		t.Fatalf("take: %v, %v", v, err)
	}
	job, err := decodeJob(v[1].(string), v[2].(string))
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// TestCrashAfterEnqueue: asynq got the job but the dispatcher died before dropping it from
// the lane; the next dispatcher's enqueue meets ErrTaskIDConflict and drops it, once.
func TestCrashAfterEnqueue(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{Lease: 200 * time.Millisecond})
	enqueue(t, q, "a", jobs("a", 1))
	ctx := context.Background()
	job := take(t, q, "a")
	task, opts := job.task(q.cfg.Lease)
	if _, err := q.client.Enqueue(task, opts...); err != nil {
		t.Fatal(err)
	}
	run(t, q)
	eventually(t, 10*time.Second, "an empty lane", func() bool { st, _ := q.Stats(ctx, "a"); return st.Queued == 0 })
	if ids := pendingIDs(t, q.cfg.Redis, "lanes-test"); !slices.Equal(ids, []string{"a-1"}) {
		t.Errorf("asynq has %v, want [a-1] once", ids)
	}
}

// TestNotReadySkipped: a tenant that may not go is put off, and another takes the turn; a
// tenant at its cap holds no slot either, and Done lets it go on.
func TestNotReadySkipped(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var looks atomic.Int32
	q := testQueue(t, db, Config{
		LowWater: 1000,
		Ready: func(_ context.Context, tenant string) time.Duration {
			if tenant == "paused" {
				looks.Add(1)
				return time.Hour
			}
			return 0
		},
		MaxInFlight: func(tenant string) int {
			if tenant == "capped" {
				return 2
			}
			return 0
		},
	})
	enqueue(t, q, "paused", jobs("paused", 3))
	enqueue(t, q, "capped", jobs("capped", 3))
	enqueue(t, q, "free", jobs("free", 3))
	run(t, q)
	eventually(t, 10*time.Second, "5 tasks in asynq", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 5 })
	ctx := context.Background()
	got := pendingIDs(t, q.cfg.Redis, "lanes-test")
	slices.Sort(got)
	if want := []string{"capped-1", "capped-2", "free-1", "free-2", "free-3"}; !slices.Equal(got, want) {
		t.Errorf("asynq has %v, want %v", got, want)
	}
	due, _ := q.Due(ctx)
	if at := due["paused"]; time.Until(at) < 50*time.Minute {
		t.Errorf("paused tenant due at %s, want about an hour from now", at)
	}
	if n := looks.Load(); n != 1 {
		t.Errorf("Ready asked %d times of the paused tenant, want 1", n)
	}
	if err := q.Done(ctx, "capped", "capped-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "capped-3 in asynq after Done", func() bool {
		return slices.Contains(pendingIDs(t, q.cfg.Redis, "lanes-test"), "capped-3")
	})
}

// TestSpacing: a spaced tenant's next turn is Spacing after each hand-over; the others' at
// once, so they go first meanwhile.
func TestSpacing(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{
		LowWater: 1000,
		Spacing: func(_ context.Context, tenant string) time.Duration {
			if tenant == "spaced" {
				return time.Hour
			}
			return 0
		},
	})
	enqueue(t, q, "spaced", jobs("spaced", 3))
	enqueue(t, q, "free", jobs("free", 3))
	run(t, q)
	eventually(t, 10*time.Second, "4 tasks in asynq", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 4 })
	got := pendingIDs(t, q.cfg.Redis, "lanes-test")
	slices.Sort(got)
	if want := []string{"free-1", "free-2", "free-3", "spaced-1"}; !slices.Equal(got, want) {
		t.Errorf("asynq has %v, want %v", got, want)
	}
	due, _ := q.Due(context.Background())
	if at := due["spaced"]; time.Until(at) < 50*time.Minute {
		t.Errorf("spaced tenant due at %s, want about an hour from now", at)
	}
}

// TestRemove: removed jobs never reach asynq; Purge empties a lane.
func TestRemove(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{LowWater: 1000, Known: func(tenant string) bool { return tenant != "b" }})
	ctx := context.Background()
	enqueue(t, q, "a", jobs("a", 5))
	enqueue(t, q, "b", jobs("b", 5))
	n, err := q.Remove(ctx, "a", "a-2", "a-4", "a-9")
	if err != nil || n != 2 {
		t.Fatalf("Remove = %d, %v; want 2", n, err)
	}
	if n, err := q.Purge(ctx, "b"); err != nil || n != 5 {
		t.Fatalf("Purge = %d, %v; want 5", n, err)
	}
	run(t, q)
	eventually(t, 10*time.Second, "an empty schedule", func() bool { due, _ := q.Due(ctx); return len(due) == 0 })
	if got, want := pendingIDs(t, q.cfg.Redis, "lanes-test"), []string{"a-1", "a-3", "a-5"}; !slices.Equal(got, want) {
		t.Errorf("asynq has %v, want %v", got, want)
	}
}

// TestHoldUnknown: an unknown tenant's lane is held, not dispatched and not dropped, until
// it is known again and woken.
func TestHoldUnknown(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var known atomic.Bool
	q := testQueue(t, db, Config{LowWater: 1000, Known: func(tenant string) bool { return tenant != "gone" || known.Load() }})
	ctx := context.Background()
	enqueue(t, q, "gone", jobs("gone", 3))
	enqueue(t, q, "here", jobs("here", 2))
	run(t, q)
	eventually(t, 10*time.Second, "here's jobs in asynq", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 2 })
	eventually(t, 10*time.Second, "gone held an hold-recheck ahead", func() bool {
		due, _ := q.Due(ctx)
		return time.Until(due["gone"]) > 50*time.Second
	})
	if st, _ := q.Stats(ctx, "gone"); st.Queued != 3 || st.InFlight != 0 {
		t.Errorf("held lane: %+v, want 3 queued", st)
	}
	known.Store(true)
	if err := q.Wake(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "gone's jobs in asynq", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 5 })
}

// TestWakeIdleDispatcher: an idle dispatcher blocked on the wake-up list takes a new
// tenant's job at once, not after MaxIdle.
func TestWakeIdleDispatcher(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	q := testQueue(t, db, Config{MaxIdle: time.Minute})
	run(t, q)
	// Wait until the dispatcher blocks (it has read the empty schedule).
	eventually(t, 10*time.Second, "a blocked dispatcher", func() bool {
		return strings.Contains(q.cfg.Redis.ClientList(context.Background()).Val(), "cmd=blpop")
	})
	enqueue(t, q, "a", jobs("a", 1))
	eventually(t, 10*time.Second, "the job in asynq well before MaxIdle", func() bool { return len(pendingIDs(t, q.cfg.Redis, "lanes-test")) == 1 })
}

// TestMakeUp: a spaced tenant's late turn puts its next turn earlier by the lateness, as far
// as MakeUp allows and no further; without MakeUp nothing is made up.
func TestMakeUp(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		makeUp func(context.Context, string) time.Duration
		late   time.Duration
		want   time.Duration // next turn from now, about
	}{
		{"none", nil, 30 * time.Minute, time.Hour},
		{"within", func(context.Context, string) time.Duration { return 20 * time.Minute }, 10 * time.Minute, 50 * time.Minute},
		{"capped", func(context.Context, string) time.Duration { return 20 * time.Minute }, 30 * time.Minute, 40 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := testQueue(t, db, Config{Prefix: "mk-" + tt.name, LowWater: 1000, MakeUp: tt.makeUp,
				Spacing: func(context.Context, string) time.Duration { return time.Hour }})
			tenant := "spaced-" + tt.name
			enqueue(t, q, tenant, jobs(tenant, 2))
			if n, err := q.turn(ctx, tenant, tt.late); err != nil || n != 1 {
				t.Fatalf("turn = %d, %v", n, err)
			}
			due, err := q.Due(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Until(due[tenant]); got < tt.want-time.Minute || got > tt.want+time.Second {
				t.Errorf("next turn in %v, want about %v", got, tt.want)
			}
		})
	}
}
