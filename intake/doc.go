// Package intake is how ERP external keys enter erpresync: the Go API for producers (ERP
// export jobs written in Go) and the engine behind cmd/enqueue and package nightly.
//
// A [Producer] takes keys from a [Source] — a file or a reader with one key per line, or a
// CSV column chosen by header name or 0-based index — and submits them as a run:
// batches of RunSpec.BatchSize distinct keys, each a tasks.TypeResync task that one worker
// call sends to SuperOffice's ErpSync.ForceResyncExternal. [Producer.AddKey] hands over a
// single key instead (trickle intake); asynq groups those per ERP connection and actor type
// and the worker's aggregator merges them into batches.
//
// # Input
//
// Keys are trimmed; CRLF, a UTF-8 byte order mark, blank lines and quoted CSV are handled.
// A key must pass erpsync.ValidateKey (at most 254 characters, valid UTF-8, only characters
// XML 1.0 can carry). An invalid key is reported as a [*KeyError] with file, line and
// reason; without RunSpec.Strict it is skipped and listed in the [Summary], with it the
// whole submission fails with a [*ValidationError] before anything is enqueued (a first
// pass validates the whole input, a second submits it). After a complete pass the skipped
// keys are recorded in the run (ledger.Ledger.RecordIntake: the count, and the first
// ledger.MaxRejected with line and reason), so they outlive the producer's output.
//
// An input without a single valid key — empty (a failed export piped in), only blank lines
// or a CSV header, only invalid keys — is an error wrapping [ErrNoKeys] unless
// RunSpec.AllowEmpty; nothing is enqueued, and the run is recorded with no keys (state
// ledger.RunEmpty), so that it shows as empty instead of not found. cmd/enqueue and package
// nightly both apply this rule.
//
// # Duplicates
//
// A key already taken in the run is dropped, exactly: an open-addressing table keeps, per
// key, 32 bits of its 64-bit hash and the index of its input record (8 bytes a slot, at
// most 70% full: about 16 MiB per million distinct keys, whatever their length). When the
// hash bits match, the earlier record is read again from the input file (from a
// checkpoint kept every 64 records) and compared byte for byte, so a hash collision never
// drops a key. This is why a reader source is copied to a temporary file first.
//
// # Runs and idempotence
//
// A run has a name (RunSpec.Run, or a generated "run-20261127-101500-ab12"). Batch
// boundaries depend only on the input, the batch size and the CSV column, so batch i of a
// run is always the same keys, with asynq task ID tasks.BatchID(run, i). Each batch is
// registered in the ledger (ledger.Ledger.RegisterBatch, idempotent) before it is
// enqueued (a batch begun is finished even when the context is cancelled, so Ctrl-C leaves
// no batch registered but not queued), and a batch that is already queued answers
// asynq.ErrTaskIDConflict. Submitting the same input under the same run again — after a
// crash, an error or Ctrl-C — therefore enqueues only the batches that are missing and
// never a key twice. Until a submission completes, its run's intake is open in the ledger
// (the run ledger's OpenIntake, sealed by RecordIntake): a run cut off part way is
// ledger.RunIncomplete, never done, however its batches fare. A resubmission with
// another ERP connection, actor type, batch size, CSV column or queue is refused
// ([ErrRunMismatch]), and so is other input: a batch already queued is read back and
// compared, and one holding other keys stops the submission (batches enqueued before it
// stay). Completed batches stay known to asynq for tasks.DefaultRetention (7 days);
// resubmit within that time.
//
// # Throughput
//
// The input is streamed; registering and enqueueing run on ProducerConfig.Concurrency
// goroutines sharing one connection pool. On a 2-core machine with Redis on the same host,
// one million keys take about 1 s with a peak RSS of about 35 MB (BenchmarkSubmit,
// measure.sh) where one asynq Enqueue per key would take 30 to 50 s (BenchmarkNaive).
package intake
