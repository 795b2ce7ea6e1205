package flow

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Breaker is a breaker's state as Redis holds it, for operators.
type Breaker struct {
	Tenant        string    `json:"tenant"`
	ErpConnection int       `json:"erp_connection"` // 0: the tenant's breaker
	State         string    `json:"state"`          // StateClosed, StateOpen or StateHalfOpen
	Since         time.Time `json:"since"`          // when it opened (zero when closed)
	NextProbe     time.Time `json:"next_probe"`     // when the next probe may go out
	Reason        string    `json:"reason"`
}

// Describe says "paused: SuperOffice unavailable since …, next probe in …" for an open
// breaker, "" for a closed one.
func (b Breaker) Describe(now time.Time) string {
	if b.State == StateClosed {
		return ""
	}
	return describe(b.ErpConnection, b.Since, b.NextProbe, b.Reason, now)
}

func (b Breaker) paused(now time.Time, half time.Duration) *PausedError {
	wait := b.NextProbe.Sub(now)
	if b.State == StateHalfOpen {
		wait = min(wait, half)
	}
	return &PausedError{Tenant: b.Tenant, ErpConnection: b.ErpConnection, Since: b.Since, NextProbe: b.NextProbe,
		Reason: b.Reason, RetryAfter: max(wait, time.Second)}
}

func readState(ctx context.Context, rdb redis.UniversalClient, key string) (Breaker, error) {
	h, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return Breaker{}, err
	}
	b := Breaker{State: stateName(h["state"]), Reason: h["reason"]}
	if b.State == StateClosed {
		return b, nil
	}
	b.Since = msTime(h["since"])
	b.NextProbe = msTime(h["next"])
	if b.State == StateHalfOpen {
		b.NextProbe = msTime(h["probe_until"])
	}
	return b, nil
}

// Breakers returns every breaker that ever opened on this Redis, open ones first; cmd/enqueue
// shows the open ones.
func Breakers(ctx context.Context, rdb redis.UniversalClient) ([]Breaker, error) {
	return breakers(ctx, rdb, nil)
}

// breakers is Breakers of the tenants (flow-control names) keep keeps (nil: all); only
// theirs are read from Redis, so a report of one tenant costs a read per breaker of its own,
// however many tenants the fleet serves.
func breakers(ctx context.Context, rdb redis.UniversalClient, keep func(tenant string) bool) ([]Breaker, error) {
	names, err := rdb.SMembers(ctx, breakersKey).Result()
	if err != nil {
		return nil, fmt.Errorf("flow: breakers: %w", err)
	}
	out := make([]Breaker, 0, len(names))
	for _, n := range names {
		tenant, connS, ok := strings.Cut(n, "|")
		conn, cerr := strconv.Atoi(connS)
		if !ok || cerr != nil || keep != nil && !keep(tenant) {
			continue
		}
		b, err := readState(ctx, rdb, tenantPrefix(tenant)+":breaker:"+connS)
		if err != nil {
			return nil, fmt.Errorf("flow: breaker %s: %w", n, err)
		}
		b.Tenant, b.ErpConnection = tenant, conn
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].State == StateClosed) != (out[j].State == StateClosed) {
			return out[j].State == StateClosed
		}
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].ErpConnection < out[j].ErpConnection
	})
	return out, nil
}

// TenantName is the name (Config.Tenant) of the flow control of tenant id of a tenants
// file: "@" + id. No URL's host starts with "@", so it never meets the implicit tenant's,
// which is named by its URL.
func TenantName(id string) string { return "@" + id }

// Serves reports whether breakers named name belong to tenant id ("" the implicit tenant,
// whose flow control is named by its URL: any name TenantName never makes).
func Serves(id, name string) bool {
	if id == "" {
		return !strings.HasPrefix(name, "@")
	}
	return name == TenantName(id)
}

// Pauses describes the open circuit breakers that hold back the batches of ERP connection
// conn of tenant id ("" the implicit tenant): the tenant's own breaker, and the
// connection's, as `enqueue status` and the intake API print them. Another tenant's
// breakers are never among them.
func Pauses(ctx context.Context, rdb redis.UniversalClient, id string, conn int, now time.Time) ([]string, error) {
	bs, err := breakers(ctx, rdb, func(name string) bool { return Serves(id, name) })
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range bs {
		if b.State != StateClosed && (b.ErpConnection == 0 || b.ErpConnection == conn) {
			out = append(out, b.Describe(now)+"; tenant "+b.Tenant)
		}
	}
	return out, nil
}
