// Package soap speaks SOAP over HTTP to SuperOffice NetServer for erpresync: one of the two
// transports (package rest is the other) that the worker's wiring chooses between.
//
// It builds and sends the ErpSync.ForceResyncExternal envelope (SOAP 1.1 by
// default, as NetServer's basicHttpBinding expects), parses the reply
// tolerantly (SOAP 1.1 and 1.2, by namespace, never by prefix), and turns every
// way a call can fail into a typed error of package erpsync that callers match with
// errors.Is and errors.As: *erpsync.ExceptionError, *erpsync.FaultError,
// *erpsync.HTTPError, *erpsync.TransportError, *erpsync.ProtocolError, *erpsync.KeyError
// and the sentinels erpsync.ErrEmptyKeys, erpsync.ErrResponseTooLarge and
// erpsync.ErrLoginRefused.
//
// Tickets come from an auth.TicketSource (a fixed ticket, an on-site password login or the
// Online system user); what to do when NetServer rejects one (one refresh, one repeat, a
// pause in re-logins when a fresh ticket is rejected too) is auth.Session's rule, shared
// with package rest. The HTTP exchange (no redirects, a capped read, the mapping of
// failures to errors) is internal/httpcall's, through the configured *http.Client.
//
// Imports point down: soap → auth, internal/httpcall → erpsync. The package knows nothing
// of queues, retries or logging. Each call is one attempt, except that a reply saying the
// ticket is invalid or expired is retried once with a fresh ticket. Deciding whether an
// error is permanent, transient, throttling or an auth problem is the caller's job
// (tasks.Classify).
//
// Secrets (tickets, passwords, application tokens, private keys) never appear
// in error text, and the types that hold them print redacted with fmt.
package soap
