// Package netserversim is a stand-in for SuperOffice NetServer: the one external system the
// erpresync pipeline calls, simulated faithfully enough that the soap and rest clients, the task
// handlers and whole-process tests can be proven against it without a SuperOffice tenant.
// It is an independent implementation of the server side, written from the protocol
// reference (shared/superoffice-erpsync.md; "§" below refers to it), and imports no package
// of ours.
//
// Use it in-process like net/http/httptest:
//
//	sim := netserversim.MustStart(netserversim.Config{Users: map[string]string{"SAL0": "pw"}})
//	defer sim.Close()
//	// point the client under test at sim.URL = http://127.0.0.1:PORT/Cust12345
//	sim.Fail503(2)           // inject faults while it serves
//	... run the code under test ...
//	sim.ResyncCount("10001") // how many IsOk=true replies for this key were delivered
//
// or as a process: cmd/netserver-sim prints its URL and serves the same handler plus the
// admin API below.
//
// # Endpoints
//
// Paths match case-insensitively; {tenant} is Config.Tenant (default "Cust12345"; "/" means
// the site root), or any one segment with Config.AnyTenant (many tenants of a tenants file
// on one simulator, sharing its users, tickets and counters).
//
//	POST /{tenant}/Remote/Services88/ErpSync.svc      SOAPAction .../ErpSync/ForceResyncExternal
//	POST /{tenant}/Remote/Services88/SoPrincipal.svc  SOAPAction .../SoPrincipal/AuthenticateUsernamePassword
//	POST /{tenant}/api/v1/Agents/ErpSync/ForceResyncExternal  the same call over the WebAPI (JSON)
//	POST /Login/api/PartnerSystemUser/Authenticate    Online system-user login (JSON)
//	GET  /login/.well-known/jwks                      key that verifies the login JWTs and notifications
//	GET  /api/state/{ContextIdentifier}               the tenant state API (§9)
//
// # Tenant state, hosts and notifications
//
// With Config.Hosts > 0, Start listens on that many tenant hosts besides RootURL, which then
// plays the environment (sod.superoffice.com: login, JWKS, state API, never the tenant). The
// tenant starts on HostURLs[0]; Move(i) moves it; its paths on any other host answer 421
// "Wrong subdomain used to access tenant" (§8). SetTenantState scripts its state; outside
// Running and OnlineMaintenance its paths answer 503 with the maintenance page. The state API
// answers {ContextIdentifier, Endpoint, State (name), IsRunning, ValidUntil (now +
// Config.StateValidFor), Api, Version}. Notification/Notify build and POST a state-change
// notification whose Token is an RS256 JWT from the key the JWKS publishes (iss =
// EnvironmentURL, ctx claim = tenant, iat/nbf/exp/jti). POST /_sim/state scripts all of it.
//
// # Strictness (WCF basicHttpBinding)
//
// In WCF's order: non-POST → 405; Content-Type other than text/xml (charset utf-8 or none)
// → 415 with WCF's text; body over Config.MaxRequestBytes → 413; XML that is not well-formed,
// has a DTD, declares a non-UTF-8 encoding, or is not a SOAP 1.1 Envelope with a Body → 400;
// a SOAP 1.2 envelope → 500 s:VersionMismatch fault; SOAPAction (quotes stripped) other than
// the endpoint's one operation → 500 a:ActionNotSupported with the ContractFilter-mismatch
// faultstring. Headers are read only from <s:Header>, by local name and the Services88
// namespace (elements elsewhere under the Envelope are ignored, so the doc generator's
// headers-outside-Header form arrives without a ticket); an unknown header marked
// s:mustUnderstand → 500 s:MustUnderstand; a repeated known header → 500 s:Client. Body
// parameters must be a subsequence of the WSDL order (ErpConnectionId, ErpActorType,
// ExternalKeys; UserName, Password), each at most once, all in Services88; otherwise, or for an
// actor type that is not an exact enum name, a non-int ErpConnectionId, or key items other than
// Arrays-namespace <string> → 500 a:DeserializationFailed. xsi:type attributes are ignored and
// omitted parameters default (0, Unknown, no keys).
//
// # The WebAPI (REST) endpoint
//
// The same call, faults and counters as ErpSync.svc, JSON in and out (§8). In order: non-POST
// → 405; Content-Type other than application/json (charset utf-8 or none) → 415; body over
// Config.MaxRequestBytes → 413; an Authorization header that is not "SOTicket <ticket>"
// (scheme case-insensitive) → 401 with the error object {"Error": true, "ErrorType",
// "ErrorMessage", "ErrorSource"}; a body that is not one JSON object with ErpConnectionId
// (an Int32), ErpActorType (an enum name, case-insensitive, or its number) and ExternalKeys
// (an array; [] resyncs everything), or with any other member, → 400 {"Message": "The request
// is invalid.", "MessageDetail": …}. Then, as for SOAP: Online mode requires the SO-AppToken
// header; a wrong app token or an unknown, expired or invalidated ticket → 401 with the error
// object; Config.ErpSyncNotGranted → 403 with the error object; otherwise 200 with the
// PluginResponse (every member present, TableRight null, FieldProperties {}, Changes null for
// a poison batch, Status left out with Config.OmitStatus). Member names match
// case-insensitively, as JSON.NET's do. OUR ASSUMPTIONS: the 401/403 split, the error
// objects' texts, and 400 (not 200 with Message) for a malformed body.
//
// # Replies
//
// WCF's shape (§4.3): h:-prefixed headers ExceptionInfo, ExtraInfo, Succeeded, TimeZone, null
// members as i:nil="true"; Response with TableRight and FieldProperties nil, IsOk,
// UserExplanation/TechExplanation/ErrorCode (nil when empty), Changes with AddedRecords,
// UpdatedRecords, DeletedRecords, then Status (omitted with Config.OmitStatus, as before
// NetServer 10.1.9). Each distinct key yields one change item, ExpectedChange(actor, key). A
// batch with no keys is "resync all": IsOk=true, empty Changes, counted in ResyncAll.
//
// Online mode (Config.Online) requires ApplicationToken = Config.AppToken on every SOAP call;
// on-site ignores it. A missing, unknown, expired or invalidated ticket, a wrong application
// token, or Config.ErpSyncNotGranted answers HTTP 200 with ExceptionInfo filled,
// Succeeded=false and a nil Response (§4.4). AuthenticateUsernamePassword answers
// AuthenticationSucceeded=true with Credentials/Ticket for a configured user, and
// AuthenticationSucceeded=false (not an exception) otherwise. The system-user login checks
// ApplicationToken, ContextIdentifier = tenant, ReturnTokenType JWT, the timestamp and the
// RSA-SHA256 PKCS#1 v1.5 signature of SignedSystemToken against Config.SystemUserPublicKey, and
// answers {IsSuccessful, ErrorMessage, Token} with Token an RS256 JWT whose claim
// http://schemes.superoffice.net/identity/ticket is a fresh ticket.
//
// # Fault injection
//
// Methods on Server, safe while serving: Fail503(n), DropNext(n), Throttle(n, retryAfter)
// consume one per ErpSync call (SOAP or REST) before processing (precedence: outage, drop, 503, 429,
// random); SetLatency / SetLatencyFunc delay a processed reply; SetSlowBody trickles it;
// SetPoison makes batches holding a key answer IsOk=false, Status=Error; SetOutage and
// AddOutageWindow take the tenant (ErpSync.svc and SoPrincipal.svc) down with 503;
// SetMisdirected answers every ErpSync call with 421 Misdirected Request (a moved tenant);
// SetRandomFaults fails calls at a rate from a seeded generator; ExpireTickets invalidates
// every ticket; ClearFaults undoes all but tickets. Faults other than outages apply to
// ErpSync.svc only, so logins keep working while the operation under test fails.
//
// # Counting
//
// Counts returns a Snapshot: calls by Outcome, logins, resync-all calls, change items by
// table and kind, and per key Resynced (delivered IsOk=true replies) and Seen (processed
// requests, whatever their outcome). A request is processed once its body parsed; 503, 429 and
// dropped calls never are. A reply counts as delivered only if it was written: counters are
// committed before the last byte and rolled back (to OutcomeUndelivered) if that write fails,
// so a client that read a whole reply always finds it counted, and a client that gave up
// during latency or a slow body never does. All counters change under one lock: exact under
// concurrency. Reset zeroes them.
//
// # Admin API (Config.Admin; on by default in cmd/netserver-sim)
//
//	GET  /_sim/counts          Snapshot as JSON
//	POST /_sim/reset           Reset
//	GET  /_sim/faults          FaultState as JSON
//	POST /_sim/faults          FaultRequest as JSON, e.g. {"fail503":2,"poison":["K9"],"latency":"200ms"}
//	POST /_sim/tickets         {"ticket":"7T:..."}
//	POST /_sim/expire-tickets  ExpireTickets
//	POST /_sim/state           StateRequest as JSON, e.g. {"state":"OfflineMaintenance","host":1}
//
// # Documented behaviour vs our assumptions
//
// Documented by SuperOffice or the WSDL [C]: SOAP 1.1 only; endpoint paths; SOAPActions;
// Services88 and Arrays namespaces; headers ApplicationToken, Credentials/Ticket, TimeZone in
// <Header>; body element order; ErpActorType and QuoteStatus names; PluginResponse members
// and Status after Changes in newer servers; errors in ExceptionInfo + Succeeded rather than
// faults; login refusal as AuthenticationSucceeded=false; ApplicationToken ignored on-site;
// system-user token signing and the ticket claim; "7T:" ticket prefix.
//
// Standard WCF behaviour assumed to hold for NetServer [I]: 415 text, VersionMismatch,
// ActionNotSupported, DeserializationFailed and MustUnderstand faults and their strings; strict
// parameter order; i:nil for null members; h: header prefixes; HTTP 200 for ExceptionInfo
// replies; exact-name enum parsing.
//
// OUR ASSUMPTIONS (undocumented, configurable where it matters): ExceptionType
// "SoSecurityException" and Message "Ticket expired or invalid" for bad tickets, and the
// messages for a bad application token or ErpSync not granted (§4.5, §12); Source "SoCore";
// the 503 maintenance page as non-SOAP HTML; HTTP 429 with Retry-After for throttling —
// SuperOffice documents no status code for throttling (§9); poison-key semantics and
// ErrorCode "ERP_REJECTED"; nil Changes on rejected batches; keys→changes mapping and actor→
// table mapping; duplicate keys counted once per call; a 6 h fixed ticket TTL by default;
// system-token timestamp window (10 min back, 5 min ahead); login refusal texts; JWT issuer,
// audience and extra claims; 4 MiB request limit; the minimal SoPrincipalCarrier; 405 for GET;
// 503 while the tenant is not running; the state API's ValidUntil interval, its answer for an
// unknown tenant, and State as a name; the notification token's claims and 5-minute lifetime.
//
// Left out: ?wsdl, the other 48 ErpSync operations and other SoPrincipal operations (they
// answer ActionNotSupported), the PartnerSystemUserService SOAP variant of the login, the
// WebAPI's other endpoints and its Basic and Bearer schemes, UTF-16 requests, and the TimeZone header's effect.
package netserversim
