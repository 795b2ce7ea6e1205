// Package flow is erpresync's flow control: it protects one SuperOffice tenant from all the
// workers that share a Redis, whichever API they use.
//
// A Control holds, per tenant and in Redis, so that every worker process sees the same:
//
//   - one rate limit (GCRA, github.com/go-redis/redis_rate) counting every HTTP request to
//     the tenant: calls, logins and the repeat after a ticket refresh;
//   - one concurrency cap per ERP connection: a semaphore of leased slots, so a slot of a
//     worker killed with kill -9 comes back within one lease;
//   - a shared cool-down: a 429 or 503 with Retry-After holds every worker off the tenant
//     for that long;
//   - circuit breakers: one per tenant that opens on systemic failures of the exchange
//     (transport errors, 5xx and maintenance pages), and one per ERP connection that opens
//     when nearly every batch fails with the same ErrorCode (a misconfigured connector).
//     An open breaker stops calls from all workers and lets one probe through at a growing
//     interval; a successful probe closes it. A request asks the breakers again right before
//     it is sent, after every wait: nothing that waited goes out once a breaker opened, and
//     what goes out while one is half-open is its one probe, shared by all workers.
//
// The limits, the cool-down and the tenant breaker live in an http.RoundTripper
// (Control.Transport) around the transport of the one *http.Client the worker hands to
// every SuperOffice client, so they sit below both APIs. The ERP connection of a request
// travels in its context (WithConnection). The connection breaker is fed by the task
// handler, which alone knows a batch's answer (Control.Admit, Control.Outcome).
//
// A systemic failure counts toward the tenant's breaker only once Config.Explain (the
// tenant's state, when it is followed) has not explained it: a tenant in maintenance is a
// hold, not an outage.
//
// Waiting for a token or a slot is not a failure. A wait that would not end well before the
// request's deadline returns a *WaitError instead, and an open breaker a *PausedError; the
// task handler holds the batch without using up a retry and never dead-letters it for that.
//
// The package imports no transport and reads no environment.
package flow
