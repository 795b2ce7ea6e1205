package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/export"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// refuseAll is a SuperOffice that refuses every key, with an explanation a spreadsheet
// would run.
type refuseAll struct{}

func (refuseAll) ForceResyncExternal(context.Context, int, erpsync.ActorType, []string) (*erpsync.Result, error) {
	return &erpsync.Result{IsOk: false, Status: erpsync.StatusError, ErrorCode: "@E1", TechExplanation: `=cmd|' /C calc'!A0`}, nil
}

// deadRun records a run whose every key is dead-lettered, one batch a key, as a worker would.
func deadRun(t *testing.T, rdb redis.UniversalClient, run string, keys ...string) {
	t.Helper()
	l := ledger.NewLedger(rdb)
	h, err := tasks.NewHandler(tasks.HandlerConfig{Resyncer: refuseAll{}, Ledger: l, Redis: rdb, BusinessRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for seq, k := range keys {
		b := tasks.Batch{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: []string{k}, Seq: seq}
		if _, err := l.RegisterBatch(ctx, ledger.RunMeta{Run: run, ErpConnectionID: 3, ActorType: erpsync.ActorCustomer}, tasks.BatchID(run, seq), 1); err != nil {
			t.Fatal(err)
		}
		task, err := tasks.NewResyncTask(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ProcessTask(ctx, task); err == nil {
			t.Fatalf("key %q was not refused", k)
		}
	}
}

// TestDeadExportCSVNeutralisesFormulas: no cell of `dead export --format csv` starts with
// what a spreadsheet runs as a formula (an ERP key =HYPERLINK(...), SuperOffice's
// explanation); a key keeps its text behind one apostrophe, and the CSV submitted again
// with --csv-column key enqueues exactly the keys that died.
func TestDeadExportCSVNeutralisesFormulas(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	url := db.URL()
	keys := []string{`=HYPERLINK("http://evil.example/?x","click")`, "+31 20 555", "-5", "@SUM(A1)", "'quoted", "'=both", "plain"}
	deadRun(t, rdb, "formulas", keys...)

	r := enqueue(t, "", "dead", "export", "--format", "csv", "--run", "formulas", "--redis-url", url)
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if r.code != 0 || err != nil || len(rows) != len(keys)+1 {
		t.Fatalf("export: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	var got []string
	for i, row := range rows {
		for j, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("row %d, column %s: %q starts a formula", i+1, rows[0][j], cell)
			}
		}
		if i > 0 {
			if k := row[1]; k[0] != '\'' && k != "plain" {
				t.Errorf("key cell %q: want it behind an apostrophe", k)
			}
			got = append(got, export.ParseCSVCell(row[1]))
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Errorf("keys read back %q, want %q", got, want)
	}

	// Submitted again as it is: the keys that died, not their written form.
	file := filepath.Join(t.TempDir(), "dead.csv")
	if err := os.WriteFile(file, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	r = enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", file, "--csv-column", "key",
		"--run", "again", "--redis-url", url, "--queue", "again")
	if r.code != 0 {
		t.Fatalf("submit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	pending, err := insp.ListPendingTasks("again")
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, ti := range pending {
		b, err := tasks.ParseBatch(ti.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b.Keys...)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("keys submitted again %q, want %q", got, want)
	}
}
