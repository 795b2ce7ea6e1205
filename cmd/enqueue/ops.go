package main

import (
	"context"
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

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/export"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/lanes"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/tasks"
)

// key hands single keys over for trickle intake.
func (c *cli) key(ctx context.Context, args []string) int {
	fs := c.newFlagSet("key", "enqueue key --erp-connection N --actor-type TYPE [--json] KEY...")
	var t target
	t.flags(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	cf := c.connFlags(fs)
	// Trickle keys have a queue of their own, which the worker serves before bulk runs.
	cf.queue = c.env("ENQUEUE_TRICKLE_QUEUE", tasks.TrickleQueue)
	qf := fs.Lookup("queue")
	qf.DefValue, qf.Usage = cf.queue, "asynq queue of trickle keys, served before bulk runs (env ENQUEUE_TRICKLE_QUEUE)"
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
	p, err := intake.NewProducer(intake.ProducerConfig{Tenant: rc.tenant, Redis: rc.rdb, TrickleQueue: cf.queue, Now: c.now})
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	for i, k := range keys {
		if err := p.AddKey(ctx, conn, actor, k); err != nil {
			return c.fail(exitUsage, "key %d %q: %v (%d of %d enqueued)", i+1, erpsync.Truncate(k, 40), err, i, len(keys))
		}
	}
	// The run of the day the keys are handed over, which the worker's aggregator names too.
	tr := p.Trickled(len(keys), conn, actor)
	if *asJSON {
		writeJSON(c.stdout, tr)
	} else {
		fmt.Fprintf(c.stdout, "enqueued %s for trickle resync in run %s (queue %s, group %s)\n", plural(int64(len(keys)), "key"), tr.Run, tr.Queue, tr.Group)
	}
	return exitOK
}

// runNotFound is the message of a run the ledger does not know: with --tenant, the run
// of that tenant only, which is worth saying to one who forgot the flag.
func runNotFound(run, tenant string) string {
	if tenant == "" {
		return fmt.Sprintf("run %q not found (see `enqueue runs`)", run)
	}
	return fmt.Sprintf("run %q of tenant %s not found (see `enqueue runs --tenant %s`)", run, tenant, tenant)
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

func (c *cli) toJSON(st ledger.RunStatus) runreport.RunReport {
	return runreport.NewRunReport(st, c.now())
}

func (c *cli) printStatus(j runreport.RunReport) {
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "run\t%s\n", j.Run)
	fmt.Fprintf(w, "state\t%s\n", j.State)
	fmt.Fprintf(w, "target\tERP connection %d, %s (from %s)\n", j.ErpConnectionID, j.ActorType, orDash(j.Source))
	if j.State == ledger.RunEmpty {
		fmt.Fprintf(w, "keys\t0: the run received no keys (its input was empty or held only invalid keys)\n")
	} else {
		if j.State == ledger.RunIncomplete {
			fmt.Fprintf(w, "intake\tnot complete: the submission of this run was cut off; submit the same input again with --run %s\n", j.Run)
		}
		fmt.Fprintf(w, "keys\t%d total: %d resynced, %d dead, %d pending (%.1f%% done)\n", j.TotalKeys, j.ResyncedKeys, j.DeadKeys, j.PendingKeys, j.Percent)
	}
	if j.RejectedKeys > 0 {
		fmt.Fprintf(w, "rejected\t%s skipped as invalid at intake (`enqueue rejected %s` lists them)\n", plural(j.RejectedKeys, "key"), j.Run)
	} else {
		fmt.Fprintf(w, "rejected\t0 keys skipped as invalid at intake\n")
	}
	fmt.Fprintf(w, "rate\t%.1f keys/s, ETA %s\n", j.KeysPerSecond, j.ETA())
	for _, kind := range []string{tasks.KindAdded, tasks.KindUpdated, tasks.KindDeleted} {
		fmt.Fprintf(w, "records %s\t%s\n", kind, tableCounts(j.Records[kind]))
	}
	fmt.Fprintf(w, "batches\t%d (%d calls)\n", j.Batches, j.Calls)
	if j.RetryingBatches > 0 {
		fmt.Fprintf(w, "waiting to retry\t%d batches (%s), next due %s; last error: %s\n", j.RetryingBatches, plural(j.RetryingKeys, "key"),
			fmtTime(j.NextRetryAt), j.RetryReason)
	}
	if j.Waiting != "" {
		fmt.Fprintf(w, "waiting\tevery pending key waits on a retry: %s\n", j.Waiting)
	}
	for _, p := range j.Held() {
		fmt.Fprintf(w, "held\t%s\n", p)
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
	fs := c.newFlagSet("status", "enqueue status RUN [--json] [--wait] [--interval 2s] [--held-timeout 15m] [--repair]")
	asJSON := fs.Bool("json", false, "print the status as JSON on stdout")
	wait := fs.Bool("wait", false, "poll until nothing is pending; exit 0 without dead letters, 1 with, or when the run's intake is incomplete")
	interval := fs.Duration("interval", 2*time.Second, "time between polls with --wait")
	heldTimeout := fs.Duration("held-timeout", DefaultHeldTimeout, "with --wait: exit 3 once every pending key has been held for an auth failure (refused credentials, HTTP 401/403/421: only fixing the worker's SuperOffice settings ends it) and no key has finished for this long; 0 waits for ever")
	repair := fs.Bool("repair", false, "look for unfinished batches that asynq no longer holds (lost in a Redis failover): enqueue lost halves again, list lost batches (exit 1) to restore by submitting the run's source again")
	cf := c.connFlags(fs)
	run, code, done := c.parseRun(fs, args, " (see `enqueue runs`)")
	if done {
		return code
	}
	if *interval <= 0 {
		return c.usageError(fmt.Errorf("--interval %s: want a positive duration", *interval))
	}
	if *heldTimeout < 0 {
		return c.usageError(fmt.Errorf("--held-timeout %s: want 0 (wait for ever) or a positive duration", *heldTimeout))
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "%v", err)
	}
	defer rc.Close()
	l := rc.ledger()
	st, j, gaveUp, err := c.pollStatus(ctx, rc, l, run, statusWait{*wait, *interval, *heldTimeout})
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "%v", err)
	}
	var rep *ledger.RepairResult
	if *repair {
		if rep, err = repairRun(ctx, rc, l, run); err != nil {
			return c.failJSON(*asJSON, exitUsage, "%v", err)
		}
		j.Repair = rep
	}
	if *asJSON {
		writeJSON(c.stdout, j)
	} else {
		c.printStatus(j)
		if rep != nil {
			c.printRepair(*rep)
		}
	}
	if gaveUp {
		fmt.Fprintf(c.stderr, "enqueue: gave up waiting for %s: every pending key is held for an auth failure and no key has finished for %s; "+
			"fix the worker's SuperOffice login settings (its log names them; the batches are retried every few minutes), then wait again\n", run, *heldTimeout)
		return exitHeld
	}
	if st.DeadKeys > 0 || st.State == ledger.RunIncomplete || (rep != nil && len(rep.Lost) > 0) {
		return exitBad
	}
	return exitOK
}

// statusWait is how `status` polls: once, or (wait) every interval until nothing is
// pending, giving up after heldTimeout on a hold only an operator can end (0: never).
type statusWait struct {
	wait                  bool
	interval, heldTimeout time.Duration
}

// pollStatus reads run's status and report, polling as w says and showing the progress on
// stderr; gaveUp reports that it stopped on a hold only an operator can end. An error's
// text is what the command prints.
func (c *cli) pollStatus(ctx context.Context, rc *redisConn, l *ledger.Ledger, run string, w statusWait) (st ledger.RunStatus, j runreport.RunReport, gaveUp bool, err error) {
	insp := asynq.NewInspectorFromRedisClient(rc.rdb)
	var lastLine, movedAt time.Time
	lastDone, lastHeld := int64(-1), ""
	for {
		st, err = l.Status(ctx, run)
		if errors.Is(err, ledger.ErrRunNotFound) {
			return st, j, false, errors.New(runNotFound(run, rc.tenant))
		}
		if err != nil {
			return st, j, false, fmt.Errorf("status of %s: %v", run, err)
		}
		if j, err = c.report(ctx, rc, insp, st); err != nil {
			return st, j, false, fmt.Errorf("status of %s: %v", run, err)
		}
		if !w.wait || (st.PendingKeys == 0 && !st.Receiving) {
			break
		}
		now := c.now()
		if d := st.ResyncedKeys + st.DeadKeys; d != lastDone {
			lastDone, movedAt = d, now
		}
		// A hold only an operator can end: waiting longer changes nothing until they do.
		if w.heldTimeout > 0 && j.NeedsOperator() && now.Sub(movedAt) >= w.heldTimeout {
			gaveUp = true
			break
		}
		held := strings.Join(j.Held(), "\n")
		if now.Sub(lastLine) >= c.progressEvery || c.terminal || held != lastHeld {
			lastLine, lastHeld = now, held
			line := run + ": " + j.Line()
			if c.terminal {
				fmt.Fprintf(c.stderr, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(c.stderr, "enqueue: "+line)
			}
		}
		t := time.NewTimer(w.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return st, j, false, errors.New("interrupted")
		case <-t.C:
		}
	}
	if w.wait && c.terminal {
		fmt.Fprintln(c.stderr)
	}
	return st, j, gaveUp, nil
}

// repairRun looks for run's unfinished batches that asynq no longer holds (status
// --repair): it enqueues lost halves again and lists the lost batches. A tenant's batches
// still waiting in its lane are queued, not lost.
func repairRun(ctx context.Context, rc *redisConn, l *ledger.Ledger, run string) (*ledger.RepairResult, error) {
	insp := asynq.NewInspectorFromRedisClient(rc.rdb)
	queues, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("repair %s: queues: %v", run, err)
	}
	lq, err := lanes.New(lanes.Config{Redis: rc.rdb, Queues: []string{tasks.DefaultQueue}, ValidTenant: tasks.ValidateTenantID})
	if err != nil {
		return nil, fmt.Errorf("repair %s: %v", run, err)
	}
	defer lq.Close()
	l = l.WithLanes(func(ctx context.Context, tenant, id string) (bool, error) {
		_, ok, err := lq.Job(ctx, tenant, id)
		return ok, err
	})
	r, err := l.Repair(ctx, insp, run, queues...)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %v", run, err)
	}
	return &r, nil
}

// DefaultHeldTimeout is how long `status --wait` waits on a run that only an operator can
// move before it gives up: long enough for an operator to fix the settings and for the
// held batches' next retry (every 5 minutes) to pick the fix up, short enough that a
// script learns of the hold within the hour instead of after the 24 hours the worker holds
// the batches before dead-lettering them.
const DefaultHeldTimeout = 15 * time.Minute

// report is the run's report, as the intake API and the runs page show it. A run's batches
// may wait in any queue (trickle, the demo's, one named at submission): it reads every
// queue's retry set, by the run's name.
func (c *cli) report(ctx context.Context, rc *redisConn, insp *asynq.Inspector, st ledger.RunStatus) (runreport.RunReport, error) {
	return runreport.TenantReport(ctx, rc.rdb, insp, "", rc.tenant, st, c.now())
}

// printRepair prints what status --repair found and did.
func (c *cli) printRepair(r ledger.RepairResult) {
	fmt.Fprintf(c.stdout, "repair: %d unfinished batches, %d in the queue, %d halves enqueued again, %d lost\n",
		r.Unfinished, r.Queued, len(r.Requeued), len(r.Lost))
	for _, id := range r.Requeued {
		fmt.Fprintf(c.stdout, "  enqueued again: %s\n", id)
	}
	for _, id := range r.Lost {
		fmt.Fprintf(c.stdout, "  lost: %s\n", id)
	}
	if len(r.Lost) > 0 {
		fmt.Fprintf(c.stdout, "Redis lost these batches with their keys (a failover drops writes the replica had not received).\n"+
			"Submit the run's source again with --run %s: only the lost batches are enqueued, nothing twice.\n", r.Run)
	}
}

func (c *cli) runs(ctx context.Context, args []string) int {
	fs := c.newFlagSet("runs", "enqueue runs [--limit 20] [--json]\n       enqueue runs --prune [--older-than 30d] [--dry-run] [--json]")
	limit := fs.Int("limit", 20, "how many runs, most recent first (0: all)")
	asJSON := fs.Bool("json", false, "print the runs (with --prune: what was removed) as JSON on stdout")
	prune := fs.Bool("prune", false, "remove the runs that finished longer ago than --older-than, with their change items and dead letters")
	olderThan := fs.String("older-than", c.env("LEDGER_RETENTION", fmt.Sprintf("%dd", ledger.DefaultLedgerRetention/(24*time.Hour))),
		"with --prune: the retention period, e.g. 30d or 72h (env LEDGER_RETENTION)")
	dryRun := fs.Bool("dry-run", false, "with --prune: list what would be removed, remove nothing")
	cf := c.connFlags(fs)
	if code, done := c.parseNoArgs(fs, args, ""); done {
		return code
	}
	var retention time.Duration
	if *prune {
		var err error
		if retention, err = ledger.ParseRetention(*olderThan); err != nil {
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
	list, err := rc.ledger().Runs(ctx, *limit)
	if err != nil {
		return c.fail(exitUsage, "runs: %v", err)
	}
	held := map[int][]string{} // ERP connection → pauses of its pending runs
	for _, st := range list {
		if _, ok := held[st.ErpConnectionID]; ok || st.PendingKeys == 0 {
			continue
		}
		if held[st.ErpConnectionID], err = flow.Pauses(ctx, rc.rdb, rc.tenant, st.ErpConnectionID, c.now()); err != nil {
			return c.fail(exitUsage, "runs: circuit breakers: %v", err)
		}
	}
	c.printRuns(list, held, *asJSON)
	return exitOK
}

// printRuns prints the runs, a table or JSON; held is the pauses of each ERP connection
// with pending runs, noted under the table and marked on its pending runs.
func (c *cli) printRuns(list []ledger.RunStatus, held map[int][]string, asJSON bool) {
	if asJSON {
		out := make([]runreport.RunReport, 0, len(list))
		for _, st := range list {
			j := c.toJSON(st)
			if st.PendingKeys > 0 {
				j.Paused = held[st.ErpConnectionID]
			}
			out = append(out, j)
		}
		writeJSON(c.stdout, out)
		return
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "RUN\tSTATE\tTOTAL\tRESYNCED\tDEAD\tPENDING\tSTARTED\tSOURCE")
	seen := map[string]bool{}
	var notes []string
	for _, st := range list {
		state := st.State
		if st.PendingKeys > 0 && len(held[st.ErpConnectionID]) > 0 {
			state += " (held)"
			for _, p := range held[st.ErpConnectionID] {
				if !seen[p] {
					seen[p] = true
					notes = append(notes, p)
				}
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", st.Run, state, st.TotalKeys, st.ResyncedKeys,
			st.DeadKeys, st.PendingKeys, fmtTime(timePtr(st.StartedAt)), orDash(st.Source))
	}
	w.Flush()
	for _, n := range notes {
		fmt.Fprintln(c.stdout, n)
	}
}

// prune removes (or, dry, lists) the runs that finished longer than retention ago.
func (c *cli) prune(ctx context.Context, rc *redisConn, retention time.Duration, dry, asJSON bool) int {
	insp := asynq.NewInspectorFromRedisClient(rc.rdb)
	res, err := rc.ledger().WithClock(c.now).Prune(ctx, ledger.PruneOptions{OlderThan: retention, DryRun: dry, Inspector: insp})
	if err != nil {
		// What was removed before the error is reported too.
		fmt.Fprintf(c.stderr, "enqueue: prune stopped after %s: %v\n", plural(int64(len(res.Runs)), "run"), err)
	}
	if asJSON {
		if res.Runs == nil {
			res.Runs = []ledger.PrunedRun{}
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
			fmt.Fprintf(c.stdout, "removed %s (%s, %s, %s, %s) finished before %s\n", plural(int64(len(res.Runs)), "run"),
				plural(keys, "key"), plural(dead, "dead letter"), plural(int64(res.Archived), "archived task"),
				plural(int64(res.Tasks), "other asynq task"), cutoff)
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

const deadSynopsis = `enqueue dead list [--run RUN] [--key KEY] [--json]
       enqueue dead export --format csv|jsonl [--run RUN] [--key KEY]
       enqueue dead requeue (--run RUN | --all) [--error-code C] [--class C] [--key KEY]
       enqueue dead purge (--run RUN | --all) [--error-code C] [--class C] [--key KEY] --yes`

func (c *cli) dead(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return c.usageError(errors.New("dead needs a subcommand: list, export, requeue or purge"))
	}
	sub := args[0]
	fs := c.newFlagSet("dead "+sub, deadSynopsis)
	run := fs.String("run", "", "only this run")
	key := fs.String("key", "", "only the dead letters of this ERP key, in every run unless --run")
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
		if sub == "requeue" {
			qf := fs.Lookup("queue")
			qf.DefValue, qf.Usage = "", "leave out: each batch goes back to the queue it ran in; a queue given here (or in env ENQUEUE_QUEUE) that a selected dead letter did not run in is refused"
		}
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
	if ec, done := c.parseNoArgs(fs, args[1:], " (give the run with --run)"); done {
		return ec
	}
	if format != nil {
		if _, err := export.ParseFormat(*format); err != nil {
			return c.usageError(fmt.Errorf("--format %v", err))
		}
	}
	filter, err := deadFilter(sub, *run, *key, all, code, class)
	if err != nil {
		return c.usageError(err)
	}
	if yes != nil && !*yes {
		return c.usageError(errors.New("dead purge deletes dead letters for good; add --yes to confirm (`enqueue dead export` keeps a copy)"))
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	l := rc.ledger()
	if *run != "" {
		if _, err := l.Status(ctx, *run); errors.Is(err, ledger.ErrRunNotFound) {
			return c.fail(exitUsage, "%s", runNotFound(*run, rc.tenant))
		}
	}

	switch sub {
	case "list":
		return c.deadList(ctx, l, filter, *asJSON)
	case "export":
		return c.deadExport(ctx, l, filter, *format)
	case "requeue":
		return c.deadRequeue(ctx, fs, rc, l, filter, cf.queue)
	default:
		return c.deadPurge(ctx, rc, l, filter)
	}
}

// deadFilter is the dead letters the flags of `dead sub` select; all, code and class are
// nil for the subcommands without them (list, export), which select every run without run.
func deadFilter(sub, run, key string, all *bool, code, class *string) (ledger.DeadFilter, error) {
	if all != nil {
		if run == "" && !*all {
			return ledger.DeadFilter{}, fmt.Errorf("dead %s needs --run RUN, or --all for every run", sub)
		}
		if run != "" && *all {
			return ledger.DeadFilter{}, errors.New("give --run or --all, not both")
		}
		if *class != "" {
			if _, err := tasks.ParseClass(*class); err != nil {
				return ledger.DeadFilter{}, fmt.Errorf("--class: %v", err)
			}
		}
		return ledger.DeadFilter{Run: run, ErrorCode: *code, Class: *class, Key: key, All: *all}, nil
	}
	return ledger.DeadFilter{Run: run, Key: key, All: run == ""}, nil
}

// deadList prints the dead letters filter selects: a table, or JSON.
func (c *cli) deadList(ctx context.Context, l *ledger.Ledger, filter ledger.DeadFilter, asJSON bool) int {
	dls, err := l.SelectDead(ctx, filter)
	if err != nil {
		return c.fail(exitUsage, "dead letters: %v", err)
	}
	if asJSON {
		if dls == nil {
			dls = []tasks.DeadLetter{}
		}
		writeJSON(c.stdout, dls)
		return exitOK
	}
	if len(dls) == 0 && filter.Key != "" {
		fmt.Fprintf(c.stderr, "enqueue: no dead letters for key %q (pending, resynced, or rejected at intake: see `enqueue status RUN` and `enqueue rejected RUN`)\n", filter.Key)
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
}

// deadExport writes the dead letters filter selects in format (csv or jsonl).
func (c *cli) deadExport(ctx context.Context, l *ledger.Ledger, filter ledger.DeadFilter, format string) int {
	dls, err := l.SelectDead(ctx, filter)
	if err != nil {
		return c.fail(exitUsage, "dead letters: %v", err)
	}
	if err := writeDead(c.stdout, format, dls); err != nil {
		return c.fail(exitUsage, "export: %v", err)
	}
	return exitOK
}

// deadRequeue sends the batches of the dead letters filter selects back to the queues they
// ran in; a queue given (fs's --queue or ENQUEUE_QUEUE) that one of them did not run in is
// refused.
func (c *cli) deadRequeue(ctx context.Context, fs *flag.FlagSet, rc *redisConn, l *ledger.Ledger, filter ledger.DeadFilter, queue string) int {
	if given, setting := c.queueGiven(fs); given != "" {
		if msg, err := otherQueue(ctx, l, filter, queue); err != nil {
			return c.fail(exitUsage, "requeue: %v", err)
		} else if msg != "" {
			return c.fail(exitUsage, "%s: %s; a requeue sends each batch back to the queue it ran in: leave out %s",
				given, msg, setting)
		}
	}
	client := asynq.NewClientFromRedisClient(rc.rdb)
	insp := asynq.NewInspectorFromRedisClient(rc.rdb)
	res, err := l.Requeue(ctx, client, insp, filter)
	if err != nil {
		return c.fail(exitUsage, "requeue: %v", err)
	}
	fmt.Fprintf(c.stdout, "requeued %s in %s (removed %s)\n", plural(int64(res.Keys), "key"),
		plural(int64(len(res.Batches)), "batch"), plural(int64(res.Archived), "archived task"))
	return exitOK
}

// deadPurge deletes the dead letters filter selects, for good.
func (c *cli) deadPurge(ctx context.Context, rc *redisConn, l *ledger.Ledger, filter ledger.DeadFilter) int {
	insp := asynq.NewInspectorFromRedisClient(rc.rdb)
	res, err := l.PurgeDead(ctx, insp, filter)
	if err != nil {
		return c.fail(exitUsage, "purge: %v", err)
	}
	fmt.Fprintf(c.stdout, "purged %s (removed %s)\n", plural(int64(res.Keys), "dead letter"), plural(int64(res.Archived), "archived task"))
	return exitOK
}

// queueGiven tells how the queue was chosen when it was not left to its default: given is
// "--queue Q" or "ENQUEUE_QUEUE=Q", setting "--queue" or "ENQUEUE_QUEUE"; both "" otherwise.
func (c *cli) queueGiven(fs *flag.FlagSet) (given, setting string) {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "queue" {
			given, setting = "--queue "+f.Value.String(), "--queue"
		}
	})
	if v := c.getenv("ENQUEUE_QUEUE"); given == "" && v != "" {
		given, setting = "ENQUEUE_QUEUE="+v, "ENQUEUE_QUEUE"
	}
	return given, setting
}

// otherQueue describes the first dead letter f selects that ran in a queue other than
// queue ("run R ran in queue Q"), or returns "" when there is none.
func otherQueue(ctx context.Context, l *ledger.Ledger, f ledger.DeadFilter, queue string) (string, error) {
	dls, err := l.SelectDead(ctx, f)
	if err != nil {
		return "", err
	}
	for _, d := range dls {
		if q := d.QueueName(); q != queue {
			return fmt.Sprintf("run %s ran in queue %s", d.Run, q), nil
		}
	}
	return "", nil
}

func (c *cli) rejected(ctx context.Context, args []string) int {
	fs := c.newFlagSet("rejected", "enqueue rejected RUN [--json]")
	asJSON := fs.Bool("json", false, "print the rejected keys as JSON on stdout")
	cf := c.connFlags(fs)
	run, code, done := c.parseRun(fs, args, " (see `enqueue runs`)")
	if done {
		return code
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "%v", err)
	}
	defer rc.Close()
	l := rc.ledger()
	st, err := l.Status(ctx, run)
	if errors.Is(err, ledger.ErrRunNotFound) {
		return c.failJSON(*asJSON, exitUsage, "%s", runNotFound(run, rc.tenant))
	}
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "rejected keys of %s: %v", run, err)
	}
	list, err := l.Rejected(ctx, run)
	if err != nil {
		return c.failJSON(*asJSON, exitUsage, "%v", err)
	}
	omitted := max(st.RejectedKeys-int64(len(list)), 0)
	if *asJSON {
		writeJSON(c.stdout, struct {
			Run          string               `json:"run"`
			RejectedKeys int64                `json:"rejected_keys"`
			Omitted      int64                `json:"omitted"`
			Keys         []ledger.RejectedKey `json:"keys"`
		}{run, st.RejectedKeys, omitted, list})
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintf(c.stderr, "enqueue: run %s has no rejected keys\n", run)
		return exitOK
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "SOURCE\tLINE\tKEY\tREASON")
	for _, r := range list {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", r.Source, r.Line, strconv.Quote(r.Key), r.Reason)
	}
	w.Flush()
	if omitted > 0 {
		fmt.Fprintf(c.stderr, "enqueue: … and %d more rejected keys, not listed: the run keeps the first %d\n", omitted, ledger.MaxRejected)
	}
	return exitOK
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var deadHeader = []string{"run", "key", "batch_id", "erp_connection", "actor_type", "class", "error_code",
	"tech_explanation", "user_explanation", "reason", "attempts", "at"}

func writeDead(w io.Writer, format string, dls []tasks.DeadLetter) error {
	if export.Format(format) == export.JSONL {
		enc := json.NewEncoder(w)
		for _, d := range dls {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	cw := export.NewCSVWriter(w)
	cw.Write(deadHeader)
	for _, d := range dls {
		cw.Write([]string{d.Run, d.Key, d.BatchID, strconv.Itoa(d.ErpConnectionID), d.ActorType.String(), d.Class,
			d.ErrorCode, d.TechExplanation, d.UserExplanation, d.Reason, strconv.Itoa(d.Attempts), d.At.UTC().Format(time.RFC3339Nano)})
	}
	return cw.Flush()
}

func (c *cli) changes(ctx context.Context, args []string) int {
	fs := c.newFlagSet("changes", "enqueue changes RUN --format jsonl|csv")
	format := fs.String("format", "jsonl", "jsonl or csv")
	cf := c.connFlags(fs)
	run, code, done := c.parseRun(fs, args, "")
	if done {
		return code
	}
	f, err := export.ParseFormat(*format)
	if err != nil {
		return c.usageError(fmt.Errorf("--format %v", err))
	}
	rc, err := cf.open(ctx)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer rc.Close()
	l := rc.ledger()
	if _, err := l.Status(ctx, run); errors.Is(err, ledger.ErrRunNotFound) {
		return c.fail(exitUsage, "%s", runNotFound(run, rc.tenant))
	}
	cw := export.NewChangeWriter(c.stdout, f)
	if err := l.Changes(ctx, run, cw.Write); err != nil {
		cw.Flush()
		return c.fail(exitUsage, "changes: %v", err)
	}
	if err := cw.Flush(); err != nil {
		return c.fail(exitUsage, "changes: %v", err)
	}
	return exitOK
}
