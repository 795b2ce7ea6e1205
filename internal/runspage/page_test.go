package runspage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/export"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/runspage"
	"github.com/erpresync/erpresync/tasks"
)

// TestMain starts the package's redis-server (the browser test's ledger) and, once every
// test passed, checks that none left a goroutine behind.
func TestMain(m *testing.M) {
	code := redistest.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	t0  = time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)
	now = t0.Add(100 * time.Second)
)

// fakeLedger is a ledger in memory; err, when set, is every method's answer.
type fakeLedger struct {
	runs    []ledger.RunStatus
	dead    map[string][]tasks.DeadLetter
	changes map[string][]tasks.ChangeItem
	err     error
	// failAfter makes Changes fail after that many items (0: never).
	failAfter int
}

func (f *fakeLedger) Runs(_ context.Context, limit int) ([]ledger.RunStatus, error) {
	if f.err != nil {
		return nil, f.err
	}
	if limit > 0 && limit < len(f.runs) {
		return f.runs[:limit], nil
	}
	return f.runs, nil
}

func (f *fakeLedger) Status(_ context.Context, run string) (ledger.RunStatus, error) {
	if f.err != nil {
		return ledger.RunStatus{}, f.err
	}
	for _, st := range f.runs {
		if st.Run == run {
			return st, nil
		}
	}
	return ledger.RunStatus{}, fmt.Errorf("%w: %s", ledger.ErrRunNotFound, run)
}

func (f *fakeLedger) DeadLetters(_ context.Context, run string) ([]tasks.DeadLetter, error) {
	return f.dead[run], f.err
}

func (f *fakeLedger) Changes(_ context.Context, run string, fn func(tasks.ChangeItem) error) error {
	for i, it := range f.changes[run] {
		if f.failAfter > 0 && i == f.failAfter {
			return errors.New("redis: connection reset")
		}
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

type fakePauser struct {
	pauses []runspage.Pause
	err    error
}

func (p fakePauser) Pauses(context.Context) ([]runspage.Pause, error) { return p.pauses, p.err }

// sample is a ledger with an active run, a finished one with dead letters, and their
// records and changes.
func sample() *fakeLedger {
	active := ledger.RunStatus{Run: "nightly-customers-2026-11-27", State: ledger.RunActive, ErpConnectionID: 3,
		ActorType: erpsync.ActorCustomer, Source: "nightly", TotalKeys: 12000, ResyncedKeys: 4000, DeadKeys: 500,
		PendingKeys: 7500, Batches: 120, Calls: 61, StartedAt: t0,
		Records: map[string]map[string]int64{tasks.KindAdded: {"contact": 1200}, tasks.KindUpdated: {"contact": 2800, "person": 7}, tasks.KindDeleted: {}}}
	done := ledger.RunStatus{Run: "persons:manual", State: ledger.RunDoneWithDead, ErpConnectionID: 3,
		ActorType: erpsync.ActorPerson, TotalKeys: 120, ResyncedKeys: 0, DeadKeys: 120, Batches: 2, Calls: 30,
		StartedAt: t0.Add(-time.Hour), FinishedAt: t0.Add(-time.Hour + time.Minute),
		Records: map[string]map[string]int64{tasks.KindAdded: {}, tasks.KindUpdated: {}, tasks.KindDeleted: {}}}
	f := &fakeLedger{runs: []ledger.RunStatus{active, done}, dead: map[string][]tasks.DeadLetter{}, changes: map[string][]tasks.ChangeItem{}}
	for i := range 120 {
		f.dead[done.Run] = append(f.dead[done.Run], tasks.DeadLetter{Run: done.Run, Key: fmt.Sprintf("P%04d", i),
			BatchID: "persons:manual:b000000", Class: "business", ErrorCode: "ERP_REJECTED", Attempts: 3,
			Reason: fmt.Sprintf("business failure ERP_REJECTED\n  after 3 attempts <%d>", i), At: t0.Add(time.Duration(i) * time.Second)})
	}
	for i := range 2500 {
		f.changes[active.Run] = append(f.changes[active.Run], tasks.ChangeItem{Run: active.Run, Table: "contact",
			RecordID: int32(i + 1), Kind: tasks.KindUpdated, TaskID: "t1", At: t0})
	}
	return f
}

func newServer(t *testing.T, cfg runspage.Config) *httptest.Server {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	h, err := runspage.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(runspage.Path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, string(b)
}

func wantContains(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, body)
		}
	}
}

func TestListShowsRuns(t *testing.T) {
	t.Parallel()
	srv := newServer(t, runspage.Config{Ledger: sample(), DashboardURL: "/monitoring/"})
	resp, body := get(t, "GET", srv.URL+"/runs/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	wantContains(t, "runs list", body,
		`<tr data-run="nightly-customers-2026-11-27">`,
		`<a href="./nightly-customers-2026-11-27">`,
		`data-field="state">active<`,
		`data-field="total">12,000<`, `data-field="resynced">4,000<`, `dead-count" data-field="dead">500<`, `data-field="pending">7,500<`,
		`<progress max="100" value="37.5">`, `data-field="percent">37.5%<`,
		`data-field="rate">45.0/s<`, `data-field="eta">2m47s<`,
		`<li data-table="contact">contact +1,200 ~2,800 −0</li>`, `<li data-table="person">person +0 ~7 −0</li>`,
		`<a href="./persons:manual">`, `data-field="state">done, with dead letters<`, `data-field="eta">0s<`,
		`<meta http-equiv="refresh" content="10">`,
		`<a href="/monitoring/">tasks (dashboard)</a>`,
	)
	// The numbers come from runreport.ProgressOf, as `enqueue status` shows them.
	p := runreport.ProgressOf(sample().runs[0], now)
	wantContains(t, "runs list", body, fmt.Sprintf(`data-field="eta">%s<`, p.FormatETA()))
	for _, bad := range []string{"<script", "https://", "http://", "data-pause"} {
		if strings.Contains(body, bad) {
			t.Errorf("runs list holds %q", bad)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestListLimitAndErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t, runspage.Config{Ledger: sample()})
	_, body := get(t, "GET", srv.URL+"/runs/?limit=1")
	if strings.Contains(body, "persons:manual") || !strings.Contains(body, "nightly-customers") {
		t.Errorf("limit=1 shows:\n%s", body)
	}
	tests := []struct {
		name, path string
		code       int
		want       string
	}{
		{"limit not a number", "/runs/?limit=ten", 400, `limit=&#34;ten&#34;: want a whole number from 1 to 1000`},
		{"limit too big", "/runs/?limit=5000", 400, `want a whole number from 1 to 1000`},
		{"page zero", "/runs/persons:manual?page=0", 400, `page=&#34;0&#34;: want a whole number from 1`},
		{"unknown run", "/runs/nope", 404, `run &#34;nope&#34; not found`},
		{"invalid run name", "/runs/a%20b", 404, `only letters, digits and -_.: are allowed`},
		{"unknown page", "/runs/a/b/c", 404, `no such page: /runs/a/b/c`},
		{"export format", "/runs/persons:manual/changes?format=xlsx", 400, `format=&#34;xlsx&#34;: want csv or jsonl`},
		{"export of unknown run", "/runs/nope/changes", 404, `run &#34;nope&#34; not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, "GET", srv.URL+tt.path)
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.code)
			}
			wantContains(t, tt.path, body, tt.want)
		})
	}
	if resp, _ := get(t, "POST", srv.URL+"/runs/persons:manual"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405 (the page only reads)", resp.StatusCode)
	}
}

func TestLedgerUnreachable(t *testing.T) {
	t.Parallel()
	srv := newServer(t, runspage.Config{Ledger: &fakeLedger{err: errors.New("dial tcp 127.0.0.1:6379: connection refused")}})
	for _, path := range []string{"/runs/", "/runs/x"} {
		resp, body := get(t, "GET", srv.URL+path)
		if resp.StatusCode != 500 {
			t.Errorf("%s: %d, want 500", path, resp.StatusCode)
		}
		wantContains(t, path, body, "reading the ledger: dial tcp 127.0.0.1:6379: connection refused")
	}
}

func TestRunPageDeadLettersPaged(t *testing.T) {
	t.Parallel()
	srv := newServer(t, runspage.Config{Ledger: sample(), DeadPerPage: 50})
	tests := []struct {
		page        string
		first, last int
		wants       []string
		unwanted    []string
	}{
		{"", 0, 49, []string{`data-field="page">1<`, `1–50 of 120`, `<a href="?page=2" rel="next">`}, []string{`rel="prev"`}},
		{"?page=2", 50, 99, []string{`51–100 of 120`, `<a href="?page=1" rel="prev">`, `<a href="?page=3" rel="next">`}, nil},
		{"?page=3", 100, 119, []string{`101–120 of 120`, `<a href="?page=2" rel="prev">`}, []string{`rel="next"`}},
		{"?page=9", -1, -1, []string{`No dead letters on this page.`, `<a href="?page=3" rel="prev">`}, []string{`rel="next"`}},
	}
	for _, tt := range tests {
		t.Run("page"+tt.page, func(t *testing.T) {
			resp, body := get(t, "GET", srv.URL+"/runs/persons:manual"+tt.page)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d\n%s", resp.StatusCode, body)
			}
			wantContains(t, "run page", body, tt.wants...)
			wantContains(t, "run page", body, `data-field="dead-total">120<`, `done, with dead letters`,
				`<a href="./">← all runs</a>`, `enqueue dead requeue --run persons:manual`)
			for _, u := range tt.unwanted {
				if strings.Contains(body, u) {
					t.Errorf("run page holds %q", u)
				}
			}
			if n := strings.Count(body, `<tr data-key=`); tt.first >= 0 && n != tt.last-tt.first+1 {
				t.Errorf("%d dead letters shown, want %d", n, tt.last-tt.first+1)
			}
			if tt.first >= 0 {
				// Oldest first; the reason on one line and escaped.
				wantContains(t, "run page", body,
					fmt.Sprintf(`<tr data-key="P%04d"><td class="nowrap"><code data-field="key">P%04d</code></td><td class="nowrap">persons:manual:b000000</td><td>business</td><td>ERP_REJECTED</td><td class="num">3</td>`, tt.first, tt.first),
					fmt.Sprintf(`data-field="reason">business failure ERP_REJECTED after 3 attempts &lt;%d&gt;<`, tt.last))
			}
			if strings.Contains(body, "http-equiv") {
				t.Error("a finished run's page reloads itself")
			}
		})
	}
}

func TestRunPageRecordsAndExportLinks(t *testing.T) {
	t.Parallel()
	srv := newServer(t, runspage.Config{Ledger: sample(), Refresh: -1})
	_, body := get(t, "GET", srv.URL+"/runs/nightly-customers-2026-11-27")
	wantContains(t, "run page", body,
		`<span data-field="run">nightly-customers-2026-11-27</span>`,
		`ERP connection 3, Customer (from nightly)`,
		`<tr data-table="contact"><td>contact</td><td class="num" data-field="added">1,200</td><td class="num" data-field="updated">2,800</td><td class="num" data-field="deleted">0</td></tr>`,
		`<tr data-table="person"><td>person</td><td class="num" data-field="added">0</td><td class="num" data-field="updated">7</td>`,
		`data-field="changed">4,007<`,
		`<a id="export-csv" href="./nightly-customers-2026-11-27/changes?format=csv">`,
		`<a id="export-ndjson" href="./nightly-customers-2026-11-27/changes?format=jsonl">`,
		`None: every key that finished was resynced.`,
		`data-field="batches">120<`,
	)
	if strings.Contains(body, "http-equiv") {
		t.Error("Refresh -1, but the page reloads itself")
	}
}

func TestChangesExport(t *testing.T) {
	t.Parallel()
	led := sample()
	srv := newServer(t, runspage.Config{Ledger: led})
	run := "nightly-customers-2026-11-27"
	for _, tt := range []struct {
		query, ctype, file string
		f                  export.Format
	}{
		{"", "text/csv; charset=utf-8", run + "-changes.csv", export.CSV},
		{"?format=csv", "text/csv; charset=utf-8", run + "-changes.csv", export.CSV},
		{"?format=jsonl", "application/x-ndjson", run + "-changes.ndjson", export.JSONL},
	} {
		t.Run(string(tt.f)+tt.query, func(t *testing.T) {
			resp, body := get(t, "GET", srv.URL+"/runs/"+run+"/changes"+tt.query)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tt.ctype {
				t.Fatalf("status %d, %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename=`+tt.file {
				t.Errorf("Content-Disposition %q", cd)
			}
			// Byte for byte what `enqueue changes` writes.
			var want strings.Builder
			w := export.NewChangeWriter(&want, tt.f)
			for _, it := range led.changes[run] {
				w.Write(it)
			}
			w.Flush()
			if body != want.String() {
				t.Errorf("export: %d bytes, want %d", len(body), want.Len())
			}
		})
	}
	resp, _ := get(t, "GET", srv.URL+"/runs/persons:manual/changes")
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename=persons_manual-changes.csv` {
		t.Errorf("Content-Disposition of a run with ':' %q", cd)
	}
}

func TestChangesExportCutOffOnError(t *testing.T) {
	t.Parallel()
	led := sample()
	led.failAfter = 2000 // well past the first bytes sent
	srv := newServer(t, runspage.Config{Ledger: led})
	resp, err := http.Get(srv.URL + "/runs/nightly-customers-2026-11-27/changes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("an export that failed half-way read as complete")
	}

	led = sample()
	led.failAfter = 1 // nothing sent yet: a proper error
	srv = newServer(t, runspage.Config{Ledger: led})
	r2, body := get(t, "GET", srv.URL+"/runs/nightly-customers-2026-11-27/changes")
	if r2.StatusCode != 500 || r2.Header.Get("Content-Disposition") != "" {
		t.Errorf("status %d, Content-Disposition %q", r2.StatusCode, r2.Header.Get("Content-Disposition"))
	}
	wantContains(t, "failed export", body, "reading the changes: redis: connection reset")
}

func TestPauseBanner(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 11, 27, 2, 31, 5, 0, time.UTC)
	tests := []struct {
		name   string
		pauser runspage.Pauser
		want   []string
	}{
		{"breaker open", fakePauser{pauses: []runspage.Pause{{Reason: "SuperOffice unavailable", Since: since, Until: since.Add(time.Minute)}}},
			[]string{`Paused: SuperOffice unavailable since 2026-11-27 02:31:05 UTC; next try 2026-11-27 02:32:05 UTC: batches wait`}},
		{"scoped, no reason", fakePauser{pauses: []runspage.Pause{{Scope: "ERP connection 3, Customer", Since: since}}},
			[]string{`Paused: calls held since 2026-11-27 02:31:05 UTC (ERP connection 3, Customer): batches wait`}},
		{"pauser fails", fakePauser{err: errors.New("redis: timeout")},
			[]string{`Flow control state unknown: redis: timeout`, `data-field="total">12,000<`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, runspage.Config{Ledger: sample(), Pauses: tt.pauser})
			for _, path := range []string{"/runs/", "/runs/persons:manual"} {
				resp, body := get(t, "GET", srv.URL+path)
				if resp.StatusCode != 200 {
					t.Errorf("%s: %d", path, resp.StatusCode)
				}
				wantContains(t, path, body, tt.want[0])
				if path == "/runs/" {
					wantContains(t, path, body, tt.want[1:]...)
				}
			}
		})
	}
}

func TestEmptyLedger(t *testing.T) {
	t.Parallel()
	srv := newServer(t, runspage.Config{Ledger: &fakeLedger{}})
	_, body := get(t, "GET", srv.URL+"/runs/")
	wantContains(t, "empty list", body, "No runs yet.")
	if strings.Contains(body, "http-equiv") {
		t.Error("an empty list reloads itself")
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg  runspage.Config
		want string
	}{
		{runspage.Config{}, "runspage: Config.Ledger is required"},
		{runspage.Config{Ledger: &fakeLedger{}, Runs: 5000}, "runspage: Config.Runs 5000: want 0 (default 50) to 1000"},
		{runspage.Config{Ledger: &fakeLedger{}, DeadPerPage: -1}, "runspage: Config.DeadPerPage -1: want 0 (default 50) or more"},
	} {
		if _, err := runspage.New(tt.cfg); err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestRunPageShowsRetryingBatches(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var asked []string
	srv := newServer(t, runspage.Config{Ledger: sample(), Retrying: func(_ context.Context, run string) (runreport.Retrying, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, run)
		return runreport.Retrying{Batches: 3, LastError: "HTTP 503\nService Unavailable", LastFailedAt: t0}, nil
	}})
	_, body := get(t, "GET", srv.URL+"/runs/nightly-customers-2026-11-27")
	wantContains(t, "active run", body, `<span data-field="retrying">3</span> batches; last error (2026-11-27 02:30:00 UTC): <span data-field="retry-reason">HTTP 503 Service Unavailable</span>`)
	_, body = get(t, "GET", srv.URL+"/runs/persons:manual")
	if strings.Contains(body, "waiting to retry") {
		t.Error("a finished run shows batches waiting to retry")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 1 || asked[0] != "nightly-customers-2026-11-27" {
		t.Errorf("retry set read for %v, want only the active run's", asked)
	}
}

// TestRunPageETAWaitsForRetries: an active run whose every pending key waits on a retry
// due in 7 minutes shows that ETA, not its rate's, says when the retry is due, and says
// which batches are held for an auth failure.
func TestRunPageETAWaitsForRetries(t *testing.T) {
	t.Parallel()
	due := now.Add(7 * time.Minute)
	srv := newServer(t, runspage.Config{Ledger: sample(), Now: func() time.Time { return now }, Retrying: func(context.Context, string) (runreport.Retrying, error) {
		return runreport.Retrying{Batches: 75, Keys: 7500, LastError: "auth: login refused", LastFailedAt: t0, NextAt: due, LastAt: due,
			AuthBatches: 75, AuthError: "auth: login refused"}, nil
	}})
	_, body := get(t, "GET", srv.URL+"/runs/")
	wantContains(t, "runs list", body, `data-field="eta">7m0s<`)
	_, body = get(t, "GET", srv.URL+"/runs/nightly-customers-2026-11-27")
	wantContains(t, "active run", body,
		`data-field="eta">7m0s<`,
		`<dd data-field="waiting">every pending key waits on a retry: 75 batches retry at 02:38:40 UTC (in 7m0s)</dd>`,
		`<span data-field="auth-held">75</span> batches held for an auth failure, until the worker's SuperOffice login settings are fixed: auth: login refused`,
		`<meta http-equiv="refresh" content="10">`)
}
