package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

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
		writeJSON(c.stdout, intake.Trickled{Keys: len(keys), Group: group, Queue: cf.queue})
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

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (c *cli) toJSON(st tasks.RunStatus) tasks.RunReport { return tasks.NewRunReport(st, c.now()) }

func (c *cli) printStatus(j tasks.RunReport) {
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
		if j.RetryingBatches, j.RetryReason, err = tasks.RetryingBatches(asynq.NewInspectorFromRedisClient(rc.rdb), cf.queue, run); err != nil {
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
	fs := c.newFlagSet("runs", "enqueue runs [--limit 20] [--json]")
	limit := fs.Int("limit", 20, "how many runs, most recent first (0: all)")
	asJSON := fs.Bool("json", false, "print the runs as a JSON array on stdout")
	cf := c.connFlags(fs)
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageError(fmt.Errorf("unexpected argument %q", pos[0]))
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	list, err := tasks.NewLedger(rc.rdb).Runs(ctx, *limit)
	if err != nil {
		return c.fail(exitUsage, "runs: %v", err)
	}
	if *asJSON {
		out := make([]tasks.RunReport, 0, len(list))
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
