// Package runreport derives what people read about a run from the ledger's record of it:
// percent done (rounded down, never 100 while a key is pending), rate and ETA, the batches
// waiting in asynq's retry set and when they are due, the batches held for an auth failure,
// and the open circuit breakers that hold the run. `enqueue status`, the intake API, the
// runs page and `worker demo` all build their report here ([Report]), so they always agree.
//
// The ledger (package internal/ledger) is the record of truth and knows nothing of this
// package; runreport reads it, asynq's retry set and flow control's pauses.
package runreport
