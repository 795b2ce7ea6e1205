// Package tenantstate follows one SuperOffice Online tenant: where it lives and whether it
// can be called. It sits beside flow control, below both transports.
//
// A Follower (one per tenant; never global) asks the tenant state API
// (GET {environment}/api/state/{ContextIdentifier}) and shares the answer with every worker
// through Redis until its ValidUntil, bounded to [MinRecheck, MaxRecheck] (MaxPausedRecheck
// while the tenant is not running). One worker asks at a time (a Redis lock, SET NX PX); the
// others wait for its answer. The state API is asked again when ValidUntil passes, and,
// deduplicated fleet-wide, after a 421 "Wrong subdomain used to access tenant", a connection
// error or a 503 from the tenant's host, and on a state-change notification.
//
// Follower.Transport is an http.RoundTripper that sends each request meant for the tenant to
// its current host (SOAP paths under the state's Endpoint, WebAPI paths under its Api),
// repeats a request answered 421 once on the host found anew, and sends nothing while the
// tenant is not running: it returns a *flow.PausedError, which the task handler treats as a
// hold (no retry spent, never a dead letter). After a connection error or a 503 it asks again
// at once and returns the hold when the tenant turns out not to be running; flow control,
// below it, asks the same through Follower.Explain before it counts such a failure toward
// the tenant's breaker.
//
// Pauses reads, from Redis alone, which followed tenants are not running, for the status
// readers (run reports, the runs page).
//
// Notifications is the http.Handler for SuperOffice's "Customer state change" POSTs: it
// verifies the RS256 JWT against the environment's JWKS, then Suspend and Delete pause the
// tenant for every worker and the other change types make the Follower ask the state API
// again.
//
// The package imports no transport and reads no environment.
package tenantstate
