package tenantstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timing of the shared answer in Redis (real time, not the Follower's clock).
const (
	// lockTTL bounds how long one worker may hold the right to ask the state API: a worker
	// killed while asking delays the others by at most this long.
	lockTTL = 15 * time.Second
	// recordTTL keeps the last answer well past its next check, so that a state API outage
	// falls back to the last known host.
	recordTTL = 24 * time.Hour
	// pollEvery is how often a worker waiting for another's answer looks again.
	pollEvery = 20 * time.Millisecond
)

// record is the shared answer, stored as JSON at Follower.key. Times are Unix ms of the
// Followers' clock.
type record struct {
	State     State  `json:"state"`
	Endpoint  string `json:"endpoint"`
	API       string `json:"api"`
	Since     int64  `json:"since"`   // when the fleet first saw State
	Next      int64  `json:"next"`    // when to ask again
	Fetched   int64  `json:"fetched"` // when this answer was made
	Forced    int64  `json:"forced"`  // when the state API was last asked out of turn (0 never)
	Source    string `json:"source"`
	LastError string `json:"last_error,omitempty"`
}

func (r record) status() Status {
	s := Status{State: r.State, Running: r.State.Running(), Endpoint: r.Endpoint, API: r.API,
		Source: r.Source, LastError: r.LastError}
	if r.Fetched != 0 {
		s.Since, s.NextCheck = time.UnixMilli(r.Since), time.UnixMilli(r.Next)
	}
	return s
}

// fresh reports whether r may be used at now.
func (r record) fresh(now time.Time) bool { return r.Fetched != 0 && now.UnixMilli() < r.Next }

// want says which shared answer a caller accepts; anything else makes it ask the state API.
type want func(r record, now time.Time) bool

// anyFresh accepts an answer until its next check.
func anyFresh(r record, now time.Time) bool { return r.fresh(now) }

// newerThan accepts a fresh answer made after failed (the answer a request failed with), or
// one forced less than MinForceInterval ago: the fleet asks out of turn at most that often.
func newerThan(failed record) want {
	return func(r record, now time.Time) bool {
		return r.fresh(now) && (r.Fetched > failed.Fetched || (r.Forced != 0 && now.UnixMilli()-r.Forced < MinForceInterval.Milliseconds()))
	}
}

// madeAfter accepts only an answer the state API gave after t (a notification's asking).
func madeAfter(t time.Time) want {
	return func(r record, now time.Time) bool {
		return r.fresh(now) && r.Fetched > t.UnixMilli() && r.Source == sourceAPI
	}
}

const sourceAPI = "state API"

// current returns the shared answer, asking the state API when there is none fresh.
func (f *Follower) current(ctx context.Context) (record, error) {
	return f.resolve(ctx, anyFresh, false)
}

// resolve returns a shared answer ok accepts. If there is none, one worker of the fleet (the
// one holding the lock) asks the state API and shares the answer while the others wait for
// it. forced marks the question as out of turn.
func (f *Follower) resolve(ctx context.Context, ok want, forced bool) (record, error) {
	token := newToken()
	for {
		r, err := f.read(ctx)
		if err != nil {
			return record{}, err
		}
		if ok(r, f.now()) {
			f.remember(r)
			return r, nil
		}
		got, err := f.rdb.SetNX(ctx, f.key+":lock", token, lockTTL).Result()
		if err != nil {
			return record{}, fmt.Errorf("tenant state of %s: %w", f.cfg.ContextID, err)
		}
		if !got {
			if err := sleep(ctx, pollEvery); err != nil {
				return record{}, err
			}
			continue
		}
		r, err = f.askLocked(ctx, ok, forced)
		f.unlock(ctx, token)
		if err == nil {
			f.remember(r)
		}
		return r, err
	}
}

// askLocked, with the lock held, asks the state API unless an answer ok accepts arrived
// meanwhile, and stores the result. When the state API fails, the last answer stays in
// use (with the error noted) until MinRecheck from now; without one the error is returned.
func (f *Follower) askLocked(ctx context.Context, ok want, forced bool) (record, error) {
	prev, err := f.read(ctx)
	if err != nil {
		return record{}, err
	}
	now := f.now()
	if ok(prev, now) {
		return prev, nil
	}
	a, askErr := f.ask(ctx)
	now = f.now()
	next := record{Fetched: now.UnixMilli(), Forced: prev.Forced, Source: sourceAPI}
	if forced {
		next.Forced = now.UnixMilli()
	}
	switch {
	case askErr == nil:
		next.State, next.Endpoint, next.API = a.State, a.Endpoint, a.Api
		next.Next = now.Add(recheckAfter(a.State, a.ValidUntil.Sub(now))).UnixMilli()
		next.Since = now.UnixMilli()
		if prev.Fetched != 0 && prev.State == a.State {
			next.Since = prev.Since
		}
	case prev.Fetched != 0 && ctx.Err() == nil:
		f.log.Warn().Err(askErr).Str("tenant", f.cfg.ContextID).Msg("SuperOffice state API failed: the last answer stays in use")
		next = prev
		next.Fetched, next.Next, next.LastError = now.UnixMilli(), now.Add(MinRecheck).UnixMilli(), askErr.Error()
	default:
		return record{}, askErr
	}
	return next, f.write(ctx, next)
}

// recheckAfter bounds the time until the next question: ValidUntil's distance d, at least
// MinRecheck, at most MaxRecheck (MaxPausedRecheck when the tenant is not running).
func recheckAfter(s State, d time.Duration) time.Duration {
	hi := MaxRecheck
	if !s.Running() {
		hi = MaxPausedRecheck
	}
	return min(max(d, MinRecheck), hi)
}

func (f *Follower) read(ctx context.Context) (record, error) {
	b, err := f.rdb.Get(ctx, f.key).Bytes()
	if errors.Is(err, redis.Nil) {
		return record{}, nil
	}
	if err != nil {
		return record{}, fmt.Errorf("tenant state of %s: %w", f.cfg.ContextID, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		// A record of another version: ask anew.
		return record{}, nil
	}
	return r, nil
}

func (f *Follower) write(ctx context.Context, r record) error {
	b, _ := json.Marshal(r)
	ctx = context.WithoutCancel(ctx)
	if err := f.rdb.Set(ctx, f.key, b, recordTTL).Err(); err != nil {
		return fmt.Errorf("tenant state of %s: %w", f.cfg.ContextID, err)
	}
	if err := f.rdb.SAdd(ctx, followedKey, f.cfg.Tenant+"|"+f.cfg.ContextID).Err(); err != nil {
		return fmt.Errorf("tenant state of %s: %w", f.cfg.ContextID, err)
	}
	return nil
}

// followedKey is the SET of the followed tenants whose state the fleet shares (Pauses), each
// "TENANT|CONTEXTID" (TENANT is erpresync's tenant ID, empty for the implicit tenant).
const followedKey = "erpresync:states"

// Pauses describes, in PauseReason's words, the tenants whose shared state says they are not
// running, as `enqueue status`, the intake API and the runs page show them beside the open
// circuit breakers. It reads Redis only: any process may call it.
func Pauses(ctx context.Context, rdb redis.UniversalClient) ([]Pause, error) {
	return pauses(ctx, rdb, nil)
}

// TenantPauses is Pauses of erpresync's tenant ("" the implicit tenant) only: what its run
// reports show. Only that tenant's state is read, however many tenants the fleet follows.
func TenantPauses(ctx context.Context, rdb redis.UniversalClient, tenant string) ([]Pause, error) {
	return pauses(ctx, rdb, &tenant)
}

// pauses reads the followed tenants' shared states, of tenant only when it is not nil.
func pauses(ctx context.Context, rdb redis.UniversalClient, tenant *string) ([]Pause, error) {
	members, err := rdb.SMembers(ctx, followedKey).Result()
	if err != nil {
		return nil, fmt.Errorf("tenant states: %w", err)
	}
	slices.Sort(members)
	var out []Pause
	for _, m := range members {
		who, id, ok := strings.Cut(m, "|")
		if !ok || tenant != nil && who != *tenant {
			continue
		}
		f := &Follower{cfg: Config{ContextID: id}, rdb: rdb, key: stateKey(id)}
		r, err := f.read(ctx)
		if err != nil {
			return nil, err
		}
		if r.Fetched == 0 || r.State.Running() {
			continue
		}
		since, next := time.UnixMilli(r.Since), time.UnixMilli(r.Next)
		out = append(out, Pause{Tenant: who, ContextID: id, State: r.State, Since: since, NextCheck: next, Source: r.Source,
			Reason: PauseReason(id, r.State, since, next)})
	}
	return out, nil
}

// Pause is a tenant that is not running, as Pauses reports it.
type Pause struct {
	Tenant    string // erpresync's tenant ID that follows it ("" the implicit tenant)
	ContextID string
	State     State
	Since     time.Time
	NextCheck time.Time
	Source    string // "state API", or the notification that paused it
	// Reason is PauseReason's line: "SuperOffice: tenant Cust12345 in OfflineMaintenance
	// since 03:12:05, next check 03:13:05".
	Reason string
}

// stateKey is the key of a tenant's shared answer; its lock and replay keys share its hash tag.
func stateKey(contextID string) string { return "erpresync:state:{" + contextID + "}" }

// unlockScript: KEYS lock; ARGV token. Deletes the lock only if this worker still holds it.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (f *Follower) unlock(ctx context.Context, token string) {
	if err := unlockScript.Run(context.WithoutCancel(ctx), f.rdb, []string{f.key + ":lock"}, token).Err(); err != nil {
		f.log.Warn().Err(err).Str("tenant", f.cfg.ContextID).Msg("tenant state: could not release the lock; it runs out by itself")
	}
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Refresh makes the Follower ask the state API now (at most one question for concurrent
// callers), whatever the shared answer's age: what a Resume, Move, Upgrade or
// BackupRestored notification calls for.
func (f *Follower) Refresh(ctx context.Context) (Status, error) {
	if f.env == "" {
		return f.Status(), nil
	}
	r, err := f.resolve(ctx, madeAfter(f.now()), false)
	return r.status(), err
}

// Hold pauses the tenant for every worker in state st (Suspended, Deleting…) until the state
// API is asked again, MaxPausedRecheck from now (or at a Refresh); source says why
// ("Suspend notification").
func (f *Follower) Hold(ctx context.Context, st State, source string) error {
	if f.env == "" {
		return nil
	}
	prev, err := f.read(ctx)
	if err != nil {
		return err
	}
	now := f.now()
	r := record{State: st, Endpoint: prev.Endpoint, API: prev.API, Since: now.UnixMilli(),
		Next: now.Add(MaxPausedRecheck).UnixMilli(), Fetched: now.UnixMilli(), Forced: prev.Forced, Source: source}
	if prev.State == st && prev.Fetched != 0 {
		r.Since = prev.Since
	}
	if err := f.write(ctx, r); err != nil {
		return err
	}
	f.remember(r)
	return nil
}

// Ready is how long the tenant's batches should wait before one is handed to a worker: zero
// while the fleet's shared answer says the tenant is running (or there is none yet, or Redis
// cannot say), else until the answer's next check, when a call may find it running again. It
// reads Redis only, once. The lanes' dispatcher asks it, so that a tenant in maintenance or
// suspended keeps its batches in its lane and holds no worker slot.
func (f *Follower) Ready(ctx context.Context) time.Duration {
	if f.env == "" {
		return 0
	}
	r, err := f.read(ctx)
	if err != nil || r.Fetched == 0 || r.State.Running() {
		return 0
	}
	return max(time.UnixMilli(r.Next).Sub(f.now()), 0)
}
