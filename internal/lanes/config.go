package lanes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config's durations and limits.
const (
	DefaultPrefix        = "lanes"
	DefaultLowWater      = 20
	DefaultLease         = 30 * time.Second
	DefaultInFlightLease = 15 * time.Minute
	DefaultHoldRecheck   = time.Minute
	DefaultCapRecheck    = 30 * time.Second
	DefaultPollInterval  = 5 * time.Millisecond
	DefaultMaxIdle       = 5 * time.Second
)

// Config configures a Queue. Only Redis and Queues are required.
type Config struct {
	// Redis holds the lanes and asynq's tasks: lanes read asynq's pending lists and task keys
	// on it and enqueue through an asynq client built on it, so it must be asynq's Redis. A
	// *redis.ClusterClient works: each tenant's keys share one hash slot, the schedule another.
	Redis redis.UniversalClient
	// Queues are the asynq queues the dispatcher feeds, the first being the default of a Job
	// with no Queue. Their summed pending count is held under LowWater. Required.
	Queues []string
	// Prefix begins every key of the lanes. Zero value: DefaultPrefix ("lanes").
	Prefix string
	// LowWater is the pending count, summed over Queues, under which the dispatcher hands asynq
	// more jobs. About twice the fleet's worker slots keeps every slot busy while a newly
	// arrived tenant waits behind at most that many tasks. Zero value: DefaultLowWater.
	LowWater int
	// Lease is how long a dispatcher holds a job it took before another may take it again
	// (a dispatcher killed between take and enqueue). Also the least asynq retention of a
	// dispatched task, so a retaken job finds asynq's copy. Zero value: DefaultLease.
	Lease time.Duration
	// InFlightLease is how long a dispatched job counts against MaxInFlight when Done never
	// comes (a worker killed mid-task). Zero value: DefaultInFlightLease.
	InFlightLease time.Duration
	// Ready says whether tenant may be dispatched to now: 0 = go, else how long until it may
	// (rate-limit wait, breaker open, paused). Called by Run for the tenant whose turn it is;
	// it must be cheap and safe for concurrent use. Nil: every tenant is always ready.
	Ready func(ctx context.Context, tenant string) time.Duration
	// Spacing is the least time between two of tenant's jobs handed to asynq, counted from
	// the start of the turn that handed one over: its next turn is that far off (the
	// schedule is shared, so this holds for the fleet). A rate-limited tenant is spaced by its
	// rate rather than made to wait by Ready: a job's token is taken only when it calls, so
	// Ready alone lets the tenant's turns come round faster than its rate, and its jobs wait
	// for tokens in worker slots other tenants could use. Called after each hand-over; it
	// must be cheap and safe for concurrent use. Nil or 0: the next turn is at once, behind
	// the others due.
	Spacing func(ctx context.Context, tenant string) time.Duration
	// MakeUp is how much of a spaced tenant's late turn (the fleet busy when it was due) may
	// be made up by putting its next turn that much earlier: what its rate limit tolerates
	// early (a burst of b tolerates b-1 spacings), so that a job handed over early never waits
	// for its token in a worker slot. Nil or 0: nothing is made up, and late turns cost the
	// tenant some of its rate.
	MakeUp func(ctx context.Context, tenant string) time.Duration
	// MaxInFlight is the most jobs of tenant dispatched and not yet Done; 0 or less = no cap.
	// Nil: no cap.
	MaxInFlight func(tenant string) int
	// Known says whether tenant is configured. An unknown tenant's lane is held as it is (never
	// dead-lettered, never dispatched) and looked at again every HoldRecheck, or at Wake. Nil:
	// every tenant is known.
	Known func(tenant string) bool
	// ValidTenant checks a tenant ID at Enqueue (the project's one rule of tenant IDs). Nil:
	// only the lanes' own rule (no '{' or '}', which would break the keys' hash tags).
	ValidTenant func(tenant string) error
	// HoldRecheck is how long an unknown tenant waits before it is looked at again. Zero
	// value: DefaultHoldRecheck.
	HoldRecheck time.Duration
	// CapRecheck is how long a tenant at its cap waits at most before it is looked at again;
	// Done wakes it earlier. Zero value: DefaultCapRecheck.
	CapRecheck time.Duration
	// PollInterval is how often a dispatcher rereads asynq's pending counts while they are at
	// or over LowWater. Zero value: DefaultPollInterval.
	PollInterval time.Duration
	// MaxIdle is the longest a dispatcher with nothing to do blocks on the wake-up list before
	// it looks at the schedule again. At least a second. Zero value: DefaultMaxIdle.
	MaxIdle time.Duration
	// OnError receives errors Run survives (Redis or asynq unreachable, a job that cannot be
	// decoded); Run backs off and goes on. Nil: ignored.
	OnError func(error)
}

// withDefaults returns c with zero values replaced by defaults, or an error naming the field.
func (c Config) withDefaults() (Config, error) {
	if c.Redis == nil {
		return c, errors.New("lanes: Config.Redis is nil: give the asynq Redis client")
	}
	if len(c.Queues) == 0 {
		return c, errors.New("lanes: Config.Queues is empty: name at least one asynq queue")
	}
	for i, q := range c.Queues {
		if q == "" {
			return c, fmt.Errorf("lanes: Config.Queues[%d] is empty: give an asynq queue name", i)
		}
	}
	setDefault(&c.Prefix, DefaultPrefix)
	setDefault(&c.LowWater, DefaultLowWater)
	setDefault(&c.Lease, DefaultLease)
	setDefault(&c.InFlightLease, DefaultInFlightLease)
	setDefault(&c.HoldRecheck, DefaultHoldRecheck)
	setDefault(&c.CapRecheck, DefaultCapRecheck)
	setDefault(&c.PollInterval, DefaultPollInterval)
	setDefault(&c.MaxIdle, DefaultMaxIdle)
	if c.LowWater < 0 {
		return c, fmt.Errorf("lanes: Config.LowWater is %d: want a positive pending count", c.LowWater)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"Lease", c.Lease, time.Millisecond}, {"InFlightLease", c.InFlightLease, time.Millisecond},
		{"HoldRecheck", c.HoldRecheck, time.Millisecond}, {"CapRecheck", c.CapRecheck, time.Millisecond},
		{"PollInterval", c.PollInterval, time.Millisecond}, {"MaxIdle", c.MaxIdle, time.Second},
	} {
		if d.v < d.min {
			return c, fmt.Errorf("lanes: Config.%s is %s: want at least %s", d.name, d.v, d.min)
		}
	}
	if c.InFlightLease < c.Lease {
		return c, fmt.Errorf("lanes: Config.InFlightLease (%s) is shorter than Config.Lease (%s): a leased job must count in flight", c.InFlightLease, c.Lease)
	}
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
