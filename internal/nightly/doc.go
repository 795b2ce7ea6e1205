// Package nightly runs the nightly bulk resync: for each configured Entry, at its cron
// time, the file the ERP export wrote is submitted through intake as the run
// "nightly-NAME-YYYY-MM-DD".
//
// The worker loads a Config (LoadConfig, from the NIGHTLY_CONFIG variable or the
// --nightly-config flag: a JSON file or inline JSON), calls Register to add the entries to
// its asynq.Scheduler, and serves TypeNightly tasks with a Handler.
//
// The handler guards the two ways a bulk resync goes wrong:
//
//   - Overlap: while the entry's previous run still has keys pending in the ledger, a new
//     run does not start; the handler logs a warning, counts outcome "overlap" in
//     erpresync_nightly_runs_total and returns nil (no retry, no error storm). Today's run
//     may be submitted again (a retry, a second scheduler): intake enqueues only what is
//     missing. A retry keeps the run of its first attempt, also after midnight.
//   - A missing or empty export: a source that matches no file, an empty file or one
//     without a single valid key is an error (logged, counted as "source_missing" or
//     "source_empty", retried DefaultMaxRetry times by asynq) and enqueues nothing — never an
//     empty key list, which SuperOffice would read as "resync everything". What counts as
//     empty is intake's rule ([intake.ErrNoKeys]), the one `enqueue` applies, and the
//     night's run is recorded as empty in the ledger, as `enqueue` records it.
package nightly
