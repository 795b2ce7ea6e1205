package runspage

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

// tenantLedger is Config.TenantLedger's zero value for l.
func tenantLedger(l Ledger) func(string) Ledger {
	if ll, ok := l.(*ledger.Ledger); ok {
		return func(id string) Ledger { return ll.Tenant(id) }
	}
	return func(id string) Ledger {
		if id == "" {
			return l
		}
		return nil // not reached: tenant checks the id against Config.Tenants first
	}
}

// tenant is the tenant ?tenant= names ("" or absent: the implicit tenant), one of all; else
// it answers the error itself (400 for an ID that is none, 404 for a tenant not shown here).
func (h *Handler) tenant(w http.ResponseWriter, r *http.Request, all []string) (string, bool) {
	id := r.URL.Query().Get("tenant")
	if id != "" {
		if err := tasks.ValidateTenantID(id); err != nil {
			h.fail(w, r, http.StatusBadRequest, "tenant="+err.Error())
			return "", false
		}
	}
	if !slices.Contains(all, id) || h.cfg.TenantLedger(id) == nil {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("%s is not served here", tenantLabel(id)))
		return "", false
	}
	return id, true
}

// tenantRun is a run with its tenant.
type tenantRun struct {
	tenant string
	st     ledger.RunStatus
}

// runs are the limit most recently started runs of tenants, newest first.
func (h *Handler) runs(ctx context.Context, tenants []string, limit int) ([]tenantRun, error) {
	var out []tenantRun
	for _, id := range tenants {
		l := h.cfg.TenantLedger(id)
		if l == nil {
			continue // a tenant without a ledger has no runs to show
		}
		list, err := l.Runs(ctx, limit)
		if err != nil && len(tenants) > 1 {
			return nil, fmt.Errorf("%s: %w", tenantLabel(id), err)
		}
		if err != nil {
			return nil, err
		}
		for _, st := range list {
			out = append(out, tenantRun{id, st})
		}
	}
	if len(tenants) > 1 {
		slices.SortStableFunc(out, func(a, b tenantRun) int { return b.st.StartedAt.Compare(a.st.StartedAt) })
	}
	return out[:min(len(out), limit)], nil
}

// tenantFilter is the list's choice of tenants: shown only when there is more than one.
type tenantFilter struct {
	// Choices are the tenants to filter by, the implicit tenant first.
	Choices []tenantChoice
	// All is true when no filter is set.
	All bool
}

// tenantChoice is one tenant of the filter.
type tenantChoice struct {
	ID, Label string
	Selected  bool
}

// newTenantFilter is the filter of a list of all's runs; filtered: only those of tenant
// selected are shown.
func newTenantFilter(all []string, filtered bool, selected string) tenantFilter {
	if len(all) < 2 {
		return tenantFilter{}
	}
	f := tenantFilter{All: !filtered}
	for _, id := range slices.Sorted(slices.Values(all)) {
		f.Choices = append(f.Choices, tenantChoice{ID: id, Label: tenantLabel(id), Selected: filtered && id == selected})
	}
	return f
}

// tenantColumn is a run's tenant in the list: its ID, or "implicit".
func tenantColumn(id string) string { return cmp.Or(id, "implicit") }

// tenantLabel names a tenant for people.
func tenantLabel(id string) string {
	if id == "" {
		return "the implicit tenant"
	}
	return "tenant " + id
}

// ofTenant is " of tenant ID" for a tenant's run, "" for the implicit tenant's.
func ofTenant(id string) string {
	if id == "" {
		return ""
	}
	return " of tenant " + id
}
