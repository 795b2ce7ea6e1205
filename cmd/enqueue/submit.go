package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"

	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/tasks"
)

const submitSynopsis = `enqueue --erp-connection N --actor-type TYPE --file PATH|- [--csv-column NAME|INDEX] [--run NAME] [--batch-size 100] [--strict] [--allow-empty] [--dry-run] [--json]`

func (c *cli) submit(ctx context.Context, args []string) int {
	fs := c.newFlagSet("enqueue", submitSynopsis)
	var t target
	t.flags(fs)
	file := fs.String("file", "", "file of keys, or - for standard input (required)")
	csvColumn := fs.String("csv-column", "", "read CSV and take the key from this column: a header name, or a 0-based index")
	csvHeader := fs.Bool("csv-header", false, "with an index for --csv-column: the first record is a header (skipped)")
	csvDelim := fs.String("csv-delimiter", ",", "CSV field delimiter")
	runName := fs.String("run", "", "run name (default: a new one, e.g. run-20261127-101500-ab12)")
	batchSize := fs.Int("batch-size", tasks.DefaultBatchSize, fmt.Sprintf("keys per SuperOffice call, 1 to %d", tasks.MaxBatchSize))
	strict := fs.Bool("strict", false, "refuse the whole input, enqueuing nothing, if any key is invalid")
	allowEmpty := fs.Bool("allow-empty", false, "accept an input without a valid key (exit 0; the run is recorded as empty)")
	dryRun := fs.Bool("dry-run", false, "validate and count without enqueuing (no Redis needed)")
	asJSON := fs.Bool("json", false, "print the summary as JSON on stdout")
	concurrency := fs.Int("concurrency", intake.DefaultConcurrency, "batches registered and enqueued at once")
	cf := c.connFlags(fs)
	if code, done := c.parseNoArgs(fs, args, ": give the input with --file PATH (or --file - for stdin)"); done {
		return code
	}
	conn, actor, err := t.parse()
	if err != nil {
		return c.usageError(err)
	}
	if *file == "" {
		return c.usageError(errors.New("--file is required: a path, or - for standard input"))
	}
	if utf8.RuneCountInString(*csvDelim) != 1 {
		return c.usageError(fmt.Errorf("--csv-delimiter %q: want exactly one character", *csvDelim))
	}
	if *concurrency < 1 || *concurrency > 256 {
		return c.usageError(fmt.Errorf("--concurrency %d: want %s", *concurrency, flagWants["concurrency"]))
	}
	if *batchSize < 1 || *batchSize > tasks.MaxBatchSize {
		return c.usageError(fmt.Errorf("--batch-size %d: want %s", *batchSize, flagWants["batch-size"]))
	}
	if *runName, err = c.runName(*runName); err != nil {
		return c.usageError(err)
	}
	if w := csvWarning(*file, *csvColumn, *csvHeader); w != "" {
		fmt.Fprintln(c.stderr, "enqueue: warning: "+w)
	}
	src, err := c.source(*file, *csvColumn, *csvHeader, *csvDelim)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}

	pcfg := intake.ProducerConfig{Tenant: cf.tenant.id, Concurrency: *concurrency}
	if !*dryRun {
		rc, err := cf.open(ctx)
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		defer rc.Close()
		pcfg.Redis = rc.rdb
		pcfg.Queue = cf.queue
	}
	prog := c.newProgress(*runName)
	pcfg.Progress = prog.update
	pcfg.ProgressInterval = 100 * time.Millisecond
	p, err := intake.NewProducer(pcfg)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	mode := ""
	if *dryRun {
		mode = " (dry run: nothing is enqueued)"
	}
	fmt.Fprintf(c.stderr, "enqueue: run %s%s\n", *runName, mode)
	spec := intake.RunSpec{Run: *runName, ErpConnectionID: conn, ActorType: actor, BatchSize: *batchSize,
		Strict: *strict, DryRun: *dryRun, AllowEmpty: *allowEmpty, Origin: "cli"}
	sum, err := p.Submit(ctx, spec, src)
	prog.finish()
	return c.submitted(sum, err, *asJSON, *dryRun)
}

// runName is --run checked, or a new run name when it is empty.
func (c *cli) runName(name string) (string, error) {
	if name == "" {
		return intake.NewRunName(c.now()), nil
	}
	if err := intake.ValidateRunName(name); err != nil {
		return "", fmt.Errorf("--run: %s", strings.TrimPrefix(err.Error(), intake.ErrConfig.Error()+": "))
	}
	return name, nil
}

// source is the input --file names (standard input for -), read as CSV when csvColumn is
// given; csvDelim is one character (submit checked it).
func (c *cli) source(file, csvColumn string, csvHeader bool, csvDelim string) (intake.Source, error) {
	delim, _ := utf8.DecodeRuneInString(csvDelim)
	if file == "-" {
		return intake.Source{Name: "stdin", R: c.stdin, CSVColumn: csvColumn, CSVHeader: csvHeader, CSVComma: delim}, nil
	}
	if fi, err := os.Stat(file); err != nil {
		return intake.Source{}, fmt.Errorf("--file: %v", err)
	} else if fi.IsDir() {
		return intake.Source{}, fmt.Errorf("--file %s: is a directory, want a file of keys", file)
	}
	return intake.Source{Path: file, CSVColumn: csvColumn, CSVHeader: csvHeader, CSVComma: delim}, nil
}

// submitted prints what Submit reported (its problems, the summary, the error with what
// to do about it) and returns the exit status.
func (c *cli) submitted(sum intake.Summary, err error, asJSON, dryRun bool) int {
	for _, pr := range sum.Problems {
		fmt.Fprintf(c.stderr, "enqueue: %v\n", pr)
	}
	if sum.ProblemsOmitted > 0 {
		fmt.Fprintf(c.stderr, "enqueue: … and %s more\n", plural(sum.ProblemsOmitted, "problem"))
	}
	var verr *intake.ValidationError
	switch {
	case errors.As(err, &verr):
		c.printSummary(sum, asJSON)
		return c.fail(exitBad, "--strict: %s; nothing was enqueued", plural(int64(verr.Invalid), "invalid key"))
	case errors.Is(err, intake.ErrNoKeys):
		c.printSummary(sum, asJSON)
		recorded := "; the run is recorded as empty"
		if dryRun {
			recorded = ""
		}
		return c.fail(exitBad, "%v: nothing to resync%s (did the export fail? --allow-empty accepts an empty input)", err, recorded)
	case errors.Is(err, context.Canceled):
		c.printSummary(sum, asJSON)
		return c.fail(exitUsage, "interrupted; run the same command with --run %s to enqueue the rest", sum.Run)
	case errors.Is(err, intake.ErrMalformed):
		c.printSummary(sum, asJSON)
		return c.fail(exitBad, "%v; fix the input and submit it again under --run %s (batches already enqueued stay)", err, sum.Run)
	case errors.Is(err, intake.ErrConfig), errors.Is(err, intake.ErrRunMismatch):
		return c.fail(exitUsage, "%v", err)
	case err != nil:
		c.printSummary(sum, asJSON)
		return c.fail(exitUsage, "%v (run the same command again to enqueue the rest)", err)
	}
	c.printSummary(sum, asJSON)
	if sum.Invalid > 0 {
		return exitBad
	}
	return exitOK
}

func (c *cli) printSummary(s intake.Summary, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(s)
		return
	}
	fmt.Fprintf(c.stdout, "run %s\n", s.Run)
	fmt.Fprintf(c.stdout, "read %d, valid %d, invalid %d, duplicates %d, distinct keys %d\n", s.Read, s.Valid, s.Invalid, s.Duplicates, s.Keys)
	if s.DryRun {
		fmt.Fprintf(c.stdout, "batches %d (dry run: none enqueued)\n", s.Batches)
	} else {
		fmt.Fprintf(c.stdout, "batches %d: enqueued %d, already present %d\n", s.Batches, s.BatchesEnqueued, s.BatchesPresent)
	}
}

// progress shows a submission's progress on stderr: a bar on a terminal, else a line every
// progressEvery.
type progress struct {
	c    *cli
	run  string
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	last time.Time
}

func (c *cli) newProgress(run string) *progress {
	return &progress{c: c, run: run, last: c.now()}
}

func (p *progress) update(pr intake.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rate := 0.0
	if s := pr.Elapsed.Seconds(); s > 0 {
		rate = float64(pr.Read) / s
	}
	desc := fmt.Sprintf("%s: read %d, enqueued %d keys, %.0f keys/s", pr.Phase, pr.Read, pr.KeysEnqueued, rate)
	if p.c.terminal {
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(pr.TotalBytes,
				progressbar.OptionSetWriter(p.c.stderr), progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(true))
		}
		p.bar.Describe(desc)
		p.bar.Set64(pr.Bytes)
		return
	}
	if now := p.c.now(); now.Sub(p.last) >= p.c.progressEvery {
		p.last = now
		fmt.Fprintf(p.c.stderr, "enqueue: run %s: %s\n", p.run, desc)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.c.stderr)
	}
}

// csvWarning names the two easy CSV mistakes, which would otherwise send whole lines or a
// header as keys without a word: a .csv file read line by line, and a column index without
// --csv-header.
func csvWarning(file, column string, header bool) string {
	if column == "" {
		if strings.EqualFold(filepath.Ext(file), ".csv") {
			return file + " looks like CSV, but without --csv-column each whole line is taken as a key"
		}
		return ""
	}
	if _, err := strconv.Atoi(column); err == nil && !header {
		return "--csv-column " + column + " is an index, so the first record is read as a key; add --csv-header if it is a header"
	}
	return ""
}
