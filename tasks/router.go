package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
)

// UnknownTenantHold is how long a batch of a tenant the worker does not serve (removed from
// the tenants file, or a batch of the implicit tenant on a worker without SUPEROFFICE_URL)
// waits before it is looked at again. Such batches are held, never dead-lettered, until
// their tenant returns or an operator purges them.
const UnknownTenantHold = time.Minute

// Router is the asynq.Handler of a worker that serves several tenants: it hands each task to
// the handler of the tenant named in its payload (Batch.Tenant, Trickle.Tenant), so that a
// key only ever reaches its own tenant's client, flow control and ledger.
type Router struct {
	lookup func(tenant string) asynq.Handler
	log    zerolog.Logger
}

// NewRouter returns a Router that finds a tenant's handler with lookup (nil: the tenant is
// not served, and its batches are held for UnknownTenantHold, using no retry). lookup is
// called for every task, so it may follow a tenants file as it changes; it must be safe for
// concurrent use.
func NewRouter(lookup func(tenant string) asynq.Handler, log zerolog.Logger) *Router {
	return &Router{lookup: lookup, log: log}
}

// ProcessTask implements asynq.Handler.
func (r *Router) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p struct {
		Tenant string `json:"tenant"`
	}
	// An unreadable payload goes to the implicit tenant's handler, which archives it as
	// today; only the tenant decides the route.
	_ = json.Unmarshal(t.Payload(), &p)
	if h := r.lookup(p.Tenant); h != nil {
		return h.ProcessTask(ctx, t)
	}
	name := p.Tenant
	if name == "" {
		name = "(implicit: SUPEROFFICE_URL)"
	}
	id, _ := asynq.GetTaskID(ctx)
	r.log.Warn().Str("tenant", p.Tenant).Str("task_id", id).Msg("batch of a tenant this worker does not serve: held until the tenant is configured again or an operator purges its runs")
	return &Error{Class: ClassThrottled, BatchID: id, RetryAfter: UnknownTenantHold,
		Err: &flow.PausedError{Tenant: p.Tenant, Since: time.Now(), NextProbe: time.Now().Add(UnknownTenantHold),
			Reason: fmt.Sprintf("tenant %s is not configured on this worker", name), RetryAfter: UnknownTenantHold}}
}
