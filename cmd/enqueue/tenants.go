package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

const tenantsSynopsis = `enqueue tenants [--tenant ID] [--json]
       enqueue tenants purge --tenant ID --yes [--json]`

// tenantRow is one line of `enqueue tenants`.
type tenantRow struct {
	Tenant     string `json:"tenant"` // "" the implicit tenant
	Queued     int    `json:"queued"` // batches waiting in the tenant's lane, leased included
	Leased     int    `json:"leased"` // of those, taken by a dispatcher not yet confirmed in asynq
	InFlight   int    `json:"in_flight"`
	Runs       int    `json:"runs"`
	RunsActive int    `json:"runs_active"`
	// NextTurn is when a dispatcher looks at the tenant's lane next; nil when it has none.
	NextTurn *time.Time `json:"next_turn,omitempty"`
}

// tenants lists the tenants with work or runs in this Redis, or (tenants purge) removes a
// tenant's waiting batches.
func (c *cli) tenants(ctx context.Context, args []string) int {
	sub := "list"
	if len(args) > 0 && args[0] == "purge" {
		sub, args = "purge", args[1:]
	}
	fs := c.newFlagSet("tenants "+sub, tenantsSynopsis)
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	var yes *bool
	if sub == "purge" {
		yes = fs.Bool("yes", false, "confirm: the tenant's waiting batches are removed and their keys dead-lettered")
	}
	cf := c.connFlags(fs)
	if code, done := c.parseNoArgs(fs, args, " (tenants takes flags only, or the subcommand purge first)"); done {
		return code
	}
	if sub == "purge" {
		if !given(fs, "tenant") || cf.tenant.id == "" {
			return c.usageError(errors.New("tenants purge needs --tenant ID: the tenant removed from the tenants file whose batches to remove (ENQUEUE_TENANT is not enough for a purge)"))
		}
		if !*yes {
			return c.usageError(fmt.Errorf("tenants purge removes tenant %s's waiting batches and dead-letters their keys; add --yes to confirm", cf.tenant.id))
		}
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "%v", err)
	}
	defer rc.Close()
	q, err := lanes.New(lanes.Config{Redis: rc.rdb, Queues: []string{cf.queue}, ValidTenant: tasks.ValidateTenantID})
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "%v", err)
	}
	defer q.Close()
	if sub == "purge" {
		return c.tenantPurge(ctx, rc, q, *asJSON)
	}
	rows, err := tenantRows(ctx, rc, q, cf.tenant.id)
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "tenants: %v", err)
	}
	c.printTenants(rows, *asJSON)
	return exitOK
}

// tenantRows gathers a row for every tenant with a lane in the schedule or a run index (only
// that tenant when only is set), sorted by ID. Memory holds a row per tenant, never their
// runs or batches.
func tenantRows(ctx context.Context, rc *redisConn, q *lanes.Queue, only string) ([]tenantRow, error) {
	due, err := q.Due(ctx)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	if only != "" {
		ids[only] = true
	} else {
		for id := range due {
			ids[id] = true
		}
		if err := ledger.NewLedger(rc.rdb).Tenants(ctx, func(id string) error { ids[id] = true; return nil }); err != nil {
			return nil, err
		}
	}
	rows := make([]tenantRow, 0, len(ids))
	for id := range ids {
		r := tenantRow{Tenant: id}
		if id != "" { // the implicit tenant's batches do not go through lanes
			st, err := q.Stats(ctx, id)
			if err != nil {
				return nil, err
			}
			r.Queued, r.Leased, r.InFlight = st.Queued, st.Leased, st.InFlight
		}
		if at, ok := due[id]; ok {
			at := at.UTC()
			r.NextTurn = &at
		}
		if r.Runs, r.RunsActive, err = ledger.NewLedger(rc.rdb).Tenant(id).RunCounts(ctx); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b tenantRow) int { return strings.Compare(a.Tenant, b.Tenant) })
	return rows, nil
}

func (c *cli) printTenants(rows []tenantRow, asJSON bool) {
	if asJSON {
		writeJSON(c.stdout, rows)
		return
	}
	if len(rows) == 0 {
		fmt.Fprintln(c.stderr, "enqueue: no tenant has runs or waiting batches in this Redis")
		return
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TENANT\tQUEUED\tIN FLIGHT\tRUNS\tACTIVE\tNEXT TURN")
	for _, r := range rows {
		name := r.Tenant
		if name == "" {
			name = "(implicit)"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\n", name, r.Queued, r.InFlight, r.Runs, r.RunsActive, fmtTime(r.NextTurn))
	}
	w.Flush()
}
