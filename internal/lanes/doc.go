// Package lanes gives every tenant a fair share of the worker fleet: per-tenant lanes in
// Redis in front of asynq.
//
// asynq dequeues by running one Redis script per queue in a weighted shuffle, fixes its queue
// set when a server starts and is not built for thousands of queues, so one queue per tenant
// does not scale to a thousand tenants; one shared queue lets a tenant's million-key night
// delay everyone behind it. Lanes sit in between:
//
//   - A producer hands jobs to Queue.Enqueue or Queue.EnqueueMany instead of asynq. A job waits
//     in its tenant's lane (a Redis list, the tenant's keys hash-tagged so Redis Cluster spreads
//     tenants over its nodes) and the tenant is marked due.
//   - Queue.Run, one per worker process, keeps asynq's target queues short: while their
//     pending tasks are under Config.LowWater it takes the next job round-robin over the due
//     tenants and enqueues it into asynq with the job's ID as TaskID. All dispatchers share the
//     state in Redis (Lua scripts, leases), so any number of them cooperate.
//   - A rate-limited tenant's jobs are handed over no faster than its rate (Config.Spacing),
//     so they do not wait for their tokens in worker slots.
//   - A tenant that may not go now (Config.Ready: rate limit, open breaker, paused), is at its
//     cap of dispatched-but-unfinished jobs (Config.MaxInFlight; the handler reports the end of
//     a task with Queue.Done) or is unknown (Config.Known: removed from the tenants file, its
//     lane held, never dead-lettered) is skipped and looked at again when it may go, so it
//     holds no worker slot that another tenant could use.
//
// Nothing lost, nothing twice: a job leaves its lane only after asynq has it. A dispatcher
// takes a job under a lease (Config.Lease); one killed between take and enqueue leaves the job
// leased, and after the lease another dispatcher takes it again. asynq answering
// ErrTaskIDConflict means it already has the task, and the job leaves the lane. That answer
// holds while asynq keeps the task, so a job's asynq retention is at least Config.Lease.
//
// Idle costs next to nothing: tenants with empty lanes are not in the schedule at all, a
// not-ready tenant is looked at when it said it may go, and a dispatcher with nothing to do
// blocks on one wake-up list (Config.MaxIdle at most) instead of polling per tenant.
//
// # Key schema
//
// All times are microseconds of the Redis server's clock (TIME), so dispatchers on different
// machines agree. PREFIX is Config.Prefix, TENANT the tenant ID.
//
//	PREFIX:{t:TENANT}:lane      list   job IDs in arrival order (an ID whose job is gone is skipped)
//	PREFIX:{t:TENANT}:jobs      hash   job ID -> encoded job, while queued or leased
//	PREFIX:{t:TENANT}:leased    zset   job ID -> lease end: taken by a dispatcher, not yet confirmed in asynq
//	PREFIX:{t:TENANT}:inflight  zset   job ID -> lease end: taken and not yet Done (the MaxInFlight count)
//	PREFIX:{t:TENANT}:capped    string set while the tenant waits at its cap; Done wakes it
//	PREFIX:{sched}:due          zset   tenant -> when it may be looked at next (only tenants with work)
//	PREFIX:{sched}:wake         list   wake-up tokens for idle dispatchers
//
// The package imports nothing of erpresync; asynq's task and pending-list keys are read where
// asynq's API has no cheap call for them (keys.go), and a test checks them against asynq.
package lanes
