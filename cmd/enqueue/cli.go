package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/buildinfo"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redisconn"
	"github.com/erpresync/erpresync/tasks"
)

// Exit codes; part of the interface (see usage).
const (
	exitOK    = 0 // success
	exitBad   = 1 // ran, but the answer is bad: invalid keys, dead letters
	exitUsage = 2 // usage, configuration or transport error
	exitHeld  = 3 // status --wait gave up on a run held for an auth failure
)

const usage = `enqueue — put ERP external keys into erpresync and follow what happens to them.

Usage:
  enqueue --erp-connection N --actor-type TYPE --file PATH|- [options]   submit a file of keys
  enqueue key --erp-connection N --actor-type TYPE KEY...               hand over single keys (trickle)
  enqueue status RUN [--json] [--wait] [--repair]                        progress of a run (--repair: after a failover)
  enqueue runs [--limit N] [--json]                                      recent runs, one line each
  enqueue runs --prune [--older-than 30d] [--dry-run] [--json]           remove runs finished long ago
  enqueue rejected RUN [--json]                                          keys a run skipped as invalid
  enqueue dead list [--run RUN] [--key K] [--json]                       dead letters (of one ERP key: --key)
  enqueue dead export --format csv|jsonl [--run RUN] [--key K]           dead letters for a spreadsheet
  enqueue dead requeue (--run RUN | --all) [--error-code C] [--class C] [--key K]   resync dead keys again
  enqueue dead purge (--run RUN | --all) [--error-code C] [--class C] [--key K] --yes
  enqueue changes RUN --format jsonl|csv                                 CRM rows the run changed
  enqueue tenants [--tenant ID] [--json]                                 tenants with runs or waiting batches
  enqueue tenants purge --tenant ID --yes [--json]                       remove a removed tenant's held batches
  enqueue --version                                                      module version and VCS revision

Submitting (the first form):
  Keys come one per line, or from a CSV column (--csv-column NAME|INDEX). White space is
  trimmed; CRLF, a UTF-8 BOM and blank lines are fine. Invalid keys (over 254 characters,
  characters XML cannot carry, not UTF-8) are listed on stderr with file and line and
  skipped, and kept in the run (enqueue rejected RUN lists the first %d with line and
  reason); --strict refuses the whole file instead, before anything is enqueued. An input
  without a valid key (an empty file, a failed export) is an error (exit 1) unless
  --allow-empty; either way the run is recorded, with state empty. A key seen earlier in the run is dropped. Standard
  input (--file -) is copied to a temporary file first. The run's name is printed on
  stderr; submitting the same input under the same --run again (after Ctrl-C or a crash)
  enqueues only what is missing, never a key twice; other input, or other settings, under
  that --run are refused.

Trickle (enqueue key):
  Prints the run the keys join: trickle-DAY-CONNECTION-ACTOR of the UTC day they are handed
  over (a batch that straddles midnight UTC joins the earlier day's run).

Tenants:
  Every command takes --tenant ID (or ENQUEUE_TENANT): the keys it submits and the runs,
  dead letters and changes it names are that tenant's, and it never sees another's, so
  two tenants may both have a run called nightly. Without it, the implicit tenant's (the
  worker's SUPEROFFICE_* settings), as before tenants existed.
  enqueue tenants lists every tenant with runs or batches waiting in its lane: batches
  queued in the lane, in flight on workers, runs and active runs. enqueue tenants purge
  is for a tenant removed from the tenants file, whose batches are held: it removes its
  lane and its pending, scheduled, retry and aggregating asynq tasks (active ones are left
  alone) and records their keys as dead letters (error code PURGED, "purged by an
  operator"), so its runs end visibly; enqueue dead requeue --all --error-code PURGED
  --tenant ID sends them again once the tenant is back.

Output:
  Results go to stdout (only JSON with --json); progress and problems go to stderr. With
  --json, status and rejected also print an error as {"error": "...", "exit_code": N}.

Exit status:
  0  success
  1  ran, but the answer is bad: invalid keys were skipped or refused (--strict), the
     input held no valid key, or the run has dead letters or an incomplete intake (status,
     status --wait)
  2  usage, configuration or transport error (bad flag, unknown run, Redis unreachable)
  3  status --wait gave up: every pending key has been held for an auth failure (refused
     credentials, HTTP 401/403/421) and no key finished for --held-timeout (default 15m);
     only fixing the worker's SuperOffice settings moves the run

Environment (flags win):
  REDIS_URL            --redis-url            default redis://127.0.0.1:6379/0
  REDIS_CLUSTER_ADDRS  --redis-cluster-addrs  default none
  ENQUEUE_QUEUE        --queue                default erpresync
  ENQUEUE_TENANT       --tenant               default none: the implicit tenant
  LEDGER_RETENTION     --older-than           default 30d (runs --prune)

Run "enqueue COMMAND -h" for a command's flags.
`

// cli is one invocation's environment.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// terminal reports whether stderr is a terminal (progress bar instead of lines).
	terminal bool
	// progressEvery is the interval of plain progress lines.
	progressEvery time.Duration
	now           func() time.Time
}

// run is the whole command; main only wires the process to it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv,
		progressEvery: 2 * time.Second, now: time.Now}
	if f, ok := stderr.(*os.File); ok {
		c.terminal = isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
	}
	return c.run(ctx, args)
}

func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(c.stderr, usage, ledger.MaxRejected)
		return exitUsage
	}
	if buildinfo.IsFlag(args[0]) {
		fmt.Fprintln(c.stdout, buildinfo.Version("enqueue"))
		return exitOK
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(c.stdout, usage, ledger.MaxRejected)
		return exitOK
	case "key":
		return c.key(ctx, args[1:])
	case "status":
		return c.status(ctx, args[1:])
	case "runs":
		return c.runs(ctx, args[1:])
	case "rejected":
		return c.rejected(ctx, args[1:])
	case "dead":
		return c.dead(ctx, args[1:])
	case "changes":
		return c.changes(ctx, args[1:])
	case "tenants":
		return c.tenants(ctx, args[1:])
	case "submit":
		return c.submit(ctx, args[1:])
	}
	if strings.HasPrefix(args[0], "-") {
		return c.submit(ctx, args)
	}
	return c.usageError(fmt.Errorf("unknown command %q: want key, status, runs, rejected, dead, changes or tenants, or flags to submit a file", args[0]))
}

// usageError refuses the command line in one line, which names the flag or argument at
// fault and what would be valid.
func (c *cli) usageError(err error) int {
	fmt.Fprintf(c.stderr, "enqueue: %v (see enqueue -h)\n", err)
	return exitUsage
}

func (c *cli) fail(code int, format string, a ...any) int {
	fmt.Fprintf(c.stderr, "enqueue: "+format+"\n", a...)
	return code
}

// jsonError is what a command run with --json prints on stdout when it fails, so that a
// `| jq` pipeline sees the failure too.
type jsonError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

// failJSON is fail for a command that may run with --json: then the error also goes to
// stdout as a jsonError.
func (c *cli) failJSON(asJSON bool, code int, format string, a ...any) int {
	if asJSON {
		writeJSON(c.stdout, jsonError{Error: fmt.Sprintf(format, a...), ExitCode: code})
	}
	return c.fail(code, format, a...)
}

// conn holds the connection flags every Redis-using command shares, and the tenant whose
// runs and keys the command names.
type conn struct {
	redisURL, clusterAddrs, queue string
	tenant                        *tenantFlag
}

// tenantFlag is --tenant: the tenant whose runs and keys a command names ("" the implicit
// tenant of the worker's SUPEROFFICE_* settings). Its value, from the flag or from
// ENQUEUE_TENANT, is checked once parsing is done (check), so both are refused alike.
type tenantFlag struct {
	id      string
	fromEnv bool // id came from ENQUEUE_TENANT, not the flag
}

func (f *tenantFlag) String() string {
	if f == nil {
		return ""
	}
	return f.id
}

func (f *tenantFlag) Set(s string) error { f.id, f.fromEnv = s, false; return nil }

// check is tasks.ValidateTenantID's verdict on the tenant, naming where it came from.
func (f *tenantFlag) check() error {
	if f.id == "" {
		return nil
	}
	if err := tasks.ValidateTenantID(f.id); err != nil {
		if f.fromEnv {
			return fmt.Errorf("ENQUEUE_TENANT: %v", err)
		}
		return fmt.Errorf("--tenant: %v", err)
	}
	return nil
}

func (c *cli) connFlags(fs *flag.FlagSet) *conn {
	cf := &conn{}
	fs.StringVar(&cf.redisURL, "redis-url", c.env("REDIS_URL", redisconn.DefaultURL), "Redis URL (env REDIS_URL)")
	// The usage shows the default; REDIS_URL may carry a password.
	fs.Lookup("redis-url").DefValue = redisconn.Redact(cf.redisURL)
	fs.StringVar(&cf.clusterAddrs, "redis-cluster-addrs", c.env("REDIS_CLUSTER_ADDRS", ""), "Redis Cluster nodes host:port,... (env REDIS_CLUSTER_ADDRS)")
	fs.StringVar(&cf.queue, "queue", c.env("ENQUEUE_QUEUE", tasks.DefaultQueue), "asynq queue (env ENQUEUE_QUEUE)")
	cf.tenant = &tenantFlag{id: c.getenv("ENQUEUE_TENANT"), fromEnv: true}
	fs.Var(cf.tenant, "tenant", "the tenant whose runs and keys these are; empty: the implicit tenant of the worker's SUPEROFFICE_* settings (env ENQUEUE_TENANT)")
	return cf
}

func (c *cli) env(name, def string) string {
	if v := c.getenv(name); v != "" {
		return v
	}
	return def
}

// redisConn is an open connection: a go-redis client and its asynq options, and the
// tenant (--tenant) whose runs the command reads.
type redisConn struct {
	opt    asynq.RedisConnOpt
	rdb    redis.UniversalClient
	tenant string
}

func (r *redisConn) Close() { r.rdb.Close() }

// ledger is the ledger as the tenant sees it: its own runs, dead letters and changes only.
func (r *redisConn) ledger() *ledger.Ledger { return ledger.NewLedger(r.rdb).Tenant(r.tenant) }

// open connects and pings, so that an unreachable Redis is one clear line.
func (cf *conn) open(ctx context.Context) (*redisConn, error) {
	opt, err := redisconn.Parse(cf.redisURL, cf.clusterAddrs)
	if err != nil {
		return nil, err
	}
	rdb := redisconn.Client(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s: %v", redisconn.Redact(cf.redisURL), err)
	}
	return &redisConn{opt: opt, rdb: rdb, tenant: cf.tenant.id}, nil
}

// newFlagSet returns a flag set that reports errors on stderr with the command's synopsis.
func (c *cli) newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprint(c.stderr, "\nExit status: 0 success, 1 ran but the answer is bad, 2 usage, configuration or transport error.\n")
	}
	return fs
}

// flagWants is the valid form of a flag's value, for the line that refuses a bad one (and the
// range checks after parsing); a flag not listed here is described by its type (wantOf).
var flagWants = map[string]string{
	"erp-connection": "the ERP connection id, a positive integer",
	"batch-size":     fmt.Sprintf("keys per call, 1 to %d", tasks.MaxBatchSize),
	"concurrency":    "1 to 256",
	"limit":          "a number of runs, 0 for all",
	"interval":       "a positive duration such as 2s or 1m",
}

// wantOf is the valid form of the value of flag name, whose value is v and whose help text is
// usage.
func wantOf(name string, v flag.Value, usage string) string {
	if w, ok := flagWants[name]; ok {
		return w
	}
	if g, ok := v.(flag.Getter); ok {
		switch g.Get().(type) {
		case bool:
			return "true or false"
		case int, int64, uint, uint64:
			return "a whole number"
		case time.Duration:
			return "a duration such as 30s or 5m"
		}
	}
	return strings.TrimSuffix(usage, " (required)")
}

// badValue is a flag value its flag refused: the flag package reports it in words of its
// own, so checkedValue keeps the flag, the value and the valid form.
type badValue struct {
	flag, value, want string
}

func (b *badValue) Error() string { return fmt.Sprintf("--%s %q: want %s", b.flag, b.value, b.want) }

// checkedValue records the value its flag refuses in *bad.
type checkedValue struct {
	flag.Value
	name  string
	usage string
	bad   **badValue
}

func (v *checkedValue) Set(s string) error {
	err := v.Value.Set(s)
	if err != nil {
		*v.bad = &badValue{flag: v.name, value: s, want: wantOf(v.name, v.Value, v.usage)}
	}
	return err
}

// checkedBool is checkedValue for a boolean flag (which needs no argument).
type checkedBool struct{ checkedValue }

func (v *checkedBool) IsBoolFlag() bool { return true }

// parse parses flags anywhere among the arguments ("status RUN --json") and returns the
// positional arguments. Everything after "--" is positional. It returns done=true with the
// exit code when the caller should stop (-h, or a bad flag). A bad flag is one line naming
// the flag and what it takes, not the flag package's message and the whole flag list.
// parseRun is parse for a command that takes exactly one RUN; the usage error names the
// command, followed by hint (such as where runs are listed).
func (c *cli) parseRun(fs *flag.FlagSet, args []string, hint string) (run string, code int, done bool) {
	pos, code, done := c.parse(fs, args)
	if done {
		return "", code, true
	}
	if len(pos) != 1 {
		return "", c.usageError(fmt.Errorf("%s needs exactly one RUN%s", fs.Name(), hint)), true
	}
	return pos[0], 0, false
}

// parseNoArgs is parse for a command that takes flags only; the usage error names the first
// other argument, followed by hint (such as where that input belongs).
func (c *cli) parseNoArgs(fs *flag.FlagSet, args []string, hint string) (code int, done bool) {
	pos, code, done := c.parse(fs, args)
	if done {
		return code, true
	}
	if len(pos) > 0 {
		return c.usageError(fmt.Errorf("unexpected argument %q%s", pos[0], hint)), true
	}
	return 0, false
}

func (c *cli) parse(fs *flag.FlagSet, args []string) (pos []string, code int, done bool) {
	// While parsing, every flag's value is wrapped to catch a refused value, and the flag
	// package prints nothing; the usage (-h) is printed with the values as they were.
	var bad *badValue
	orig := map[string]flag.Value{}
	fs.VisitAll(func(f *flag.Flag) {
		orig[f.Name] = f.Value
		cv := checkedValue{Value: f.Value, name: f.Name, usage: f.Usage, bad: &bad}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			f.Value = &checkedBool{cv}
		} else {
			f.Value = &cv
		}
	})
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	restore := func() {
		fs.VisitAll(func(f *flag.Flag) { f.Value = orig[f.Name] })
		fs.Usage = usage
		fs.SetOutput(c.stderr)
	}
	defer restore()
	var rest []string
	for i, a := range args {
		if a == "--" {
			rest = args[i+1:]
			args = args[:i]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				restore()
				usage()
				return nil, exitOK, true
			}
			switch {
			case bad != nil:
				err = bad
			default:
				restore()
				if perr := flagProblem(fs, args); perr != nil {
					err = perr
				}
			}
			return nil, c.usageError(err), true
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if f, ok := orig["tenant"].(*tenantFlag); ok {
		if err := f.check(); err != nil {
			return nil, c.usageError(err), true
		}
	}
	return append(pos, rest...), 0, false
}

// runSpecFlags are --erp-connection and --actor-type, shared by submit and key.
type target struct {
	conn  int
	actor string
	fs    *flag.FlagSet
}

func (t *target) flags(fs *flag.FlagSet) {
	t.fs = fs
	fs.IntVar(&t.conn, "erp-connection", 0, "ERP connection id (required)")
	fs.StringVar(&t.actor, "actor-type", "", "ERP actor type: Customer, Supplier, Partner, Person, Project, Employee, Sale (required)")
}

func (t *target) parse() (int, erpsync.ActorType, error) {
	if !given(t.fs, "erp-connection") {
		return 0, 0, errors.New("--erp-connection is required: " + flagWants["erp-connection"])
	}
	if t.conn <= 0 {
		return 0, 0, fmt.Errorf("--erp-connection %d: want %s", t.conn, flagWants["erp-connection"])
	}
	if t.actor == "" {
		return 0, 0, errors.New("--actor-type is required: " + erpsync.ActorTypeHint)
	}
	a, err := erpsync.ParseActorType(t.actor)
	if err != nil {
		return 0, 0, fmt.Errorf("--actor-type: %w", err)
	}
	return t.conn, a, nil
}

// flagProblem names what is wrong with the first flag of args that fs cannot take: one it does
// not have, or one at the end without its value. nil when it finds neither (then the flag
// package's message stands).
func flagProblem(fs *flag.FlagSet, args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				continue
			}
			return fmt.Errorf("unknown flag --%s", name)
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); hasValue || (ok && b.IsBoolFlag()) {
			continue
		}
		if i == len(args)-1 {
			return fmt.Errorf("--%s needs a value: %s", name, wantOf(name, f.Value, f.Usage))
		}
		i++ // the flag's value, whatever it looks like
	}
	return nil
}

// given reports whether flag name was on the command line.
func given(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.FormatInt(n, 10) + " " + word + "s"
}
