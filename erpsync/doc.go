// Package erpsync is the vocabulary every erpresync package speaks about SuperOffice's
// ErpSync agent, whichever transport carries the call: actor types, quote statuses, the
// external-key rule, the resync Result with its Changes, and the transport-neutral errors a
// classifier needs (*HTTPError with Retry-After and a truncated body, *TransportError,
// *ExceptionError with TicketRejected, *FaultError, *ProtocolError, *KeyError and the
// sentinels ErrEmptyKeys, ErrResponseTooLarge and ErrLoginRefused).
//
// It is a leaf: it imports nothing of erpresync's. The transports (soap, rest) produce its
// types; tasks, intake, nightly and the commands consume them and never import a transport.
package erpsync
