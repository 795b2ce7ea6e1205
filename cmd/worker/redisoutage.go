package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Intervals of the Redis outage log.
const (
	// redisWatchEvery is how often the long-running commands ping Redis to tell an outage
	// from its end.
	redisWatchEvery = 5 * time.Second
	// redisRemindEvery is how often a line says that Redis still does not answer.
	redisRemindEvery = time.Minute
)

// redisOutage keeps a Redis outage to a few log lines. While Redis does not answer,
// go-redis logs every failed dial of every pool (several lines a second) and asynq every
// failed poll. redisOutage writes the first of those lines, holds the rest back, writes a
// reminder with their count once every remind, and one line when Redis answers again
// (watchRedis tells it). It is go-redis's logger (redis.SetLogger) and asynqLogger's gate.
// Safe for concurrent use; a nil *redisOutage holds nothing back.
type redisOutage struct {
	log    zerolog.Logger
	now    func() time.Time
	remind time.Duration

	mu       sync.Mutex
	down     bool
	since    time.Time // when the outage began
	reminded time.Time // when the last line about it was written
	held     int       // lines held back since then
	total    int       // lines held back in this outage
	last     string    // the newest of them
}

func newRedisOutage(log zerolog.Logger) *redisOutage {
	return &redisOutage{log: log, now: time.Now, remind: redisRemindEvery}
}

// Printf receives go-redis's own log lines. go-redis logs only trouble (a failed dial, a
// failed re-authentication, a sentinel that does not answer), so each one starts or
// continues an outage.
func (o *redisOutage) Printf(_ context.Context, format string, v ...any) {
	o.trouble("go-redis", strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}

// failed records a failed ping of watchRedis.
func (o *redisOutage) failed(err error) {
	o.trouble("redis-watch", "Redis does not answer: "+err.Error())
}

// trouble writes msg when it starts an outage, else holds it back (and writes the
// reminder when it is due).
func (o *redisOutage) trouble(component, msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	if !o.down {
		o.down, o.since, o.reminded, o.held, o.total, o.last = true, now, now, 0, 0, ""
		o.log.Warn().Str("component", component).
			Msgf("%s (Redis trouble: more lines like this are held back, with a reminder every %s, until Redis is back)", msg, o.remind)
		return
	}
	o.holdLocked(component, msg, now)
}

// holdBack holds msg back when an outage is on and reports whether it did; it is how
// asynq's warnings and errors join the outage's count.
func (o *redisOutage) holdBack(component, msg string) bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down {
		return false
	}
	o.holdLocked(component, msg, o.now())
	return true
}

func (o *redisOutage) holdLocked(component, msg string, now time.Time) {
	o.held++
	o.total++
	o.last = component + ": " + msg
	if now.Sub(o.reminded) < o.remind {
		return
	}
	o.log.Warn().Str("component", "redis-watch").Int("held_back", o.held).
		Msgf("Redis still does not answer, for %s now; %d log lines held back in the last %s, the newest: %s",
			now.Sub(o.since).Round(time.Second), o.held, now.Sub(o.reminded).Round(time.Second), o.last)
	o.reminded, o.held = now, 0
}

// ok records that Redis answered; it ends an outage with one line.
func (o *redisOutage) ok() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down {
		return
	}
	o.down = false
	o.log.Info().Str("component", "redis-watch").Int("held_back", o.total).
		Msgf("Redis answers again, after %s; %d log lines were held back", o.now().Sub(o.since).Round(time.Second), o.total)
}

// watchRedis pings Redis every interval until ctx ends and tells o the outcome, so that
// the end of an outage is logged (go-redis logs failures only).
func watchRedis(ctx context.Context, rdb redis.UniversalClient, o *redisOutage, every time.Duration) {
	everyTick(ctx, every, func() {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		switch {
		case ctx.Err() != nil: // shutting down: not an outage
		case err != nil:
			o.failed(err)
		default:
			o.ok()
		}
	})
}
