package runspage_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/browsertest"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/runspage"
	"github.com/erpresync/erpresync/tasks"
)

// shownRow is a row of the runs list as the browser shows it.
type shownRow struct {
	Run    string `json:"run"`
	Tenant string `json:"tenant"`
	Total  string `json:"total"`
	Href   string `json:"href"`
}

const readRows = `Array.from(document.querySelectorAll('#runs tr[data-run]')).map(tr => ({
	run: tr.dataset.run, tenant: tr.querySelector('[data-field=tenant]').textContent.trim(),
	total: tr.querySelector('[data-field=total]').textContent.trim(), href: tr.querySelector('a').href}))`

// TestTenantsInBrowser: the implicit tenant, A and B each submit a run called nightly into
// one real Redis, and A's gets a dead letter. In headless Chromium the page lists the three
// runs with their tenants and own totals; A's link leads to A's run with A's dead letter and
// an export link that carries the tenant; the filter shows B's run alone.
func TestTenantsInBrowser(t *testing.T) {
	t.Parallel()
	browser := browsertest.New(t)
	db := redistest.New(t)
	rdb := db.TestClient(t)
	ctx := context.Background()
	totals := map[string]int{"": 2, "A": 3, "B": 4}
	for _, tenant := range []string{"", "A", "B"} {
		p, err := intake.NewProducer(intake.ProducerConfig{Tenant: tenant, Redis: rdb})
		if err != nil {
			t.Fatal(err)
		}
		var keys strings.Builder
		for i := range totals[tenant] {
			fmt.Fprintf(&keys, "%sKEY-%d\n", tenant, i)
		}
		if _, err := p.Submit(ctx, intake.RunSpec{Run: "nightly", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer},
			intake.Source{Name: "keys", R: strings.NewReader(keys.String())}); err != nil {
			t.Fatal(err)
		}
	}
	id := tasks.BatchID(tasks.RunKey("A", "nightly"), 0)
	if _, err := ledger.NewLedger(rdb).Tenant("A").RecordDead(ctx, "nightly", id, []tasks.DeadLetter{{Run: "nightly", Key: "AKEY-1",
		BatchID: id, Class: "business", Reason: "refused by SuperOffice", At: time.Now()}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// TenantLedger's zero value: the tenants' views of this *ledger.Ledger.
	h, err := runspage.New(runspage.Config{Ledger: ledger.NewLedger(rdb), Tenants: func() []string { return []string{"", "A", "B"} }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/runs/", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	bctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/runs/"), chromedp.WaitVisible(chromedp.CSS("#runs"))); err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(bctx, chromedp.Evaluate[[]shownRow](readRows))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Tenant+":"+r.Run+":"+r.Total)
	}
	slices.Sort(got)
	if want := []string{"A:nightly:3", "B:nightly:4", "implicit:nightly:2"}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`a[href="./nightly?tenant=A"]`)), chromedp.WaitVisible(chromedp.CSS("#summary"))); err != nil {
		t.Fatal(err)
	}
	type runShown struct {
		Tenant, Total, Export string
		Dead                  []string
	}
	rp, err := chromedp.Run(bctx, chromedp.Evaluate[runShown](`({
		Tenant: document.querySelector('h1 [data-field=tenant]').textContent, Total: document.querySelector('[data-field=total]').textContent,
		Export: document.getElementById('export-csv').href, Dead: Array.from(document.querySelectorAll('#dead tr[data-key]')).map(tr => tr.dataset.key)})`))
	if err != nil {
		t.Fatal(err)
	}
	if rp.Tenant != "A" || rp.Total != "3" || !slices.Equal(rp.Dead, []string{"AKEY-1"}) || !strings.HasSuffix(rp.Export, "/runs/nightly/changes?format=csv&tenant=A") {
		t.Errorf("A's run page: %+v", rp)
	}
	resp, err := http.Get(rp.Export)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Disposition"), "A-nightly-changes.csv") {
		t.Errorf("A's export: %d %q", resp.StatusCode, resp.Header.Get("Content-Disposition"))
	}
	// Back to the list, filtered to B.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`a[href="./"]`)), chromedp.WaitVisible(chromedp.CSS("#tenants")),
		chromedp.Click(chromedp.CSS(`#tenants a[data-tenant="B"]`)), chromedp.WaitVisible(chromedp.CSS(`#tenants a[aria-current="page"][data-tenant="B"]`))); err != nil {
		t.Fatal(err)
	}
	if rows, err = chromedp.Run(bctx, chromedp.Evaluate[[]shownRow](readRows)); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Tenant != "B" || rows[0].Total != "4" || !strings.HasSuffix(rows[0].Href, "/runs/nightly?tenant=B") {
		t.Errorf("list filtered to B: %+v", rows)
	}
}
