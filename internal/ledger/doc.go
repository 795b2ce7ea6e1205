// Package ledger is the run ledger: the record of truth, in Redis, of every run's batches,
// key counts, the Changes SuperOffice answered and the dead letters, with the operations an
// operator runs on them (status and changes (package internal/export writes them out), requeue and purge of dead
// letters, repair of lost batches, reconciliation with asynq's archive, retention and
// pruning).
//
// asynq caps its archive and forgets completed tasks; the ledger keeps a run until [Ledger.Prune]
// removes it. Every batch transition is one Lua script over the run's keys, all under the
// run's hash tag (one Redis Cluster slot), so a re-run never double-counts.
//
// The ledger implements tasks.Ledger, the interface through which the handler records each
// batch; it imports package tasks for the payloads (tasks.Batch, tasks.DeadLetter,
// tasks.ChangeItem) and the split helpers used by requeue and repair. It is internal: the
// commands, the intake API and the runs page use it; producers outside this module hand keys
// over through package intake.
package ledger
