// Package rest speaks SuperOffice's WebAPI (REST) to call the ErpSync agent for erpresync:
// POST {tenant}/api/v1/Agents/ErpSync/ForceResyncExternal with a JSON body, the ticket in
// "Authorization: SOTicket <ticket>" and the application token in SO-AppToken.
//
// It is the REST twin of package soap and behaves the same towards its callers: the same
// Resyncer method set, the same typed errors from package erpsync, the same ticket rule
// (auth.Session: one refresh and one repeat after a 401), and the same HTTP exchange
// (internal/httpcall: no redirects, a capped read, every request through the configured
// *http.Client). Replies are parsed tolerantly: members in any order or absent, unknown
// members ignored, member names matched case-insensitively, "Changes": null, Status as a
// name (Warn and Warning both) or a number. What SuperOffice's agent endpoints send
// instead of an answer becomes an error a classifier can act on:
//
//   - 200 with null (the documented "a failed call returns NULL"): *erpsync.ProtocolError;
//   - 200 with {"Message", "MessageDetail"} or {"Error": true, ...}: *erpsync.ExceptionError;
//   - 401: *erpsync.ExceptionError with TicketRejected, after one refresh and repeat;
//   - 403: the app lacks the ErpSync grant (the agent is "Online Restricted"), an
//     *erpsync.HTTPError (an auth failure for the classifier);
//   - 421 Misdirected Request: the tenant moved to another host, an *erpsync.HTTPError
//     whose message names the tenant and says so (an auth-class configuration outage: held,
//     not dead-lettered at once, until SUPEROFFICE_URL is corrected);
//   - any other non-2xx status: an *erpsync.HTTPError (with Retry-After), joined with the
//     *erpsync.ExceptionError of an error object when the body is one.
//
// Like soap, the package knows nothing of queues, retries or logging, and secrets never
// appear in error text.
package rest
