package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// mainEnv makes the test binary run main instead of the tests (see TestSecondInterruptExits).
const mainEnv = "ERPRESYNC_ENQUEUE_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
	}
	os.Exit(redistest.Main(m))
}

type result struct {
	code           int
	stdout, stderr string
}

// enqueue runs the command in-process.
func enqueue(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" },
		progressEvery: time.Hour, now: time.Now}
	code := c.run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

func writeKeys(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// deadURL is a Redis URL where nothing listens.
const deadURL = "redis://127.0.0.1:1/0"

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	keys := writeKeys(t, "k.txt", "A1\n")
	tests := []struct {
		name string
		args []string
		want string // on stderr
	}{
		{"no args", nil, "Usage:"},
		{"unknown command", []string{"stat"}, `enqueue: unknown command "stat": want key, status, runs, rejected, dead, changes or tenants, or flags to submit a file`},
		{"no connection", []string{"--actor-type", "Customer", "--file", keys}, "enqueue: --erp-connection is required: the ERP connection id, a positive integer"},
		{"no actor", []string{"--erp-connection", "3", "--file", keys}, "enqueue: --actor-type is required: want one of Customer, Supplier, Partner, Person, Project, Employee, Sale"},
		{"bad actor", []string{"--erp-connection", "3", "--actor-type", "Client", "--file", keys}, `enqueue: --actor-type: actor type "Client": want one of Customer, Supplier, Partner, Person, Project, Employee, Sale`},
		{"unknown actor", []string{"--erp-connection", "3", "--actor-type", "Unknown", "--file", keys}, `enqueue: --actor-type: actor type "Unknown": want one of Customer, Supplier, Partner, Person, Project, Employee, Sale`},
		{"no file", []string{"--erp-connection", "3", "--actor-type", "Customer"}, "enqueue: --file is required: a path, or - for standard input"},
		{"missing file", []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", keys + ".nope"}, "no such file or directory"},
		{"batch size", []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--batch-size", "0"}, "enqueue: --batch-size 0: want keys per call, 1 to 1000"},
		{"delimiter", []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--csv-delimiter", ";;"}, `enqueue: --csv-delimiter ";;": want exactly one character`},
		{"run name", []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", "a/b"}, `enqueue: --run: run name "a/b": character '/' at byte 1: only letters, digits and -_.: are allowed`},
		{"bad flag", []string{"--erp-connection", "x"}, `enqueue: --erp-connection "x": want the ERP connection id, a positive integer`},
		{"stray argument", []string{"--erp-connection", "3", "--actor-type", "Customer", keys}, `enqueue: unexpected argument "` + keys + `": give the input with --file PATH (or --file - for stdin)`},
		{"runs with an argument", []string{"runs", "r"}, `enqueue: unexpected argument "r"`},
		{"dead list with a run", []string{"dead", "list", "r"}, `enqueue: unexpected argument "r" (give the run with --run)`},
		{"csv column", []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--csv-column", "id", "--dry-run"}, `enqueue: invalid configuration: ` + keys + `:1: CSV header has no column "id"; it has "A1" (or give a 0-based index)`},
		{"status without run", []string{"status"}, "enqueue: status needs exactly one RUN"},
		{"status with two runs", []string{"status", "a", "b"}, "enqueue: status needs exactly one RUN (see `enqueue runs`)"},
		{"rejected without run", []string{"rejected"}, "enqueue: rejected needs exactly one RUN (see `enqueue runs`)"},
		{"changes without run", []string{"changes"}, "enqueue: changes needs exactly one RUN"},
		{"dead without sub", []string{"dead"}, "enqueue: dead needs a subcommand: list, export, requeue or purge"},
		{"dead unknown", []string{"dead", "show"}, `enqueue: unknown dead subcommand "show"`},
		{"purge without yes", []string{"dead", "purge", "--run", "r"}, "enqueue: dead purge deletes dead letters for good; add --yes to confirm"},
		{"requeue without run", []string{"dead", "requeue"}, "enqueue: dead requeue needs --run RUN, or --all for every run"},
		{"requeue bad class", []string{"dead", "requeue", "--all", "--class", "odd"}, "enqueue: --class:"},
		{"export format", []string{"dead", "export", "--format", "xlsx"}, `enqueue: --format "xlsx": want csv or jsonl`},
		{"changes format", []string{"changes", "r", "--format", "xml"}, `enqueue: --format "xml": want csv or jsonl`},
		{"key without keys", []string{"key", "--erp-connection", "3", "--actor-type", "Customer"}, "enqueue: no keys: give at least one KEY after the flags"},
		{"invalid key", []string{"key", "--erp-connection", "3", "--actor-type", "Customer", "ok", "b\x01d"}, `enqueue: key 2 "b\x01d": contains control character U+0001 at byte 1, which XML 1.0 cannot carry; nothing was enqueued`},
		{"unreachable redis", []string{"status", "r", "--redis-url", deadURL}, "enqueue: cannot reach Redis at redis://127.0.0.1:1/0: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"bad redis url", []string{"runs", "--redis-url", "http://x"}, `enqueue: REDIS_URL: scheme "http" not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := enqueue(t, "", tt.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", r.code, r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %q", r.stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := enqueue(t, "", "-h")
	if r.code != 0 || !strings.Contains(r.stdout, "Exit status:") || !strings.Contains(r.stdout, "REDIS_URL") {
		t.Errorf("-h: exit %d\n%s", r.code, r.stdout)
	}
	r = enqueue(t, "", "status", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "-wait") {
		t.Errorf("status -h: exit %d\n%s", r.code, r.stderr)
	}
}

func TestDryRunNeedsNoRedis(t *testing.T) {
	t.Parallel()
	keys := writeKeys(t, "k.csv", "\xEF\xBB\xBFname;key\r\nA;K1\r\nB;K2\r\nC;K1\r\nD;K\x00\r\n")
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "customer", "--file", keys, "--csv-column", "key",
		"--csv-delimiter", ";", "--dry-run", "--json", "--run", "dry", "--redis-url", deadURL)
	if r.code != exitBad {
		t.Errorf("exit %d, want 1 (an invalid key was skipped); stderr:\n%s", r.code, r.stderr)
	}
	var s struct {
		Run             string `json:"run"`
		DryRun          bool   `json:"dry_run"`
		Read            int    `json:"read"`
		Valid           int    `json:"valid"`
		Invalid         int    `json:"invalid"`
		Duplicates      int    `json:"duplicates"`
		Keys            int    `json:"keys"`
		Batches         int    `json:"batches"`
		BatchesEnqueued int    `json:"batches_enqueued"`
		BatchesPresent  int    `json:"batches_present"`
		Problems        []struct {
			File   string `json:"file"`
			Line   int    `json:"line"`
			Reason string `json:"reason"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if s.Run != "dry" || !s.DryRun || s.Read != 4 || s.Valid != 3 || s.Invalid != 1 || s.Duplicates != 1 || s.Keys != 2 || s.Batches != 1 || s.BatchesEnqueued != 0 {
		t.Errorf("summary = %+v", s)
	}
	if len(s.Problems) != 2 || s.Problems[1].Line != 5 || s.Problems[1].Reason != "contains control character U+0000 at byte 1, which XML 1.0 cannot carry" {
		t.Errorf("problems = %+v", s.Problems)
	}
	wantContains(t, "stderr", r.stderr, "enqueue: run dry (dry run: nothing is enqueued)", keys+`:4: key "K1": duplicate of line 2`, keys+`:5: key "K\x00": contains control character`)

	// Text output; a clean file exits 0.
	clean := writeKeys(t, "c.txt", "A\nB\n")
	r = enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", clean, "--dry-run", "--run", "dry2")
	want := "run dry2\nread 2, valid 2, invalid 0, duplicates 0, distinct keys 2\nbatches 1 (dry run: none enqueued)\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant\n%s", r.code, r.stdout, want)
	}
}

func TestSubmitStdinAndResubmit(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var in strings.Builder
	for i := range 250 {
		fmt.Fprintf(&in, "K%03d\r\n", i)
	}
	args := []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", "-", "--run", "stdin-run",
		"--redis-url", db.URL(), "--queue", "cli", "--json"}
	r := enqueue(t, in.String(), args...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s["keys"] != 250.0 || s["batches_enqueued"] != 3.0 || s["source"] != "stdin" {
		t.Errorf("summary = %v", s)
	}
	r = enqueue(t, in.String(), args...)
	json.Unmarshal([]byte(r.stdout), &s)
	if r.code != 0 || s["batches_enqueued"] != 0.0 || s["batches_present"] != 3.0 {
		t.Errorf("resubmit: exit %d, summary %v", r.code, s)
	}
	r = enqueue(t, in.String(), append(args, "--batch-size", "50")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "run stdin-run was submitted with ERP connection 3, actor type Customer, batch size 100") {
		t.Errorf("changed batch size: exit %d\n%s", r.code, r.stderr)
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if qi, err := insp.GetQueueInfo("cli"); err != nil || qi.Pending != 3 {
		t.Errorf("queue: %+v, %v", qi, err)
	}
}

func TestStrictRefusesEverything(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	keys := writeKeys(t, "k.txt", "A1\n"+strings.Repeat("L", 255)+"\nA3\n")
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--strict",
		"--redis-url", db.URL(), "--queue", "strict")
	if r.code != exitBad {
		t.Errorf("exit %d, want 1", r.code)
	}
	wantContains(t, "stderr", r.stderr, keys+`:2: key "`+strings.Repeat("L", 40)+`…": longer than 254 characters (255)`,
		"enqueue: --strict: 1 invalid key; nothing was enqueued")
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if qs, _ := insp.Queues(); len(qs) != 0 {
		t.Errorf("queues after strict failure: %v", qs)
	}
}

func TestKeyTrickle(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	run := "trickle-" + time.Now().UTC().Format("2006-01-02") + "-4-Supplier"
	r := enqueue(t, "", "key", "--erp-connection", "4", "--actor-type", "Supplier", "--redis-url", db.URL(), "--queue", "tq", "S1", "S2", "--", "-S3")
	if r.code != 0 || r.stdout != "enqueued 3 keys for trickle resync in run "+run+" (queue tq, group erpresync:4:Supplier)\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = enqueue(t, "", "key", "--erp-connection", "4", "--actor-type", "Supplier", "--redis-url", db.URL(), "--queue", "tq2", "--json", "S4")
	var out struct {
		Keys  int    `json:"keys"`
		Run   string `json:"run"`
		Group string `json:"group"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || out.Keys != 1 || out.Run != run || out.Group != "erpresync:4:Supplier" {
		t.Errorf("--json: exit %d, %v, %+v\n%s", r.code, err, out, r.stdout)
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	ts, err := insp.ListAggregatingTasks("tq", tasks.GroupName(4, erpsync.ActorSupplier))
	if err != nil || len(ts) != 3 {
		t.Errorf("aggregating: %d, %v", len(ts), err)
	}
}

// trialPoison is the key the README's trial simulator refuses (-poison); examples/customers.txt holds it.
const trialPoison = "CUST-13"

// fakeSO answers IsOk with one updated contact per key, and IsOk=false (ErrorCode E42) for
// any batch holding a key that starts with "BAD", or trialPoison.
type fakeSO struct{}

func (fakeSO) ForceResyncExternal(ctx context.Context, conn int, actor erpsync.ActorType, keys []string) (*erpsync.Result, error) {
	for _, k := range keys {
		if strings.HasPrefix(k, "BAD") || k == trialPoison {
			return &erpsync.Result{IsOk: false, Status: erpsync.StatusError, ErrorCode: "E42", TechExplanation: "no such " + actor.String()}, nil
		}
	}
	r := &erpsync.Result{IsOk: true, Status: erpsync.StatusOk}
	for i := range keys {
		r.Changes.Updated = append(r.Changes.Updated, erpsync.ChangedItem{Table: "contact", RecordID: int32(100 + i)})
	}
	r.Changes.Added = []erpsync.ChangedItem{{Table: "person", RecordID: 7}}
	return r, nil
}

// startWorker serves queue with the real tasks.Handler and fakeSO until the test ends.
func startWorker(t *testing.T, db *redistest.DB, queue string) {
	t.Helper()
	rdb := db.Client()
	h, err := tasks.NewHandler(tasks.HandlerConfig{Resyncer: fakeSO{}, Ledger: ledger.NewLedger(rdb), Redis: rdb, BusinessRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServer(db.Opt(), asynq.Config{Queues: map[string]int{queue: 1}, Concurrency: 2, LogLevel: asynq.FatalLevel,
		IsFailure: tasks.IsFailure})
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); rdb.Close() })
}

func TestOperatorFlow(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	keys := writeKeys(t, "k.txt", "G1\nG2\nBAD1\nG3\nG4\n")
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", "ops",
		"--batch-size", "2", "--redis-url", url, "--queue", "ops")
	if r.code != 0 || !strings.Contains(r.stdout, "batches 3: enqueued 3, already present 0") {
		t.Fatalf("submit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Before any worker runs: active, everything pending.
	r = enqueue(t, "", "status", "ops", "--json", "--redis-url", url)
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if st["state"] != "active" || st["pending_keys"] != 5.0 || st["finished_at"] != nil || st["eta_seconds"] != nil {
		t.Errorf("status before = %v", st)
	}

	// status --wait follows the run while a worker processes it; a dead letter makes it 1.
	var wg sync.WaitGroup
	var waited result
	wg.Go(func() {
		waited = enqueue(t, "", "status", "ops", "--wait", "--interval", "20ms", "--json", "--redis-url", url)
	})
	startWorker(t, db, "ops")
	wg.Wait()
	if waited.code != exitBad {
		t.Errorf("status --wait: exit %d, want 1 (one dead letter)\n%s", waited.code, waited.stderr)
	}
	if err := json.Unmarshal([]byte(waited.stdout), &st); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"run": "ops", "state": "done_with_dead", "total_keys": 5.0, "resynced_keys": 4.0,
		"dead_keys": 1.0, "pending_keys": 0.0, "percent": 100.0, "erp_connection": 3.0, "actor_type": "Customer"} {
		if st[k] != want {
			t.Errorf("status %s = %v, want %v", k, st[k], want)
		}
	}
	rec, _ := st["records"].(map[string]any)
	if upd, _ := rec["updated"].(map[string]any); upd["contact"] != 4.0 {
		t.Errorf("records = %v", st["records"])
	}
	if del, _ := rec["deleted"].(map[string]any); del == nil || len(del) != 0 {
		t.Errorf("records.deleted = %v, want {}", rec["deleted"])
	}
	if st["started_at"] == nil || st["finished_at"] == nil {
		t.Errorf("times: started %v finished %v", st["started_at"], st["finished_at"])
	}

	r = enqueue(t, "", "status", "ops", "--redis-url", url)
	wantContains(t, "status text", squeeze(r.stdout), "\nstate done_with_dead\n", "\nkeys 5 total: 4 resynced, 1 dead, 0 pending (100.0% done)\n",
		"\nrecords updated contact 4\n", "\nrecords deleted -\n", "\ntarget ERP connection 3, Customer (from cli)\n")
	if r.code != exitBad {
		t.Errorf("status exit %d, want 1", r.code)
	}

	r = enqueue(t, "", "runs", "--redis-url", url)
	if r.code != 0 || !strings.Contains(squeeze(r.stdout), "\nops done_with_dead 5 4 1 0 ") {
		t.Errorf("runs: exit %d\n%s", r.code, r.stdout)
	}

	r = enqueue(t, "", "dead", "list", "--run", "ops", "--json", "--redis-url", url)
	var dls []tasks.DeadLetter
	if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil || len(dls) != 1 || dls[0].Key != "BAD1" || dls[0].ErrorCode != "E42" {
		t.Errorf("dead list: %v %+v", err, dls)
	}
	r = enqueue(t, "", "dead", "list", "--redis-url", url)
	if !strings.Contains(squeeze(r.stdout), `ops "BAD1" ops:b000001.0 business E42 1 `) {
		t.Errorf("dead list text:\n%s", r.stdout)
	}

	// What happened to ERP key BAD1? Asked in every run, and in one.
	for _, args := range [][]string{{"dead", "list", "--key", "BAD1", "--json"}, {"dead", "list", "--key", "BAD1", "--run", "ops", "--json"}} {
		r = enqueue(t, "", append(args, "--redis-url", url)...)
		dls = nil
		if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil || r.code != 0 || len(dls) != 1 || dls[0].Run != "ops" || dls[0].Reason == "" {
			t.Errorf("%v: exit %d, %v %+v", args, r.code, err, dls)
		}
	}
	r = enqueue(t, "", "dead", "list", "--key", "G1", "--redis-url", url)
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, `no dead letters for key "G1"`) {
		t.Errorf("dead list --key G1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = enqueue(t, "", "dead", "list", "--key", "G1", "--json", "--redis-url", url)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("dead list --key G1 --json: exit %d %s", r.code, r.stdout)
	}

	r = enqueue(t, "", "dead", "export", "--format", "csv", "--run", "ops", "--redis-url", url)
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][1] != "key" || rows[1][1] != "BAD1" || rows[1][6] != "E42" || rows[1][4] != "Customer" {
		t.Errorf("export: %v %q", err, rows)
	}

	r = enqueue(t, "", "changes", "ops", "--format", "jsonl", "--redis-url", url)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var item tasks.ChangeItem
	// G1+G2, G4, and G3 (split from BAD1): 4 updated contacts and 3 added persons.
	if r.code != 0 || len(lines) != 7 || json.Unmarshal([]byte(lines[0]), &item) != nil || item.Run != "ops" {
		t.Errorf("changes jsonl: exit %d, %d lines\n%s", r.code, len(lines), r.stdout)
	}
	r = enqueue(t, "", "changes", "ops", "--format", "csv", "--redis-url", url)
	rows, err = csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(rows) != 8 || strings.Join(rows[0], ",") != "run,table,record_id,kind,task_id,at" {
		t.Errorf("changes csv: %v\n%s", err, r.stdout)
	}

	r = enqueue(t, "", "changes", "nope", "--redis-url", url)
	if r.code != exitUsage || !strings.Contains(r.stderr, `run "nope" not found`) {
		t.Errorf("changes of unknown run: exit %d %s", r.code, r.stderr)
	}
	r = enqueue(t, "", "status", "nope", "--redis-url", url)
	if r.code != exitUsage || !strings.Contains(r.stderr, `run "nope" not found`) || r.stdout != "" {
		t.Errorf("status of unknown run: exit %d %s", r.code, r.stderr)
	}

	// Requeue the dead key (it fails again with the fake), then purge.
	r = enqueue(t, "", "dead", "requeue", "--run", "ops", "--key", "G1", "--redis-url", url, "--queue", "ops")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "requeued 0 keys") {
		t.Errorf("requeue of a key that is not dead: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = enqueue(t, "", "dead", "requeue", "--run", "ops", "--error-code", "E42", "--key", "BAD1", "--redis-url", url, "--queue", "ops")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "requeued 1 key in 1 batch") {
		t.Errorf("requeue: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = enqueue(t, "", "status", "ops", "--wait", "--interval", "20ms", "--json", "--redis-url", url)
	json.Unmarshal([]byte(r.stdout), &st)
	if r.code != exitBad || st["dead_keys"] != 1.0 || st["total_keys"] != 5.0 {
		t.Errorf("after requeue: exit %d, %v", r.code, st)
	}
	r = enqueue(t, "", "dead", "purge", "--run", "ops", "--yes", "--redis-url", url)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "purged 1 dead letter") {
		t.Errorf("purge: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = enqueue(t, "", "dead", "list", "--run", "ops", "--json", "--redis-url", url)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("dead list after purge: %s", r.stdout)
	}
}

func TestStatusWaitCleanRunExitsZero(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	keys := writeKeys(t, "k.txt", "G1\nG2\nG3\n")
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", "clean",
		"--redis-url", db.URL(), "--queue", "clean")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	startWorker(t, db, "clean")
	r = enqueue(t, "", "status", "clean", "--wait", "--interval", "20ms", "--redis-url", db.URL())
	if r.code != 0 || !strings.Contains(squeeze(r.stdout), "\nstate done\n") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// squeeze collapses runs of spaces (tabwriter padding) to one.
func squeeze(s string) string {
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}

func TestMalformedCSVAndInterrupt(t *testing.T) {
	t.Parallel()
	bad := writeKeys(t, "k.csv", "key\nA1\n\"A2\n")
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", bad, "--csv-column", "key", "--dry-run", "--run", "m")
	if r.code != exitBad || !strings.Contains(r.stderr, `enqueue: submit run m: `+bad+`: line 3, column 5: extraneous or missing " in quoted-field; fix the input`) {
		t.Errorf("malformed: exit %d\n%s", r.code, r.stderr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, progressEvery: time.Hour, now: time.Now}
	code := c.run(ctx, []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", writeKeys(t, "k.txt", "A\n"), "--dry-run", "--run", "i"})
	if code != exitUsage || !strings.Contains(errb.String(), "enqueue: interrupted; run the same command with --run i to enqueue the rest") {
		t.Errorf("interrupted: exit %d\n%s", code, errb.String())
	}
}

// TestSecondInterruptExits: the first Ctrl-C lets enqueue finish cleanly, but what it waits
// for may never come (here: standard input that stays open, like a terminal); the second
// one ends the process at once.
func TestSecondInterruptExits(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "--erp-connection", "3", "--actor-type", "Customer", "--file", "-", "--dry-run", "--run", "sig")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines, done := make(chan string), make(chan struct{})
	defer close(done)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	deadline := time.After(20 * time.Second)
	waitFor := func(prefix string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stderr ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q on stderr within 20 s", prefix)
			}
		}
	}
	waitFor("enqueue: run sig") // printed just before the submission starts reading stdin
	cmd.Process.Signal(os.Interrupt)
	waitFor("enqueue: interrupted")
	cmd.Process.Signal(os.Interrupt)
	exited := make(chan error, 1)
	go func() {
		for range lines {
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-exited:
		if cmd.ProcessState.Success() {
			t.Errorf("exit status 0 after two interrupts")
		}
	case <-deadline:
		t.Fatal("still running 20 s after the second interrupt")
	}
}

// TestHelpHidesRedisPassword: REDIS_URL may carry a password; the flag usage that `-h` and
// a bad flag print shows the defaults the environment gives, and must not print it.
func TestHelpHidesRedisPassword(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
	tests := []struct {
		name string
		args []string
		want string // on stderr
	}{
		{"help", []string{"status", "-h"}, `(default "redis://:xxxxx@127.0.0.1:1/0")`},
		{"flag without value", []string{"--redis-url"}, "--redis-url needs a value"},
		{"URL from the environment", []string{"status", "r"}, "cannot reach Redis at redis://:xxxxx@127.0.0.1:1/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] },
				progressEvery: time.Hour, now: time.Now}
			c.run(context.Background(), tt.args)
			if strings.Contains(out.String()+errb.String(), "hunter2") {
				t.Errorf("prints the password:\n%s%s", out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errb.String())
			}
		})
	}
}

func TestCSVWarnings(t *testing.T) {
	t.Parallel()
	csv := writeKeys(t, "persons.csv", "name,erp_key\nAda,P-1\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "csv file read as lines", args: []string{"--file", csv}, want: "looks like CSV, but without --csv-column"},
		{name: "index without header", args: []string{"--file", csv, "--csv-column", "1"}, want: "add --csv-header if it is a header"},
		{name: "index with header", args: []string{"--file", csv, "--csv-column", "1", "--csv-header"}},
		{name: "column by name", args: []string{"--file", csv, "--csv-column", "erp_key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := enqueue(t, "", append([]string{"--erp-connection", "3", "--actor-type", "Person", "--dry-run"}, tt.args...)...)
			if r.code == exitUsage {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if tt.want == "" && strings.Contains(r.stderr, "warning") {
				t.Errorf("unexpected warning: %s", r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.want)
			}
		})
	}
}

// TestStatusShowsRetryingBatches: batches waiting in asynq's retry set (SuperOffice down,
// refused credentials) are named in status with their last error, not hidden in "pending".
func TestStatusShowsRetryingBatches(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	keys := writeKeys(t, "k.txt", "A1\nA2\nA3\n")
	serveHeld(t, db, keys, asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		return errors.New("AUTH FAILURE: SuperOffice refused our credentials")
	}), nil, func(int, error, *asynq.Task) time.Duration { return time.Hour })
	r := enqueue(t, "", "status", "held", "--json", "--redis-url", url, "--queue", "held")
	var st struct {
		Retrying int    `json:"retrying_batches"`
		Reason   string `json:"retry_reason"`
		Pending  int    `json:"pending_keys"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status: exit %d, %v: %s", r.code, err, r.stdout)
	}
	if st.Retrying != 2 || st.Pending != 3 || !strings.Contains(st.Reason, "refused our credentials") {
		t.Fatalf("status = %+v, want 2 batches waiting with the reason", st)
	}
	r = enqueue(t, "", "status", "held", "--redis-url", url, "--queue", "held")
	if !strings.Contains(r.stdout, "waiting to retry") || !strings.Contains(r.stdout, "2 batches") {
		t.Fatalf("plain status does not say batches are waiting:\n%s", r.stdout)
	}
}

// TestJSONErrors: with --json a failure is a JSON object on stdout as well, so that
// `enqueue status RUN --json | jq` sees it; the exit status stays non-zero.
func TestJSONErrors(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"status of an unknown run", []string{"status", "nope", "--json", "--redis-url", db.URL()}, `run "nope" not found (see ` + "`enqueue runs`)"},
		{"rejected of an unknown run", []string{"rejected", "nope", "--json", "--redis-url", db.URL()}, `run "nope" not found (see ` + "`enqueue runs`)"},
		{"unreachable Redis", []string{"status", "r", "--json", "--redis-url", deadURL}, "cannot reach Redis at redis://127.0.0.1:1/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := enqueue(t, "", tt.args...)
			var e struct {
				Error    string `json:"error"`
				ExitCode int    `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || r.code != exitUsage || e.ExitCode != exitUsage || !strings.HasPrefix(e.Error, tt.want) {
				t.Errorf("exit %d, %v, stdout %q; want exit 2 and an error starting %q", r.code, err, r.stdout, tt.want)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q: %s", tt.want, r.stderr)
			}
		})
	}
}

// TestNoKeysIsAnError: an empty input (a failed export piped in, an empty file) exits 1
// saying no keys were read, unless --allow-empty; either way the run is visible as empty.
func TestNoKeysIsAnError(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	base := []string{"--erp-connection", "3", "--actor-type", "Customer", "--redis-url", url, "--queue", "empty"}
	tests := []struct {
		name, stdin, file string
		extra             []string
		code              int
		want              string // on stderr
	}{
		{name: "empty stdin", code: exitBad, want: "enqueue: submit run e1: no keys were read: stdin is empty: nothing to resync; the run is recorded as empty (did the export fail? --allow-empty accepts an empty input)"},
		{name: "blank file", file: "\n \n", code: exitBad, want: "holds no key (only blank lines or a CSV header)"},
		{name: "only invalid", file: "a\x00\n", code: exitBad, want: "holds 1 records, 1 invalid, no valid key"},
		{name: "dry run", extra: []string{"--dry-run"}, code: exitBad, want: "no keys were read: stdin is empty: nothing to resync (did"},
		{name: "allowed", extra: []string{"--allow-empty"}, code: exitOK},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run := fmt.Sprintf("e%d", i+1)
			args := append(append([]string{"--run", run}, base...), tt.extra...)
			if tt.file != "" {
				args = append(args, "--file", writeKeys(t, "k.txt", tt.file))
			} else {
				args = append(args, "--file", "-")
			}
			r := enqueue(t, tt.stdin, args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", r.code, r.stderr, tt.code, tt.want)
			}
			if slices.Contains(tt.extra, "--dry-run") {
				return
			}
			r = enqueue(t, "", "status", run, "--json", "--redis-url", url)
			var st map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != exitOK || st["state"] != "empty" || st["total_keys"] != 0.0 {
				t.Errorf("status: exit %d, %v, %v", r.code, err, st)
			}
			r = enqueue(t, "", "status", run, "--redis-url", url)
			if out := squeeze(r.stdout); !strings.Contains(out, "\nstate empty\n") || !strings.Contains(out, "\nkeys 0: the run received no keys") {
				t.Errorf("status text:\n%s", r.stdout)
			}
		})
	}
}

// TestRejectedKeys: keys skipped as invalid stay in the run: counted by status, listed with
// line and reason by `enqueue rejected`.
func TestRejectedKeys(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	url := db.URL()
	keys := writeKeys(t, "k.txt", "A1\nb\x01d\nA2\n"+strings.Repeat("L", 255)+"\n")
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", "rej", "--redis-url", url, "--queue", "rej")
	if r.code != exitBad {
		t.Fatalf("submit: exit %d, want 1\n%s", r.code, r.stderr)
	}
	r = enqueue(t, "", "status", "rej", "--json", "--redis-url", url)
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st["rejected_keys"] != 2.0 || st["total_keys"] != 2.0 {
		t.Errorf("status: %v %v", err, st)
	}
	r = enqueue(t, "", "status", "rej", "--redis-url", url)
	if !strings.Contains(squeeze(r.stdout), "\nrejected 2 keys skipped as invalid at intake (`enqueue rejected rej` lists them)\n") {
		t.Errorf("status text:\n%s", r.stdout)
	}
	r = enqueue(t, "", "rejected", "rej", "--json", "--redis-url", url)
	var rej struct {
		Run          string               `json:"run"`
		RejectedKeys int                  `json:"rejected_keys"`
		Omitted      int                  `json:"omitted"`
		Keys         []ledger.RejectedKey `json:"keys"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rej); err != nil || r.code != 0 || rej.RejectedKeys != 2 || rej.Omitted != 0 || len(rej.Keys) != 2 {
		t.Fatalf("rejected --json: exit %d, %v, %+v", r.code, err, rej)
	}
	if k := rej.Keys[0]; k.Source != keys || k.Line != 2 || k.Key != "b\x01d" || !strings.Contains(k.Reason, "control character U+0001") {
		t.Errorf("first rejected key = %+v", k)
	}
	if k := rej.Keys[1]; k.Line != 4 || k.Reason != "longer than 254 characters (255)" {
		t.Errorf("second rejected key = %+v", k)
	}
	r = enqueue(t, "", "rejected", "rej", "--redis-url", url)
	if r.code != 0 || !strings.Contains(squeeze(r.stdout), keys+` 2 "b\x01d" contains control character`) {
		t.Errorf("rejected text: exit %d\n%s", r.code, r.stdout)
	}
	// The run keeps the first ledger.MaxRejected and counts the rest.
	many := writeKeys(t, "many.txt", "M1\n"+strings.Repeat("x\x00\n", ledger.MaxRejected+3))
	enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", many, "--run", "many", "--redis-url", url, "--queue", "rej")
	r = enqueue(t, "", "rejected", "many", "--redis-url", url)
	if lines := strings.Count(r.stdout, "\n"); r.code != 0 || lines != ledger.MaxRejected+1 ||
		!strings.Contains(r.stderr, "… and 3 more rejected keys, not listed: the run keeps the first 1000") {
		t.Errorf("rejected of many: exit %d, %d lines\n%s", r.code, lines, r.stderr)
	}
	r = enqueue(t, "", "rejected", "many", "--json", "--redis-url", url)
	if err := json.Unmarshal([]byte(r.stdout), &rej); err != nil || rej.RejectedKeys != ledger.MaxRejected+3 || rej.Omitted != 3 || len(rej.Keys) != ledger.MaxRejected {
		t.Errorf("rejected --json of many: %v, %d/%d/%d", err, rej.RejectedKeys, rej.Omitted, len(rej.Keys))
	}

	// A clean run has none.
	clean := writeKeys(t, "c.txt", "C1\n")
	enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", clean, "--run", "clean", "--redis-url", url, "--queue", "rej")
	r = enqueue(t, "", "rejected", "clean", "--redis-url", url)
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "run clean has no rejected keys") {
		t.Errorf("rejected of a clean run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestStatusRepair: a batch whose task Redis lost is listed by status --repair (exit 1),
// and submitting the same source again restores exactly that batch.
func TestStatusRepair(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var in strings.Builder
	for i := range 250 {
		fmt.Fprintf(&in, "P%03d\n", i)
	}
	submit := []string{"--erp-connection", "3", "--actor-type", "Customer", "--file", "-", "--run", "lost",
		"--redis-url", db.URL(), "--queue", "rep"}
	if r := enqueue(t, in.String(), submit...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := enqueue(t, "", "status", "lost", "--repair", "--redis-url", db.URL())
	if r.code != 0 || !strings.Contains(r.stdout, "repair: 3 unfinished batches, 3 in the queue, 0 halves enqueued again, 0 lost") {
		t.Fatalf("repair of an intact run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	insp := asynq.NewInspector(db.Opt())
	defer insp.Close()
	if err := insp.DeleteTask("rep", "lost:b000001"); err != nil { // what a failover can do
		t.Fatal(err)
	}
	r = enqueue(t, "", "status", "lost", "--repair", "--json", "--redis-url", db.URL())
	var j struct {
		Repair ledger.RepairResult `json:"repair"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatal(err)
	}
	if r.code != exitBad || len(j.Repair.Lost) != 1 || j.Repair.Lost[0] != "lost:b000001" || j.Repair.Queued != 2 {
		t.Fatalf("repair: exit %d, %+v\n%s", r.code, j.Repair, r.stderr)
	}
	if r := enqueue(t, in.String(), append(submit, "--json")...); r.code != 0 || !strings.Contains(r.stdout, `"batches_enqueued": 1`) {
		t.Fatalf("resubmit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := enqueue(t, "", "status", "lost", "--repair", "--redis-url", db.URL()); r.code != 0 || !strings.Contains(r.stdout, "0 lost") {
		t.Errorf("after the resubmission: exit %d\n%s", r.code, r.stdout)
	}
}

// TestStatusRepairTenantLane: a tenant's batches wait in its lane until a worker's
// dispatcher hands them to asynq; status --tenant --repair counts them as queued, not lost.
func TestStatusRepairTenantLane(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var in strings.Builder
	for i := range 250 {
		fmt.Fprintf(&in, "P%03d\n", i)
	}
	if r := enqueue(t, in.String(), "--tenant", "acme", "--erp-connection", "3", "--actor-type", "Customer", "--file", "-",
		"--run", "waiting", "--redis-url", db.URL()); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := enqueue(t, "", "status", "waiting", "--tenant", "acme", "--repair", "--redis-url", db.URL())
	if r.code != 0 || !strings.Contains(r.stdout, "repair: 3 unfinished batches, 3 in the queue, 0 halves enqueued again, 0 lost") {
		t.Fatalf("repair of a run waiting in its tenant's lane: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestStatusIncompleteExitsOne: a run whose submission was cut off (its intake opened, never
// sealed) is not done: status says so and exits 1, also with --wait, which does not wait for
// ever on it.
func TestStatusIncompleteExitsOne(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.TestClient(t)
	meta := ledger.RunMeta{Run: "cut", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Source: "http"}
	// Opened by a producer long gone: its lease has lapsed.
	gone := ledger.NewLedger(rdb).WithClock(func() time.Time { return time.Now().Add(-2 * ledger.IntakeLease) })
	if err := gone.OpenIntake(context.Background(), meta); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status", "cut"}, {"status", "cut", "--wait", "--interval", "20ms"}} {
		r := enqueue(t, "", append(args, "--redis-url", db.URL())...)
		if out := squeeze(r.stdout); r.code != exitBad || !strings.Contains(out, "\nstate incomplete\n") || !strings.Contains(out, "--run cut") {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestStatusWaitsWhileReceiving: a run whose producer is still submitting (its intake open
// and renewed) is not finished even with nothing pending: status --wait waits on, saying so,
// until the submission is sealed.
func TestStatusWaitsWhileReceiving(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client()
	defer rdb.Close()
	ctx := context.Background()
	l := ledger.NewLedger(rdb)
	meta := ledger.RunMeta{Run: "slow", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Source: "cli"}
	if err := l.OpenIntake(ctx, meta); err != nil {
		t.Fatal(err)
	}
	id := tasks.BatchID("slow", 0)
	if _, err := l.RegisterBatch(ctx, meta, id, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordSuccess(ctx, "slow", id, 1, 1, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Nothing is pending; the first two progress lines come while the intake is open, then the
	// producer seals it and the wait ends.
	errw := &afterLines{lines: 2, then: func() {
		if err := l.RecordIntake(ctx, meta, 0, nil); err != nil {
			t.Error(err)
		}
	}}
	var out strings.Builder
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: errw, getenv: func(string) string { return "" }, now: time.Now}
	code := c.run(ctx, []string{"status", "slow", "--wait", "--interval", "20ms", "--redis-url", db.URL()})
	if code != exitOK || strings.Count(errw.String(), "its producer is still submitting keys") < 2 || !strings.Contains(out.String(), "done") {
		t.Errorf("status --wait: exit %d\n%s%s", code, out.String(), errw.String())
	}
}

// TestRunNameTrickleReserved: --run may not name a trickle run.
func TestRunNameTrickleReserved(t *testing.T) {
	t.Parallel()
	keys := writeKeys(t, "k.txt", "A\n")
	run := tasks.TrickleRun(time.Now(), 4, erpsync.ActorSupplier)
	r := enqueue(t, "", "--erp-connection", "3", "--actor-type", "Customer", "--file", keys, "--run", run, "--dry-run")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--run: ") || !strings.Contains(r.stderr, "reserved for trickle intake") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

// wantContains reports each of wants that got lacks; what names got in the message.
func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, got)
		}
	}
}
