package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/tasks"
)

// key hands single keys over for trickle intake.
func (c *cli) key(ctx context.Context, args []string) int {
	fs := c.newFlagSet("key", "enqueue key --erp-connection N --actor-type TYPE [--json] KEY...")
	var t target
	t.flags(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	cf := c.connFlags(fs)
	keys, code, done := c.parse(fs, args)
	if done {
		return code
	}
	conn, actor, err := t.parse()
	if err != nil {
		return c.usageError(err)
	}
	if len(keys) == 0 {
		return c.usageError(errors.New("no keys: give at least one KEY after the flags"))
	}
	for i, k := range keys {
		if err := erpsync.ValidateKey(k); err != nil {
			var ke *erpsync.KeyError
			if errors.As(err, &ke) {
				err = errors.New(ke.Reason)
			}
			return c.fail(exitUsage, "key %d %q: %v; nothing was enqueued", i+1, erpsync.Truncate(k, 40), err)
		}
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	p, err := intake.NewProducer(intake.ProducerConfig{Redis: rc.rdb, Queue: cf.queue})
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	for i, k := range keys {
		if err := p.AddKey(ctx, conn, actor, k); err != nil {
			return c.fail(exitUsage, "key %d %q: %v (%d of %d enqueued)", i+1, erpsync.Truncate(k, 40), err, i, len(keys))
		}
	}
	group := tasks.GroupName(conn, actor)
	if *asJSON {
		writeJSON(c.stdout, map[string]any{"keys": len(keys), "group": group, "queue": cf.queue})
	} else {
		fmt.Fprintf(c.stdout, "enqueued %s for trickle resync (queue %s, group %s)\n", plural(int64(len(keys)), "key"), cf.queue, group)
	}
	return exitOK
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// statusJSON is the JSON of `status`: the ledger's RunStatus with derived numbers.
type statusJSON struct {
	Run             string                      `json:"run"`
	State           string                      `json:"state"`
	ErpConnectionID int                         `json:"erp_connection"`
	ActorType       string                      `json:"actor_type"`
	Source          string                      `json:"source,omitempty"`
	TotalKeys       int64                       `json:"total_keys"`
	ResyncedKeys    int64                       `json:"resynced_keys"`
	DeadKeys        int64                       `json:"dead_keys"`
	PendingKeys     int64                       `json:"pending_keys"`
	Percent         float64                     `json:"percent"`
	Batches         int64                       `json:"batches"`
	Calls           int64                       `json:"calls"`
	KeysPerSecond   float64                     `json:"keys_per_second"`
	ETASeconds      *float64                    `json:"eta_seconds"`
	Records         map[string]map[string]int64 `json:"records"`
	StartedAt       *time.Time                  `json:"started_at"`
	LastActivity    *time.Time                  `json:"last_activity"`
	FinishedAt      *time.Time                  `json:"finished_at"`
	// RetryingBatches counts the run's batches waiting in asynq's retry set (SuperOffice
	// down, throttling, refused credentials, a systemic failure); RetryReason is the most
	// recent one's last error. Their keys are among PendingKeys.
	RetryingBatches int    `json:"retrying_batches"`
	RetryReason     string `json:"retry_reason,omitempty"`
}

// maxRetryScan bounds how many retry-set tasks status reads to find a run's held batches.
const maxRetryScan = 10000

// retrying counts the run's batches in the queue's retry set and returns the newest one's
// last error, reading at most maxRetryScan tasks.
func retrying(rdb redis.UniversalClient, queue, run string) (int, string, error) {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	n, reason := 0, ""
	var newest time.Time
	const page = 500
	for p := 1; (p-1)*page < maxRetryScan; p++ {
		list, err := insp.ListRetryTasks(queue, asynq.Page(p), asynq.PageSize(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return 0, "", nil
		}
		if err != nil {
			return 0, "", err
		}
		for _, ti := range list {
			b, err := tasks.ParseBatch(ti.Payload)
			if err != nil || b.Run != run {
				continue
			}
			n++
			if ti.LastFailedAt.After(newest) {
				newest, reason = ti.LastFailedAt, ti.LastErr
			}
		}
		if len(list) < page {
			break
		}
	}
	return n, reason, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (c *cli) toJSON(st tasks.RunStatus) statusJSON {
	j := statusJSON{Run: st.Run, State: st.State, ErpConnectionID: st.ErpConnectionID, ActorType: st.ActorType.String(),
		Source: st.Source, TotalKeys: st.TotalKeys, ResyncedKeys: st.ResyncedKeys, DeadKeys: st.DeadKeys,
		PendingKeys: st.PendingKeys, Batches: st.Batches, Calls: st.Calls, Records: map[string]map[string]int64{},
		StartedAt: timePtr(st.StartedAt), LastActivity: timePtr(st.LastActivity), FinishedAt: timePtr(st.FinishedAt)}
	for _, k := range []string{tasks.KindAdded, tasks.KindUpdated, tasks.KindDeleted} {
		j.Records[k] = map[string]int64{}
		maps.Copy(j.Records[k], st.Records[k])
	}
	if st.TotalKeys > 0 {
		j.Percent = float64(st.ResyncedKeys+st.DeadKeys) * 100 / float64(st.TotalKeys)
	}
	end := c.now()
	if !st.FinishedAt.IsZero() {
		end = st.FinishedAt
	}
	if d := end.Sub(st.StartedAt).Seconds(); d > 0 && !st.StartedAt.IsZero() {
		j.KeysPerSecond = float64(st.ResyncedKeys+st.DeadKeys) / d
	}
	if st.PendingKeys == 0 {
		zero := 0.0
		j.ETASeconds = &zero
	} else if j.KeysPerSecond > 0 {
		eta := float64(st.PendingKeys) / j.KeysPerSecond
		j.ETASeconds = &eta
	}
	return j
}

func (c *cli) printStatus(j statusJSON) {
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "run\t%s\n", j.Run)
	fmt.Fprintf(w, "state\t%s\n", j.State)
	fmt.Fprintf(w, "target\tERP connection %d, %s (from %s)\n", j.ErpConnectionID, j.ActorType, orDash(j.Source))
	fmt.Fprintf(w, "keys\t%d total: %d resynced, %d dead, %d pending (%.1f%% done)\n", j.TotalKeys, j.ResyncedKeys, j.DeadKeys, j.PendingKeys, j.Percent)
	eta := "-"
	if j.ETASeconds != nil {
		eta = (time.Duration(*j.ETASeconds) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(w, "rate\t%.1f keys/s, ETA %s\n", j.KeysPerSecond, eta)
	for _, kind := range []string{tasks.KindAdded, tasks.KindUpdated, tasks.KindDeleted} {
		fmt.Fprintf(w, "records %s\t%s\n", kind, tableCounts(j.Records[kind]))
	}
	fmt.Fprintf(w, "batches\t%d (%d calls)\n", j.Batches, j.Calls)
	if j.RetryingBatches > 0 {
		fmt.Fprintf(w, "waiting to retry\t%d batches; last error: %s\n", j.RetryingBatches, j.RetryReason)
	}
	fmt.Fprintf(w, "started\t%s\n", fmtTime(j.StartedAt))
	fmt.Fprintf(w, "finished\t%s\n", fmtTime(j.FinishedAt))
	w.Flush()
}

func tableCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", t, m[t]))
	}
	return strings.Join(parts, ", ")
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) status(ctx context.Context, args []string) int {
	fs := c.newFlagSet("status", "enqueue status RUN [--json] [--wait] [--interval 2s]")
	asJSON := fs.Bool("json", false, "print the status as JSON on stdout")
	wait := fs.Bool("wait", false, "poll until nothing is pending; exit 0 without dead letters, 1 with")
	interval := fs.Duration("interval", 2*time.Second, "time between polls with --wait")
	cf := c.connFlags(fs)
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return c.usageError(errors.New("status needs exactly one RUN (see `enqueue runs`)"))
	}
	if *interval <= 0 {
		return c.usageError(fmt.Errorf("--interval %s: want a positive duration", *interval))
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	l := tasks.NewLedger(rc.rdb)
	run := pos[0]
	var st tasks.RunStatus
	var lastLine time.Time
	for {
		st, err = l.Status(ctx, run)
		if errors.Is(err, tasks.ErrRunNotFound) {
			return c.fail(exitUsage, "run %q not found (see `enqueue runs`)", run)
		}
		if err != nil {
			return c.fail(exitUsage, "status of %s: %v", run, err)
		}
		if !*wait || st.PendingKeys == 0 {
			break
		}
		if now := c.now(); now.Sub(lastLine) >= c.progressEvery || c.terminal {
			lastLine = now
			j := c.toJSON(st)
			eta := "-"
			if j.ETASeconds != nil {
				eta = (time.Duration(*j.ETASeconds) * time.Second).Round(time.Second).String()
			}
			line := fmt.Sprintf("%s: %d/%d keys done (%.1f%%), %d dead, %.1f keys/s, ETA %s", run,
				st.ResyncedKeys+st.DeadKeys, st.TotalKeys, j.Percent, st.DeadKeys, j.KeysPerSecond, eta)
			if c.terminal {
				fmt.Fprintf(c.stderr, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(c.stderr, "enqueue: "+line)
			}
		}
		t := time.NewTimer(*interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return c.fail(exitUsage, "interrupted")
		case <-t.C:
		}
	}
	if *wait && c.terminal {
		fmt.Fprintln(c.stderr)
	}
	j := c.toJSON(st)
	if st.PendingKeys > 0 {
		if j.RetryingBatches, j.RetryReason, err = retrying(rc.rdb, cf.queue, run); err != nil {
			return c.fail(exitUsage, "status of %s: retry set: %v", run, err)
		}
	}
	if *asJSON {
		writeJSON(c.stdout, j)
	} else {
		c.printStatus(j)
	}
	if st.DeadKeys > 0 {
		return exitBad
	}
	return exitOK
}

func (c *cli) runs(ctx context.Context, args []string) int {
	fs := c.newFlagSet("runs", "enqueue runs [--limit 20] [--json]\n       enqueue runs --prune [--older-than 30d] [--dry-run] [--json]")
	limit := fs.Int("limit", 20, "how many runs, most recent first (0: all)")
	asJSON := fs.Bool("json", false, "print the runs (with --prune: what was removed) as JSON on stdout")
	prune := fs.Bool("prune", false, "remove the runs that finished longer ago than --older-than, with their change items and dead letters")
	olderThan := fs.String("older-than", c.env("LEDGER_RETENTION", fmt.Sprintf("%dd", tasks.DefaultLedgerRetention/(24*time.Hour))),
		"with --prune: the retention period, e.g. 30d or 72h (env LEDGER_RETENTION)")
	dryRun := fs.Bool("dry-run", false, "with --prune: list what would be removed, remove nothing")
	cf := c.connFlags(fs)
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageError(fmt.Errorf("unexpected argument %q", pos[0]))
	}
	var retention time.Duration
	if *prune {
		var err error
		if retention, err = tasks.ParseRetention(*olderThan); err != nil {
			return c.usageError(fmt.Errorf("--older-than: %w", err))
		}
		if retention == 0 {
			return c.usageError(errors.New("--older-than 0 keeps runs for ever, so there is nothing to prune; give a period such as 30d"))
		}
	} else {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for _, f := range []string{"older-than", "dry-run"} {
			if given[f] {
				return c.usageError(fmt.Errorf("--%s goes with --prune", f))
			}
		}
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	if *prune {
		return c.prune(ctx, rc, retention, *dryRun, *asJSON)
	}
	list, err := tasks.NewLedger(rc.rdb).Runs(ctx, *limit)
	if err != nil {
		return c.fail(exitUsage, "runs: %v", err)
	}
	if *asJSON {
		out := make([]statusJSON, 0, len(list))
		for _, st := range list {
			out = append(out, c.toJSON(st))
		}
		writeJSON(c.stdout, out)
		return exitOK
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "RUN\tSTATE\tTOTAL\tRESYNCED\tDEAD\tPENDING\tSTARTED\tSOURCE")
	for _, st := range list {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", st.Run, st.State, st.TotalKeys, st.ResyncedKeys,
			st.DeadKeys, st.PendingKeys, fmtTime(timePtr(st.StartedAt)), orDash(st.Source))
	}
	w.Flush()
	return exitOK
}

// prune removes (or, dry, lists) the runs that finished longer than retention ago.
func (c *cli) prune(ctx context.Context, rc *redisConn, retention time.Duration, dry, asJSON bool) int {
	insp := asynq.NewInspectorFromRedisClient(rc.rdb)
	res, err := tasks.NewLedger(rc.rdb).WithClock(c.now).Prune(ctx, tasks.PruneOptions{OlderThan: retention, DryRun: dry, Inspector: insp})
	if err != nil {
		// What was removed before the error is reported too.
		fmt.Fprintf(c.stderr, "enqueue: prune stopped after %s: %v\n", plural(int64(len(res.Runs)), "run"), err)
	}
	if asJSON {
		if res.Runs == nil {
			res.Runs = []tasks.PrunedRun{}
		}
		writeJSON(c.stdout, res)
	} else {
		verb := "removed"
		if dry {
			verb = "would remove"
		}
		var keys, dead int64
		for _, r := range res.Runs {
			keys += r.TotalKeys
			dead += r.DeadLetters
			fmt.Fprintf(c.stdout, "%s %s: %s, %s, %s, %s, finished %s\n", verb, r.Run, r.State, plural(r.TotalKeys, "key"),
				plural(r.DeadLetters, "dead letter"), plural(r.ChangeItems, "change item"), fmtTime(timePtr(r.FinishedAt)))
		}
		cutoff := res.Cutoff.Format(time.RFC3339)
		switch {
		case len(res.Runs) == 0:
			fmt.Fprintf(c.stdout, "no run finished before %s (retention %s); nothing to remove\n", cutoff, retention)
		case dry:
			fmt.Fprintf(c.stdout, "dry run: would remove %s (%s, %s) finished before %s; nothing was removed\n",
				plural(int64(len(res.Runs)), "run"), plural(keys, "key"), plural(dead, "dead letter"), cutoff)
		default:
			fmt.Fprintf(c.stdout, "removed %s (%s, %s, %s) finished before %s\n", plural(int64(len(res.Runs)), "run"),
				plural(keys, "key"), plural(dead, "dead letter"), plural(int64(res.Archived), "archived task"), cutoff)
		}
		if res.Stale > 0 {
			fmt.Fprintf(c.stdout, "%s %d run index entries whose run was gone already\n", verb, res.Stale)
		}
	}
	if err != nil {
		return exitUsage
	}
	return exitOK
}

const deadSynopsis = `enqueue dead list [--run RUN] [--json]
       enqueue dead export --format csv|jsonl [--run RUN]
       enqueue dead requeue (--run RUN | --all) [--error-code C] [--class C]
       enqueue dead purge (--run RUN | --all) [--error-code C] [--class C] --yes`

func (c *cli) dead(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return c.usageError(errors.New("dead needs a subcommand: list, export, requeue or purge"))
	}
	sub := args[0]
	fs := c.newFlagSet("dead "+sub, deadSynopsis)
	run := fs.String("run", "", "only this run")
	cf := c.connFlags(fs)
	var asJSON *bool
	var format, code, class *string
	var all, yes *bool
	switch sub {
	case "list":
		asJSON = fs.Bool("json", false, "print the dead letters as a JSON array on stdout")
	case "export":
		format = fs.String("format", "csv", "csv or jsonl")
	case "requeue", "purge":
		code = fs.String("error-code", "", "only dead letters with this ErpSync ErrorCode")
		class = fs.String("class", "", "only dead letters of this class (business, permanent, transient, throttled, auth)")
		all = fs.Bool("all", false, "act on every run (required without --run)")
		if sub == "purge" {
			yes = fs.Bool("yes", false, "confirm: purging deletes the dead letters for good")
		}
	case "-h", "-help", "--help", "help":
		fs.Usage()
		return exitOK
	default:
		return c.usageError(fmt.Errorf("unknown dead subcommand %q: want list, export, requeue or purge", sub))
	}
	pos, ec, done := c.parse(fs, args[1:])
	if done {
		return ec
	}
	if len(pos) > 0 {
		return c.usageError(fmt.Errorf("unexpected argument %q (give the run with --run)", pos[0]))
	}
	if format != nil && *format != "csv" && *format != "jsonl" {
		return c.usageError(fmt.Errorf("--format %q: want csv or jsonl", *format))
	}
	var filter tasks.DeadFilter
	if all != nil {
		if *run == "" && !*all {
			return c.usageError(fmt.Errorf("dead %s needs --run RUN, or --all for every run", sub))
		}
		if *run != "" && *all {
			return c.usageError(errors.New("give --run or --all, not both"))
		}
		if *class != "" {
			if _, err := tasks.ParseClass(*class); err != nil {
				return c.usageError(fmt.Errorf("--class: %v", err))
			}
		}
		filter = tasks.DeadFilter{Run: *run, ErrorCode: *code, Class: *class, All: *all}
	}
	if yes != nil && !*yes {
		return c.usageError(errors.New("dead purge deletes dead letters for good; add --yes to confirm (`enqueue dead export` keeps a copy)"))
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	l := tasks.NewLedger(rc.rdb)
	if *run != "" {
		if _, err := l.Status(ctx, *run); errors.Is(err, tasks.ErrRunNotFound) {
			return c.fail(exitUsage, "run %q not found (see `enqueue runs`)", *run)
		}
	}

	switch sub {
	case "list", "export":
		dls, err := l.DeadLetters(ctx, *run)
		if err != nil {
			return c.fail(exitUsage, "dead letters: %v", err)
		}
		if sub == "export" {
			if err := writeDead(c.stdout, *format, dls); err != nil {
				return c.fail(exitUsage, "export: %v", err)
			}
			return exitOK
		}
		if *asJSON {
			if dls == nil {
				dls = []tasks.DeadLetter{}
			}
			writeJSON(c.stdout, dls)
			return exitOK
		}
		if len(dls) == 0 {
			fmt.Fprintln(c.stderr, "enqueue: no dead letters")
			return exitOK
		}
		w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "RUN\tKEY\tBATCH\tCLASS\tERROR CODE\tATTEMPTS\tAT\tREASON")
		for _, d := range dls {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Run, strconv.Quote(d.Key), d.BatchID, d.Class,
				orDash(d.ErrorCode), d.Attempts, d.At.UTC().Format(time.RFC3339), oneLine(d.Reason))
		}
		w.Flush()
		return exitOK
	case "requeue":
		client := asynq.NewClientFromRedisClient(rc.rdb)
		insp := asynq.NewInspectorFromRedisClient(rc.rdb)
		res, err := l.Requeue(ctx, client, insp, filter, asynq.Queue(cf.queue))
		if err != nil {
			return c.fail(exitUsage, "requeue: %v", err)
		}
		fmt.Fprintf(c.stdout, "requeued %s in %s (removed %s)\n", plural(int64(res.Keys), "key"),
			plural(int64(len(res.Batches)), "batch"), plural(int64(res.Archived), "archived task"))
		return exitOK
	default: // purge
		insp := asynq.NewInspectorFromRedisClient(rc.rdb)
		res, err := l.PurgeDead(ctx, insp, filter)
		if err != nil {
			return c.fail(exitUsage, "purge: %v", err)
		}
		fmt.Fprintf(c.stdout, "purged %s (removed %s)\n", plural(int64(res.Keys), "dead letter"), plural(int64(res.Archived), "archived task"))
		return exitOK
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var deadHeader = []string{"run", "key", "batch_id", "erp_connection", "actor_type", "class", "error_code",
	"tech_explanation", "user_explanation", "reason", "attempts", "at"}

func writeDead(w io.Writer, format string, dls []tasks.DeadLetter) error {
	if format == "jsonl" {
		enc := json.NewEncoder(w)
		for _, d := range dls {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	cw := csv.NewWriter(w)
	cw.Write(deadHeader)
	for _, d := range dls {
		cw.Write([]string{d.Run, d.Key, d.BatchID, strconv.Itoa(d.ErpConnectionID), d.ActorType.String(), d.Class,
			d.ErrorCode, d.TechExplanation, d.UserExplanation, d.Reason, strconv.Itoa(d.Attempts), d.At.UTC().Format(time.RFC3339Nano)})
	}
	cw.Flush()
	return cw.Error()
}

func (c *cli) changes(ctx context.Context, args []string) int {
	fs := c.newFlagSet("changes", "enqueue changes RUN --format jsonl|csv")
	format := fs.String("format", "jsonl", "jsonl or csv")
	cf := c.connFlags(fs)
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return c.usageError(errors.New("changes needs exactly one RUN"))
	}
	if *format != "csv" && *format != "jsonl" {
		return c.usageError(fmt.Errorf("--format %q: want jsonl or csv", *format))
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	l := tasks.NewLedger(rc.rdb)
	if _, err := l.Status(ctx, pos[0]); errors.Is(err, tasks.ErrRunNotFound) {
		return c.fail(exitUsage, "run %q not found (see `enqueue runs`)", pos[0])
	}
	var fn func(tasks.ChangeItem) error
	var flush func() error
	if *format == "csv" {
		cw := csv.NewWriter(c.stdout)
		cw.Write([]string{"run", "table", "record_id", "kind", "task_id", "at"})
		fn = func(it tasks.ChangeItem) error {
			return cw.Write([]string{it.Run, it.Table, strconv.Itoa(int(it.RecordID)), it.Kind, it.TaskID, it.At.UTC().Format(time.RFC3339Nano)})
		}
		flush = func() error { cw.Flush(); return cw.Error() }
	} else {
		enc := json.NewEncoder(c.stdout)
		fn = func(it tasks.ChangeItem) error { return enc.Encode(it) }
		flush = func() error { return nil }
	}
	if err := l.Changes(ctx, pos[0], fn); err != nil {
		flush()
		return c.fail(exitUsage, "changes: %v", err)
	}
	if err := flush(); err != nil {
		return c.fail(exitUsage, "changes: %v", err)
	}
	return exitOK
}
