package tasks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
)

// Class is what an error means for the work that hit it. Classify is the one place that
// decides it.
type Class int

// The classes. The zero value, ClassNone, is the class of a nil error.
const (
	ClassNone Class = iota
	// ClassTransient: the service or the network failed for a moment; the same call may
	// well succeed later.
	ClassTransient
	// ClassThrottled: the service asked us to slow down (HTTP 429, a Retry-After), flow
	// control could not send the call in time, or a circuit breaker is open. Retried later
	// without using up retries, and never dead-lettered for it.
	ClassThrottled
	// ClassAuth: SuperOffice refused our credentials after the client's own ticket refresh.
	// A configuration outage: every batch would fail the same way.
	ClassAuth
	// ClassPermanent: the same call can never succeed (invalid key, malformed batch, a
	// client-side SOAP fault, ...). Dead-lettered at once.
	ClassPermanent
	// ClassBusiness: SuperOffice answered IsOk=false: the connector refused the batch.
	ClassBusiness
)

var classNames = [...]string{"none", "transient", "throttled", "auth", "permanent", "business"}

// String returns the lower-case name used in logs, metrics labels and dead letters.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// MarshalText prints the name.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// ParseClass maps a name from String back to its Class.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if strings.EqualFold(s, n) {
			return Class(i), nil
		}
	}
	return ClassNone, fmt.Errorf("unknown class %q: want one of transient, throttled, auth, permanent, business", s)
}

// BusinessError is SuperOffice's IsOk=false answer as an error: the call worked, the
// connector refused the batch.
type BusinessError struct {
	ErrorCode       string
	TechExplanation string
	UserExplanation string
	Status          erpsync.QuoteStatus
}

func (e *BusinessError) Error() string {
	var b strings.Builder
	b.WriteString("business failure")
	if e.ErrorCode != "" {
		b.WriteString(" ")
		b.WriteString(e.ErrorCode)
	}
	switch {
	case e.TechExplanation != "":
		b.WriteString(": ")
		b.WriteString(erpsync.Truncate(e.TechExplanation, 300))
	case e.UserExplanation != "":
		b.WriteString(": ")
		b.WriteString(erpsync.Truncate(e.UserExplanation, 300))
	}
	return b.String()
}

// Error is what Handler.ProcessTask returns when a batch did not succeed this time. asynq
// shows its message in the task's LastErr; RetryDelay and IsFailure read its Class and
// RetryAfter. A dead-lettered batch's Error wraps asynq.SkipRetry, so asynq archives it.
type Error struct {
	Class   Class
	BatchID string
	Keys    int
	// RetryAfter is the least wait before the next attempt: a server's Retry-After, the
	// auth hold or the systemic hold. Zero leaves it to the backoff policy.
	RetryAfter time.Duration
	// Attempt is the business-failure count of the batch (ClassBusiness only).
	Attempt int
	// Dead is true when the batch's keys were recorded as dead letters.
	Dead bool
	// Err is the cause.
	Err error

	msg string
}

func (e *Error) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return e.Class.String() + ": " + e.Err.Error()
}

// LastErrorClass reads the class back from an Error's message as asynq keeps it (a task's
// LastErr: "auth: login refused …"); ClassNone for a message that does not start with a
// class, such as a dead letter's reason or an error that was never classified. Error
// writes that prefix; this is its one reader.
func LastErrorClass(msg string) Class {
	name, _, ok := strings.Cut(msg, ": ")
	if !ok {
		return ClassNone
	}
	c, err := ParseClass(name)
	if err != nil {
		return ClassNone
	}
	return c
}

// Unwrap returns the cause, and asynq.SkipRetry for a dead-lettered batch.
func (e *Error) Unwrap() []error {
	if e.Dead {
		return []error{e.Err, asynq.SkipRetry}
	}
	return []error{e.Err}
}

// Classify decides what err means. nil is ClassNone; an error of unknown origin is
// ClassTransient, so it is retried a bounded number of times and then dead-lettered with
// its message, rather than lost or retried forever. ClassTable documents the rules.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var te *Error
	if errors.As(err, &te) {
		return te.Class
	}
	var be *BusinessError
	if errors.As(err, &be) {
		return ClassBusiness
	}
	// Flow control's own answers: a breaker is open, or a wait for the rate limit, a slot or
	// a cool-down would pass the deadline. Checked before the transport errors that wrap them.
	var pe *flow.PausedError
	var we *flow.WaitError
	if errors.As(err, &pe) || errors.As(err, &we) {
		return ClassThrottled
	}
	// ErrResponseTooLarge is permanent although SuperOffice did the work: the resync ran and
	// only its reply was too big to read. Asking again repeats the resync for the same
	// oversized reply, so the batch is dead-lettered with the reason; an operator raises the
	// client's cap or requeues the keys (requeued batches are re-packed).
	if errors.Is(err, ErrInvalidBatch) || errors.Is(err, erpsync.ErrEmptyKeys) || errors.Is(err, erpsync.ErrResponseTooLarge) {
		return ClassPermanent
	}
	var ke *erpsync.KeyError
	if errors.As(err, &ke) {
		return ClassPermanent
	}
	if errors.Is(err, erpsync.ErrLoginRefused) || erpsync.IsTicketError(err) {
		return ClassAuth
	}
	var he *erpsync.HTTPError
	if errors.As(err, &he) {
		return classifyHTTP(he)
	}
	var fe *erpsync.FaultError
	if errors.As(err, &fe) {
		if fe.Sender {
			return ClassPermanent
		}
		return ClassTransient
	}
	// Transport failures (refused, reset, timeouts), protocol errors (a reply that cannot be
	// parsed, e.g. a proxy's page with status 200), other NetServer exceptions and context
	// errors: the next attempt may well succeed.
	return ClassTransient
}

func classifyHTTP(he *erpsync.HTTPError) Class {
	s := he.StatusCode
	switch {
	case s == http.StatusTooManyRequests || he.RetryAfter > 0:
		return ClassThrottled
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		// NetServer's SOAP endpoints use no HTTP authentication; a 401/403 comes from a
		// gateway or firewall in front of it and holds for every batch alike. Over REST a
		// 403 is an app without the ErpSync grant (a 401 is the transport's ticket error).
		return ClassAuth
	case s == http.StatusMisdirectedRequest:
		// The Online tenant moved to another host: every batch gets the same answer until
		// the tenant URL is corrected, so batches are held, loudly, rather than
		// dead-lettered at once.
		return ClassAuth
	case s == http.StatusRequestTimeout:
		return ClassTransient
	case s == http.StatusNotImplemented || s == http.StatusHTTPVersionNotSupported:
		return ClassPermanent
	case s >= 500:
		return ClassTransient
	default:
		// 3xx (wrong URL, redirect not followed), 4xx (415 wrong content type, 404 wrong path,
		// 400 bad request): the same request will get the same answer.
		return ClassPermanent
	}
}

// RetryAfter returns the least wait err asks for: an *Error's RetryAfter, a flow hold's, or
// an erpsync.HTTPError's Retry-After (the header itself is read once, by erpsync.RetryAfter);
// zero if none.
func RetryAfter(err error) time.Duration {
	var te *Error
	if errors.As(err, &te) && te.RetryAfter > 0 {
		return te.RetryAfter
	}
	var pe *flow.PausedError
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	var we *flow.WaitError
	if errors.As(err, &we) {
		return we.RetryAfter
	}
	var he *erpsync.HTTPError
	if errors.As(err, &he) {
		return he.RetryAfter
	}
	return 0
}

// IsFailure is the asynq.Config.IsFailure for the worker: throttling and auth holds are
// not failures, so they do not use up a batch's retries (asynq still archives a task whose
// retries are already used up, whatever the error; the handler dead-letters it first).
func IsFailure(err error) bool {
	if err == nil {
		return false
	}
	switch Classify(err) {
	case ClassThrottled, ClassAuth:
		return errors.Is(err, asynq.SkipRetry)
	}
	return true
}

// ClassRule is one row of ClassTable.
type ClassRule struct {
	Condition string `json:"condition"`
	Class     Class  `json:"class"`
	Action    string `json:"action"`
	// Example is a representative error; a test checks Classify(Example) == Class.
	Example error `json:"-"`
}

// Actions per class, as the handler carries them out.
const (
	actionTransient = "retried in-process (fast layer, within the task timeout), then by asynq with exponential backoff; dead letter when asynq's retries are used up"
	actionThrottled = "retried by asynq after max(backoff, Retry-After); does not use up retries and is never dead-lettered (on a batch's last attempt it is relayed as fresh halves)"
	actionPaused    = "held: retried by asynq at the next probe; uses up no retries and is never dead-lettered, however long the outage"
	actionAuth      = "logged at error level and counted; held: asynq retries every AuthHold without using up retries, for at most AuthMaxHold, then dead letter"
	actionPermanent = "dead letter at once (asynq.SkipRetry)"
	actionBusiness  = "batch of n>1 keys: split into halves (no retry used); single key: retried BusinessRetries times, then dead letter; while the connection's breaker is open (same ErrorCode on nearly every batch): held, no split"
)

// ClassTable is the classification, row by row, in the order Classify applies it. The
// README's table is generated from it and a test checks each Example against Classify.
var ClassTable = []ClassRule{
	{"IsOk=false answer (business failure)", ClassBusiness, actionBusiness,
		&BusinessError{ErrorCode: "ERP_REJECTED", TechExplanation: "customer blocked in ERP"}},
	{"circuit breaker open: SuperOffice unavailable (5 systemic failures in a row: transport errors, 5xx, maintenance pages), or >= 90% of the last 20 batches of an ERP connection failed with one ErrorCode", ClassThrottled, actionPaused,
		&flow.PausedError{ErpConnection: 3, Reason: "ErrorCode \"ERP_DOWN\" on nearly every batch", RetryAfter: 5 * time.Second}},
	{"flow control: waiting for the rate limit, a concurrency slot or a cool-down would pass the call's deadline", ClassThrottled, actionThrottled,
		&flow.WaitError{Reason: "rate limit", RetryAfter: time.Second}},
	{"malformed batch, unknown actor type, invalid payload", ClassPermanent, actionPermanent,
		fmt.Errorf("%w: actor type Unknown", ErrInvalidBatch)},
	{"empty key list (would resync everything)", ClassPermanent, actionPermanent, erpsync.ErrEmptyKeys},
	{"response larger than the client's cap: the resync ran, but repeating it yields the same oversized reply; raise the cap or requeue in smaller batches", ClassPermanent, actionPermanent,
		fmt.Errorf("read reply: %w (cap 8 MiB)", erpsync.ErrResponseTooLarge)},
	{"invalid external key", ClassPermanent, actionPermanent, &erpsync.KeyError{Index: 3, Key: "a\x01b", Reason: "contains control character"}},
	{"login refused by SuperOffice", ClassAuth, actionAuth, fmt.Errorf("system user login: %w", erpsync.ErrLoginRefused)},
	{"NetServer exception about the ticket, after the client's own refresh and retry", ClassAuth, actionAuth,
		&erpsync.ExceptionError{Type: "SoSecurityException", Message: "Ticket expired", TicketRejected: true}},
	{"HTTP 429, or any reply with Retry-After", ClassThrottled, actionThrottled, &erpsync.HTTPError{StatusCode: 429, RetryAfter: 30 * time.Second}},
	{"HTTP 401/403 (SOAP: from a gateway, NetServer SOAP uses no HTTP auth; REST: 403, the app is not granted the ErpSync agent)", ClassAuth, actionAuth, &erpsync.HTTPError{StatusCode: 403}},
	{"HTTP 421 Misdirected Request: the Online tenant moved to another host; correct SUPEROFFICE_URL", ClassAuth, actionAuth, &erpsync.HTTPError{StatusCode: 421}},
	{"HTTP 408, 500, 502, 503, 504 and other 5xx (maintenance page, proxy errors)", ClassTransient, actionTransient, &erpsync.HTTPError{StatusCode: 503}},
	{"HTTP 501, 505", ClassPermanent, actionPermanent, &erpsync.HTTPError{StatusCode: 501}},
	{"other HTTP 3xx/4xx (404 wrong URL, 415 wrong content type, 400)", ClassPermanent, actionPermanent, &erpsync.HTTPError{StatusCode: 404}},
	{"SOAP fault from the client side (Client/Sender, ActionNotSupported, DeserializationFailed, VersionMismatch, MustUnderstand)", ClassPermanent, actionPermanent,
		&erpsync.FaultError{Code: "s:Client", Subcode: "a:ActionNotSupported", HTTPStatus: 500, Sender: true}},
	{"SOAP fault from the server side (Server/Receiver, InternalServiceFault, unknown codes)", ClassTransient, actionTransient,
		&erpsync.FaultError{Code: "s:Server", HTTPStatus: 500}},
	{"connection refused or reset, DNS, TLS, timeouts", ClassTransient, actionTransient, &erpsync.TransportError{Err: errors.New("dial tcp 10.0.0.1:443: connect: connection refused")}},
	{"unparseable reply (protocol error)", ClassTransient, actionTransient, &erpsync.ProtocolError{HTTPStatus: 200, Reason: "not a SOAP envelope"}},
	{"other NetServer exception", ClassTransient, actionTransient, &erpsync.ExceptionError{Type: "SoServerException", Message: "Database timeout"}},
	{"task deadline exceeded, or any other error", ClassTransient, actionTransient, context.DeadlineExceeded},
}

// ClassTableMarkdown renders ClassTable as the README's Markdown table.
func ClassTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| condition | class | what happens |\n|---|---|---|\n")
	for _, r := range ClassTable {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", mdCell(r.Condition), r.Class, mdCell(r.Action))
	}
	return b.String()
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
