package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/browsertest"
	"github.com/erpresync/erpresync/internal/export"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/tasks"
)

// pageRun is one run as the browser shows it: every element with a data-field, by name.
type pageRun struct {
	Run     string            `json:"run"`
	Fields  map[string]string `json:"fields"`
	Records map[string]string `json:"records"` // table → "+added ~updated −deleted"
}

// Reads the runs list from the DOM. The page itself has no script; the test reads it.
const readRunsList = `Array.from(document.querySelectorAll('#runs tr[data-run]')).map(tr => ({
	run: tr.dataset.run,
	fields: Object.fromEntries(Array.from(tr.querySelectorAll('[data-field]')).map(e => [e.dataset.field, e.textContent.trim()])),
	records: Object.fromEntries(Array.from(tr.querySelectorAll('li[data-table]')).map(e => [e.dataset.table, e.textContent.trim().slice(e.dataset.table.length + 1)])),
}))`

// runPage is a run's page as the browser shows it.
type runPage struct {
	Fields  map[string]string            `json:"fields"`
	Records map[string]map[string]string `json:"records"` // table → kind → rows
	Dead    []struct {
		Key    string `json:"key"`
		Reason string `json:"reason"`
	} `json:"dead"`
	Export  string `json:"export"`  // the CSV link, absolute
	NDJSON  string `json:"ndjson"`  // the NDJSON link, absolute
	Scripts int    `json:"scripts"` // <script> elements: none expected
	Banners int    `json:"banners"` // pause banners: none without flow control
	Refresh string `json:"refresh"` // the meta refresh's content; "" without one
}

// keyBox is how a dead letter's key is laid out: the lines it takes and its height.
type keyBox struct {
	Key        string  `json:"key"`
	Lines      int     `json:"lines"`
	Height     float64 `json:"height"`
	LineHeight float64 `json:"lineHeight"`
	WhiteSpace string  `json:"whiteSpace"`
}

const readKeyBoxes = `Array.from(document.querySelectorAll('#dead tr[data-key] td:first-child')).map(td => {
	const code = td.querySelector('code'), cs = getComputedStyle(code);
	return {key: code.textContent, lines: code.getClientRects().length, height: code.getBoundingClientRect().height,
		lineHeight: parseFloat(cs.lineHeight) || parseFloat(cs.fontSize) * 1.45, whiteSpace: getComputedStyle(td).whiteSpace};
})`

const readRunPage = `({
	fields: Object.fromEntries(Array.from(document.querySelectorAll('h1 [data-field], p [data-field], #summary [data-field]')).map(e => [e.dataset.field, e.textContent.trim()])),
	records: Object.fromEntries(Array.from(document.querySelectorAll('#records tr[data-table]')).map(tr => [tr.dataset.table,
		Object.fromEntries(Array.from(tr.querySelectorAll('[data-field]')).map(e => [e.dataset.field, e.textContent.trim()]))])),
	dead: Array.from(document.querySelectorAll('#dead tr[data-key]')).map(tr => ({key: tr.dataset.key, reason: tr.querySelector('[data-field=reason]').textContent})),
	export: document.getElementById('export-csv').href,
	ndjson: document.getElementById('export-ndjson').href,
	scripts: document.scripts.length,
	banners: document.querySelectorAll('[data-pause]').length,
	refresh: (document.querySelector('meta[http-equiv=refresh]') || {content: ''}).content,
})`

// TestRunsPageInBrowser loads the runs page of a live worker in headless Chromium and
// checks what it shows against the ledger: two finished runs (one with a dead letter) and
// one held half-way, so every state, a partial progress bar and an ETA are on screen.
func TestRunsPageInBrowser(t *testing.T) {
	t.Parallel()
	browser := browsertest.New(t)
	db := redistest.New(t)
	sim := startSim(t)
	const poison = "RPC-000013" // a key with a hyphen, where a browser may break the line
	sim.SetPoison(poison)
	client, auth := newClient(t, sim)
	base := dashboardWorker(t, db, client, auth)
	rdb := db.TestClient(t)
	lg := ledger.NewLedger(rdb)
	ctx := context.Background()

	submit(t, db, "rp-customers", erpsync.ActorCustomer, testKeys("RPC-", 200), 50)
	submit(t, db, "rp-persons", erpsync.ActorPerson, testKeys("RPP", 60), 20)
	waitDone(t, rdb, "rp-customers", 2*time.Minute)
	waitDone(t, rdb, "rp-persons", time.Minute)
	// The third run gets one call answered and the rest held, so it stays active with a
	// ledger that does not move while the page is read.
	holdCalls(t, sim, int64(sim.Counts().TotalCalls())+1, 0)
	submit(t, db, "rp-active", erpsync.ActorProject, testKeys("RPA", 300), 50)
	waitFor(t, time.Minute, func() (bool, string) {
		st := runStatus(t, rdb, "rp-active")
		return st.ResyncedKeys == 50, fmt.Sprintf("%+v", st)
	})

	// The page is behind the dashboard's login.
	if code, _ := get(t, base+"/runs/", "", ""); code != http.StatusUnauthorized {
		t.Errorf("/runs/ without credentials: %d, want 401", code)
	}
	if code, _ := get(t, base+"/runs/", "ops", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("/runs/ with a wrong password: %d, want 401", code)
	}

	bctx, cancel := context.WithTimeout(browser, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(bctx, browsertest.BasicAuth("ops", "s3cret"), chromedp.EmulateViewport(1400, 900),
		chromedp.Navigate(base+"/runs"), chromedp.WaitVisible(chromedp.CSS("#runs"))); err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(bctx, chromedp.Evaluate[[]pageRun](readRunsList))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	listed := make([]string, 0, len(rows))
	for _, row := range rows {
		listed = append(listed, row.Run)
		st, err := lg.Status(ctx, row.Run)
		if err != nil {
			t.Fatal(err)
		}
		checkShown(t, "runs list: "+row.Run, row.Fields, st, now)
		if len(row.Records) != len(recordTables(st.Records)) {
			t.Errorf("runs list: %s: records %v, ledger %v", row.Run, row.Records, st.Records)
		}
		for table, shown := range row.Records {
			want := fmt.Sprintf("+%d ~%d −%d", st.Records[tasks.KindAdded][table], st.Records[tasks.KindUpdated][table], st.Records[tasks.KindDeleted][table])
			if strings.ReplaceAll(shown, ",", "") != want {
				t.Errorf("runs list: %s: %s records %q, ledger %q", row.Run, table, shown, want)
			}
		}
	}
	if want := []string{"rp-active", "rp-persons", "rp-customers"}; !slices.Equal(listed, want) {
		t.Errorf("runs listed %v, want %v (most recent first)", listed, want)
	}
	screenshot(t, bctx, "runs.png")

	// Follow the link to the run with the dead letter.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`a[href="./rp-customers"]`)), chromedp.WaitVisible(chromedp.CSS("#summary"))); err != nil {
		t.Fatal(err)
	}
	rp, err := chromedp.Run(bctx, chromedp.Evaluate[runPage](readRunPage))
	if err != nil {
		t.Fatal(err)
	}
	st, err := lg.Status(ctx, "rp-customers")
	if err != nil {
		t.Fatal(err)
	}
	checkShown(t, "run page", rp.Fields, st, now)
	if rp.Fields["run"] != "rp-customers" || rp.Scripts != 0 || rp.Banners != 0 {
		t.Errorf("run page: run %q, %d scripts, %d pause banners", rp.Fields["run"], rp.Scripts, rp.Banners)
	}
	tables := recordTables(st.Records)
	if len(rp.Records) != len(tables) || len(tables) == 0 {
		t.Errorf("run page: records of %d tables, ledger %d", len(rp.Records), len(tables))
	}
	for table, byKind := range rp.Records {
		for _, kind := range []string{tasks.KindAdded, tasks.KindUpdated, tasks.KindDeleted} {
			if n := number(t, byKind[kind]); n != st.Records[kind][table] {
				t.Errorf("run page: %s %s %d, ledger %d", table, kind, n, st.Records[kind][table])
			}
		}
	}
	dls, err := lg.DeadLetters(ctx, "rp-customers")
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Dead) != len(dls) || len(dls) != 1 {
		t.Fatalf("run page: %d dead letters, ledger %d (want 1)", len(rp.Dead), len(dls))
	}
	if rp.Dead[0].Key != poison || rp.Dead[0].Key != dls[0].Key || rp.Dead[0].Reason != strings.Join(strings.Fields(dls[0].Reason), " ") {
		t.Errorf("run page: dead letter %+v, ledger %q %q", rp.Dead[0], dls[0].Key, dls[0].Reason)
	}
	screenshot(t, bctx, "run.png")
	// A finished run's page stays put; its dead letters' keys are one line each, also where
	// the window is narrow and the table squeezes its columns.
	if rp.Refresh != "" {
		t.Errorf("the page of finished run rp-customers reloads itself (refresh %q)", rp.Refresh)
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(480, 900)); err != nil {
		t.Fatal(err)
	}
	keys, err := chromedp.Run(bctx, chromedp.Evaluate[[]keyBox](readKeyBoxes))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("keys shown: %+v, want the one dead letter", keys)
	}
	for _, k := range keys {
		if k.Lines != 1 || k.Height > 2*k.LineHeight || k.WhiteSpace != "nowrap" {
			t.Errorf("key %q at 480 px: %d lines, %.0f px high (a line is %.0f px), white-space %q; want one line", k.Key, k.Lines, k.Height, k.LineHeight, k.WhiteSpace)
		}
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1400, 900)); err != nil {
		t.Fatal(err)
	}

	// An active run's page reloads itself, so it follows the run without a click.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/runs/rp-active"), chromedp.WaitVisible(chromedp.CSS("#summary"))); err != nil {
		t.Fatal(err)
	}
	active, err := chromedp.Run(bctx, chromedp.Evaluate[runPage](readRunPage))
	if err != nil {
		t.Fatal(err)
	}
	if active.Fields["state"] != "active" || active.Refresh == "" {
		t.Errorf("active run rp-active: state %q, refresh %q; want the page to reload itself", active.Fields["state"], active.Refresh)
	}

	// The export links serve what `enqueue changes` writes, every change item of the run.
	for link, f := range map[string]export.Format{rp.Export: export.CSV, rp.NDJSON: export.JSONL} {
		code, body := get(t, link, "ops", "s3cret")
		var want strings.Builder
		w := export.NewChangeWriter(&want, f)
		if err := lg.Changes(ctx, "rp-customers", w.Write); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if code != 200 || body != want.String() {
			t.Errorf("export %s: %d, %d bytes, want %d bytes", link, code, len(body), want.Len())
		}
		var records int64
		for _, byTable := range st.Records {
			for _, n := range byTable {
				records += n
			}
		}
		lines := int64(strings.Count(body, "\n"))
		if f == export.CSV {
			lines-- // the header
		}
		if lines != records {
			t.Errorf("export %s: %d change items, the run changed %d records", f, lines, records)
		}
	}
}

// checkShown compares the data-field values a page shows with the ledger's status.
func checkShown(t *testing.T, where string, fields map[string]string, st ledger.RunStatus, now time.Time) {
	t.Helper()
	labels := map[string]string{ledger.RunActive: "active", ledger.RunDone: "done", ledger.RunDoneWithDead: "done, with dead letters"}
	if fields["state"] != labels[st.State] {
		t.Errorf("%s: state %q, ledger %q", where, fields["state"], st.State)
	}
	for field, want := range map[string]int64{"total": st.TotalKeys, "resynced": st.ResyncedKeys, "dead": st.DeadKeys, "pending": st.PendingKeys} {
		if got := number(t, fields[field]); got != want {
			t.Errorf("%s: %s %d, ledger %d", where, field, got, want)
		}
	}
	p := runreport.ProgressOf(st, now)
	if want := strconv.FormatFloat(p.Percent, 'f', 1, 64) + "%"; fields["percent"] != want {
		t.Errorf("%s: percent %q, want %q", where, fields["percent"], want)
	}
	switch {
	case st.State != ledger.RunActive && fields["eta"] != "0s":
		t.Errorf("%s: ETA %q of a finished run, want 0s", where, fields["eta"])
	case st.State == ledger.RunActive && fields["eta"] == "-":
		t.Errorf("%s: no ETA for an active run with a rate", where)
	}
	// A finished run's rate is fixed: done keys over its start to finish.
	if rate := strconv.FormatFloat(p.KeysPerSecond, 'f', 1, 64); st.State != ledger.RunActive && strings.TrimSuffix(fields["rate"], "/s") != rate {
		t.Errorf("%s: rate %q, want %s", where, fields["rate"], rate)
	}
}

// number reads a count as the page writes it, with thousands separators.
func number(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		t.Errorf("not a count: %q", s)
	}
	return n
}

// screenshot saves the viewport as name in the test's artifact directory (kept with
// `go test -artifacts`) and fails unless it shows a rendered page: many colours, not one.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	n, bounds, err := browsertest.Colours(shot)
	if err != nil {
		t.Fatal(err)
	}
	if n < 16 || bounds.Dx() < 800 {
		t.Errorf("screenshot %s: %d colours in %v: blank?", path, n, bounds)
	}
	t.Logf("screenshot %s: %v, %d colours", path, bounds.Size(), n)
}
