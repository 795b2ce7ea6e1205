// Package soap speaks SOAP over HTTP to SuperOffice NetServer for erpresync.
//
// It builds and sends the ErpSync.ForceResyncExternal envelope (SOAP 1.1 by
// default, as NetServer's basicHttpBinding expects), parses the reply
// tolerantly (SOAP 1.1 and 1.2, by namespace, never by prefix), and turns every
// way a call can fail into a typed error that callers match with errors.Is and
// errors.As: *erpsync.ExceptionError, *erpsync.FaultError, *erpsync.HTTPError, *erpsync.TransportError,
// *erpsync.ProtocolError, *erpsync.KeyError and the sentinels erpsync.ErrEmptyKeys, erpsync.ErrResponseTooLarge
// and erpsync.ErrLoginRefused.
//
// Tickets come from a TicketSource: StaticTicket for a fixed ticket,
// PasswordAuth for on-site SoPrincipal logins and SystemUserAuth for the
// SuperOffice Online system-user flow. The last two cache the ticket, share it
// between concurrent callers and fetch exactly one new ticket after it is
// invalidated.
//
// The package sits at the bottom of the pipeline: it knows nothing of queues,
// retries or logging. Each call is one attempt, except that a reply saying the
// ticket is invalid or expired is retried once with a fresh ticket. Deciding
// whether an error is permanent, transient, throttling or an auth problem is
// the caller's job.
//
// Secrets (tickets, passwords, application tokens, private keys) never appear
// in error text, and the types that hold them print redacted with fmt.
package soap
