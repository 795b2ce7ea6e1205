// Package tasks is the asynq-facing side of erpresync, in asynq's own convention: the task
// types and payloads that carry ERP external keys, their constructors, the handler that
// calls SuperOffice's ErpSync.ForceResyncExternal for each batch, and the one classifier
// that decides what an error means (permanent, transient, throttled, auth, business).
//
// The promise it keeps: every key that goes in comes out either resynced, with the
// Changes SuperOffice answered on record, or visibly dead-lettered with its reason.
//
// Flow: a producer registers each batch in the run ledger (package internal/ledger) and
// enqueues [NewResyncTask] (or hands single keys over with [NewTrickleTask], which asynq
// groups and [NewAggregator] merges into a batch). [Handler.ProcessTask] makes one call per
// batch, retries transient errors in-process (retry.Policy.Do), leaves long-horizon retries
// to asynq ([RetryDelay], [IsFailure]), splits a batch that SuperOffice refuses
// (IsOk=false) to isolate poison keys ([HalfTasks]), and dead-letters what cannot succeed.
// With a [Flow] (package flow), it asks the ERP connection's circuit breaker before each
// call and tells it the answer, and holds batches while a breaker is open: such holds use
// no retries and never end in dead letters.
//
// A payload names its tenant ([Batch.Tenant]; empty for the implicit tenant of the
// SUPEROFFICE_* settings), and a worker serving several tenants hands each task to its
// tenant's own handler through a [Router], which holds the batches of a tenant it does not
// serve. Run names are per tenant: the ledger keeps a tenant's run under [RunKey].
//
// The handler records every step through the [Ledger] interface it declares here; the
// ledger imports this package for the payloads ([Batch], [DeadLetter], [ChangeItem]) and
// the split helpers, never the other way round. The ledger is internal to this module, so
// outside it the package serves producers (the task constructors and payloads); the
// handler is the worker's. Each transition is one atomic step in the
// ledger, so re-runs after a crash never double-count. The handler's tests run against the
// real ledger and live beside it, in internal/ledger.
package tasks
