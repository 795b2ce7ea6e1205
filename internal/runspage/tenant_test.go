package runspage_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/runspage"
	"github.com/erpresync/erpresync/tasks"
)

// tenantSample is the implicit tenant's sample and tenants A and B, each with a run called
// nightly: A's active with a dead letter and changes, B's done.
func tenantSample() map[string]*fakeLedger {
	records := map[string]map[string]int64{tasks.KindAdded: {}, tasks.KindUpdated: {}, tasks.KindDeleted: {}}
	a := &fakeLedger{runs: []ledger.RunStatus{{Run: "nightly", State: ledger.RunActive, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer,
		TotalKeys: 30, ResyncedKeys: 10, DeadKeys: 1, PendingKeys: 19, StartedAt: t0.Add(time.Minute), Records: records}},
		dead:    map[string][]tasks.DeadLetter{"nightly": {{Run: "nightly", Key: "A-KEY-1", BatchID: "A/nightly:b000000", Class: "business", Reason: "refused", At: t0}}},
		changes: map[string][]tasks.ChangeItem{"nightly": {{Run: "nightly", Table: "contact", RecordID: 7, Kind: tasks.KindUpdated, TaskID: "t", At: t0}}}}
	b := &fakeLedger{runs: []ledger.RunStatus{{Run: "nightly", State: ledger.RunDone, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer,
		TotalKeys: 20, ResyncedKeys: 20, StartedAt: t0.Add(-2 * time.Hour), FinishedAt: t0.Add(-time.Hour), Records: records}},
		dead: map[string][]tasks.DeadLetter{}, changes: map[string][]tasks.ChangeItem{}}
	return map[string]*fakeLedger{"": sample(), "A": a, "B": b}
}

// tenantServer serves ledgers as the tenants names; set changes those.
func tenantServer(t *testing.T, ledgers map[string]*fakeLedger, tenants []string, retrying func(context.Context, string) (runreport.Retrying, error)) (base string, set func(...string)) {
	t.Helper()
	var mu sync.Mutex
	srv := newServer(t, runspage.Config{Ledger: ledgers[""], Retrying: retrying,
		Tenants: func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), tenants...)
		},
		TenantLedger: func(id string) runspage.Ledger { return ledgers[id] }})
	return srv.URL + runspage.Path, func(ids ...string) {
		mu.Lock()
		defer mu.Unlock()
		tenants = ids
	}
}

// TestTenantsListedAndFiltered: the list shows every tenant's runs, newest first, each with
// its tenant and a link that carries it; ?tenant= shows one tenant's; a run's page, its
// dead letters and its export are its tenant's.
func TestTenantsListedAndFiltered(t *testing.T) {
	t.Parallel()
	var asked []string
	var mu sync.Mutex
	base, _ := tenantServer(t, tenantSample(), []string{"", "A", "B"}, func(_ context.Context, run string) (runreport.Retrying, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, run)
		return runreport.Retrying{}, nil
	})
	resp, body := get(t, "GET", base)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list: %d\n%s", resp.StatusCode, body)
	}
	wantContains(t, "list", body,
		`<tr data-run="nightly" data-tenant="A">`, `<a href="./nightly?tenant=A">nightly</a>`,
		`<tr data-run="nightly" data-tenant="B">`, `<a href="./nightly?tenant=B">nightly</a>`,
		`<tr data-run="nightly-customers-2026-11-27">`, `<a href="./nightly-customers-2026-11-27">`,
		`data-field="tenant">A<`, `data-field="tenant">implicit<`,
		`<a href="./" aria-current="page">all</a>`, `<a href="./?tenant=A" data-tenant="A">tenant A</a>`, `<a href="./?tenant=" data-tenant="">the implicit tenant</a>`)
	// Newest first across tenants: A's (t0+1m), the implicit tenant's two, B's (t0-2h).
	order := []string{`<tr data-run="nightly" data-tenant="A">`, `<tr data-run="nightly-customers-2026-11-27">`, `<tr data-run="persons:manual">`, `<tr data-run="nightly" data-tenant="B">`}
	for i := 1; i < len(order); i++ {
		if strings.Index(body, order[i-1]) > strings.Index(body, order[i]) {
			t.Errorf("list: %s is not before %s", order[i-1], order[i])
		}
	}
	mu.Lock()
	if !strings.Contains(strings.Join(asked, " "), "A/nightly") {
		t.Errorf("retry set asked for %v, want A's run as tasks.RunKey names it", asked)
	}
	mu.Unlock()

	_, body = get(t, "GET", base+"?tenant=B")
	wantContains(t, "list of B", body, `<tr data-run="nightly" data-tenant="B">`, `<a href="./?tenant=B" data-tenant="B" aria-current="page">tenant B</a>`)
	if strings.Contains(body, `<tr data-run="nightly" data-tenant="A">`) || strings.Contains(body, "nightly-customers") {
		t.Errorf("list of B shows another tenant's runs:\n%s", body)
	}
	_, body = get(t, "GET", base+"?tenant=")
	if !strings.Contains(body, "nightly-customers") || strings.Contains(body, `<tr data-run="nightly" `) {
		t.Errorf("list of the implicit tenant:\n%s", body)
	}

	_, body = get(t, "GET", base+"nightly?tenant=A")
	wantContains(t, "A's run", body, `of tenant <span data-field="tenant">A</span>`, `data-field="total">30<`, `<code data-field="key">A-KEY-1</code>`,
		`href="./nightly/changes?format=csv&amp;tenant=A"`, `enqueue dead requeue --run nightly --tenant A`)
	_, body = get(t, "GET", base+"nightly?tenant=B")
	wantContains(t, "B's run", body, `data-field="total">20<`, `data-field="dead-total">0<`)
	resp, body = get(t, "GET", base+"nightly/changes?format=csv&tenant=A")
	if resp.StatusCode != http.StatusOK || strings.Count(body, "\n") != 2 || !strings.Contains(resp.Header.Get("Content-Disposition"), "A-nightly-changes.csv") {
		t.Errorf("A's changes: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Disposition"), body)
	}
	if resp, _ := get(t, "GET", base+"nightly"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the implicit tenant's nightly (it has none): %d, want 404", resp.StatusCode)
	}
}

// TestTenantParam: ?tenant= that is no tenant ID is 400, one not served 404; a tenant the
// Tenants func no longer returns is gone from the next request on.
func TestTenantParam(t *testing.T) {
	t.Parallel()
	base, setTenants := tenantServer(t, tenantSample(), []string{"", "A", "B"}, nil)
	for _, c := range []struct {
		path string
		want int
	}{
		{"?tenant=a%20b", http.StatusBadRequest},
		{"nightly?tenant=.A", http.StatusBadRequest},
		{"?tenant=Z", http.StatusNotFound},
		{"nightly?tenant=Z", http.StatusNotFound},
		{"nightly/changes?tenant=Z", http.StatusNotFound},
	} {
		if resp, body := get(t, "GET", base+c.path); resp.StatusCode != c.want || !strings.Contains(body, "tenant") {
			t.Errorf("%s: %d, want %d naming the tenant\n%s", c.path, resp.StatusCode, c.want, body)
		}
	}
	setTenants("", "B") // A removed
	if resp, _ := get(t, "GET", base+"nightly?tenant=A"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("removed tenant A's run: %d, want 404", resp.StatusCode)
	}
	if _, body := get(t, "GET", base); strings.Contains(body, `data-tenant="A"`) || !strings.Contains(body, `<tr data-run="nightly" data-tenant="B">`) {
		t.Errorf("the list shows removed tenant A:\n%s", body)
	}
	// One tenant only (the default): no tenant column, no filter.
	setTenants("")
	if _, body := get(t, "GET", base); strings.Contains(body, `id="tenants"`) || strings.Contains(body, `data-field="tenant"`) {
		t.Errorf("a page of the implicit tenant alone shows tenants:\n%s", body)
	}
}
