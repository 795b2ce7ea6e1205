package flow

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The concurrency cap is a semaphore of leased slots per ERP connection:
//
//	{erpresync:flow:TENANT}:sem:CONN  ZSET  holder → lease expiry (unix ms)
//
// A holder renews its leases while its request runs; a slot whose lease ran out (its worker
// was killed) is taken back by the next acquire. CONN 0 holds the requests whose context names
// no connection (see WithConnection).

// acquireScript: KEYS sem; ARGV now ms, lease ms, holder, limit. Returns -1 when the slot was
// taken, else the ms until the earliest lease runs out.
var acquireScript = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
  return -1
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first < 2 then return tonumber(ARGV[2]) end
return math.max(tonumber(first[2]) - now, 0)
`)

// renewScript: KEYS sem; ARGV expiry ms, lease ms, holders... Extends the leases still held.
var renewScript = redis.NewScript(`
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 0
`)

// semaphore is this process's side of the slots: it names holders and renews their leases.
// The renewing goroutine runs only while this process holds a slot: a worker serving a
// thousand idle tenants keeps no thousand tickers.
type semaphore struct {
	c       *Control
	id      string
	seq     atomic.Uint64
	mu      sync.Mutex
	held    map[string]map[string]struct{} // key → holders
	renewal bool                           // renewLoop runs
	closed  bool
	stop    chan struct{}
	loops   sync.WaitGroup
}

func newSemaphore(c *Control) *semaphore {
	return &semaphore{c: c, id: strconv.FormatUint(rand.Uint64(), 36), held: map[string]map[string]struct{}{},
		stop: make(chan struct{})}
}

// holdLocked records holder of key and starts renewLoop if it is not running; s.mu is held.
func (s *semaphore) holdLocked(key, holder string) {
	if s.held[key] == nil {
		s.held[key] = map[string]struct{}{}
	}
	s.held[key][holder] = struct{}{}
	if !s.renewal && !s.closed {
		s.renewal = true
		s.loops.Add(1)
		go s.renewLoop()
	}
}

// slot is a held slot; release gives it back (once).
type slot struct {
	s      *semaphore
	key    string
	holder string
	once   sync.Once
}

func (s *semaphore) key(conn int) string { return s.c.prefix + ":sem:" + strconv.Itoa(conn) }

// acquire waits for a slot of conn, for at most until (zero: no limit). A *WaitError when
// the slot would come too late.
func (s *semaphore) acquire(ctx context.Context, conn, limit int, until time.Time) (*slot, error) {
	key := s.key(conn)
	holder := s.id + ":" + strconv.FormatUint(s.seq.Add(1), 36)
	lease := s.c.cfg.Lease
	waited := false
	for {
		now := s.c.now()
		r, err := acquireScript.Run(ctx, s.c.rdb, []string{key}, now.UnixMilli(), lease.Milliseconds(), holder, limit).Int64()
		if err != nil {
			return nil, fmt.Errorf("flow: concurrency slot: %w", err)
		}
		if r < 0 {
			s.mu.Lock()
			s.holdLocked(key, holder)
			s.mu.Unlock()
			return &slot{s: s, key: key, holder: holder}, nil
		}
		if !waited {
			waited = true
			s.c.countWait("slot")
		}
		// Slots are given back by other processes without telling anyone: poll, a little
		// jittered so that waiters do not move in step.
		d := min(time.Duration(r)*time.Millisecond, 15*time.Millisecond) + rand.N(10*time.Millisecond)
		if !until.IsZero() && now.Add(d).After(until) {
			return nil, &WaitError{Reason: "concurrency slot", RetryAfter: time.Second}
		}
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// release gives the slot back.
func (sl *slot) release() {
	sl.once.Do(func() {
		s := sl.s
		s.mu.Lock()
		delete(s.held[sl.key], sl.holder)
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.c.rdb.ZRem(ctx, sl.key, sl.holder).Err(); err != nil {
			// The lease runs out by itself.
			s.c.log.Warn().Err(err).Msg("flow: could not give back a concurrency slot; its lease runs out by itself")
		}
	})
}

// renewLoop extends every held lease three times per lease period, and ends once no slot
// is held (the next acquire starts it again).
func (s *semaphore) renewLoop() {
	defer s.loops.Done()
	t := time.NewTicker(s.c.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		batch := map[string][]any{}
		for key, hs := range s.held {
			for h := range hs {
				batch[key] = append(batch[key], h)
			}
			if len(hs) == 0 {
				delete(s.held, key)
			}
		}
		if len(batch) == 0 {
			s.renewal = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		lease := s.c.cfg.Lease.Milliseconds()
		exp := s.c.now().UnixMilli() + lease
		for key, hs := range batch {
			ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.Lease/3)
			err := renewScript.Run(ctx, s.c.rdb, []string{key}, append([]any{exp, lease}, hs...)...).Err()
			cancel()
			if err != nil {
				s.c.log.Warn().Err(err).Msg("flow: could not renew concurrency leases")
			}
		}
	}
}

func (s *semaphore) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.loops.Wait()
}

// sleep waits d or until ctx ends.
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
