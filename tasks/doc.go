// Package tasks is the asynq-facing heart of erpresync: the task types and payloads that
// carry ERP external keys, their constructors, the handler that calls SuperOffice's
// ErpSync.ForceResyncExternal for each batch, the one classifier that decides what an
// error means (permanent, transient, throttled, auth, business), and the Redis ledger
// that records every run's keys, results, Changes and dead letters.
//
// The promise it keeps: every key that goes in comes out either resynced, with the
// Changes SuperOffice answered on record, or visibly dead-lettered with its reason.
//
// Flow: a producer registers each batch with [Ledger.RegisterBatch] and enqueues
// [NewResyncTask] (or hands single keys over with [NewTrickleTask], which asynq groups
// and [NewAggregator] merges into a batch). [Handler.ProcessTask] makes one call per
// batch, retries transient errors in-process (retry.Policy.Do), leaves long-horizon retries
// to asynq ([RetryDelay], [IsFailure]), splits a batch that SuperOffice refuses
// (IsOk=false) to isolate poison keys, and dead-letters what cannot succeed. With a
// [Flow] (package flow), it asks the ERP connection's circuit breaker before each call and
// tells it the answer, and holds batches while a breaker is open: such holds use no retries
// and never end in dead letters. Every state
// change of a batch is one Lua script over the run's keys, so re-runs after a crash never
// double-count. [Ledger.Prune] removes finished runs once they are past their retention
// period ([DefaultLedgerRetention], 30 days; the worker calls it every hour).
package tasks
