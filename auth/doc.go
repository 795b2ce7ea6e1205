// Package auth supplies the NetServer tickets both transports (soap, rest) send, and
// decides in one place what a transport does when the tenant rejects one.
//
// A TicketSource hands out tickets: StaticTicket for a fixed ticket, PasswordAuth for an
// on-site SoPrincipal login (user name and password), SystemUserAuth for SuperOffice
// Online's system user (a signed system token exchanged for a JWT). The last two cache the
// ticket in a TicketCache: concurrent callers share it, exactly one login runs after it is
// invalidated (single flight), a refused login is not asked again for a pause (30 s,
// doubling to 10 min), and an aged ticket keeps serving while the login service is down.
// Session is the transports' side: one call with the current ticket, and on a rejected
// ticket one refresh and one repeat, with a pause in re-logins when even a fresh ticket is
// rejected.
//
// Every login goes through internal/httpcall with the *http.Client of its config, so flow
// control wrapped around that client's Transport counts logins as it counts calls.
//
// The package imports only erpsync and internal/httpcall. Secrets (tickets, passwords,
// application tokens, private keys) never appear in error text, and the types that hold
// them print redacted with fmt.
package auth
