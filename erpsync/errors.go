package erpsync

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Callers branch on them with errors.Is; the package wraps them with context.
var (
	// ErrEmptyKeys is returned by a transport's ForceResyncExternal for an empty key list:
	// NetServer reads an empty ExternalKeys array as "resync everything". A transport's
	// ForceResyncAll means that.
	ErrEmptyKeys = errors.New("empty external key list would resync everything (use ForceResyncAll)")

	// ErrResponseTooLarge means the reply was longer than the transport's reply cap; the
	// wrapping error names the cap.
	ErrResponseTooLarge = errors.New("response too large")

	// ErrLoginRefused means the login service answered and refused the credentials
	// (AuthenticationSucceeded=false, or IsSuccessful=false for a system user). Retrying
	// with the same credentials will not help.
	ErrLoginRefused = errors.New("login refused")
)

// ExceptionError is an exception NetServer reported: the ExceptionInfo SOAP header (usually
// with Succeeded=false and HTTP 200), or the REST error object {"Error": true, "ErrorType",
// "ErrorMessage", "ErrorSource"}. StackTrace and Parameters are dropped.
type ExceptionError struct {
	Type         string          // ExceptionType, e.g. "SoSecurityException"
	Message      string          // Message, in English
	FriendlyText string          // FriendlyText, localised for end users
	Source       string          // Source
	Inner        *ExceptionError // InnerException; nil if none

	// TicketRejected is true when the transport found that the exception means the ticket is
	// invalid or expired (SOAP: Type or Message matched the client's ticket error pattern;
	// REST: HTTP 401).
	TicketRejected bool
}

func (e *ExceptionError) Error() string {
	var b strings.Builder
	b.WriteString("NetServer exception")
	for i, x := 0, e; x != nil && i < 3; i, x = i+1, x.Inner {
		if i > 0 {
			b.WriteString("; inner")
		}
		writePart(&b, " ", x.Type, maxNameInError)
		writePart(&b, ": ", x.Message, maxMessageInError)
	}
	return b.String()
}

// Unwrap returns the inner exception, if any.
func (e *ExceptionError) Unwrap() error {
	if e.Inner == nil {
		return nil
	}
	return e.Inner
}

// IsTicketError reports whether err is (or wraps) an *ExceptionError whose ticket was
// rejected (see ExceptionError.TicketRejected). A transport has already re-authenticated and
// retried once when it returns such an error (or, during its re-login pause after a fresh
// ticket was rejected too, deliberately has not), so callers classify it as an auth failure.
func IsTicketError(err error) bool {
	var e *ExceptionError
	return errors.As(err, &e) && e.TicketRejected
}

// FaultError is a SOAP Fault in the reply body. WCF sends faults with HTTP 500 for
// infrastructure errors (wrong SOAPAction, deserialisation failures, internal errors).
// The REST API has no faults.
type FaultError struct {
	Code       string // faultcode (1.1) or Code/Value (1.2) as sent, e.g. "s:Client"
	Subcode    string // innermost Code/Subcode/Value (1.2 only), e.g. "a:ActionNotSupported"
	Reason     string // faultstring (1.1) or the first Reason/Text (1.2)
	HTTPStatus int    // HTTP status of the reply; 0 when parsed without HTTP

	// Sender is true when the codes say the request itself is wrong (Client/Sender,
	// ActionNotSupported, DeserializationFailed, ...), so repeating it cannot succeed. The
	// transport that parsed the fault decides it; false means a server-side fault.
	Sender bool
}

func (e *FaultError) Error() string {
	var b strings.Builder
	b.WriteString("SOAP fault")
	writePart(&b, " ", e.Code, maxNameInError)
	writePart(&b, "/", e.Subcode, maxNameInError)
	if e.HTTPStatus != 0 {
		b.WriteString(" (HTTP ")
		b.WriteString(strconv.Itoa(e.HTTPStatus))
		b.WriteString(")")
	}
	writePart(&b, ": ", e.Reason, maxMessageInError)
	return b.String()
}

// How much of a name (an exception type, a fault code) and of a message from SuperOffice
// an error's text keeps.
const (
	maxNameInError    = 120
	maxMessageInError = 300
)

// writePart writes sep and s, cut by Truncate to limit, when s is not empty.
func writePart(b *strings.Builder, sep, s string, limit int) {
	if s != "" {
		b.WriteString(sep)
		b.WriteString(Truncate(s, limit))
	}
}

// MaxErrorBody is how much of a reply's body an HTTPError keeps.
const MaxErrorBody = 512

// HTTPError is a reply that is not a success and not an answer the transport understands:
// an IIS or proxy error page, a 415 for the wrong content type, a 429 or 503 from
// throttling or maintenance, a REST error status.
type HTTPError struct {
	StatusCode  int           // HTTP status code
	ContentType string        // Content-Type header as sent
	Body        string        // start of the body, at most 512 bytes, cut at a UTF-8 boundary
	RetryAfter  time.Duration // from Retry-After (seconds or HTTP-date); zero if absent or invalid
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	b.WriteString("HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" ")
		b.WriteString(t)
	}
	if e.ContentType != "" || e.RetryAfter > 0 {
		b.WriteString(" (")
		if e.ContentType != "" {
			b.WriteString("content-type ")
			b.WriteString(Truncate(e.ContentType, 80))
		}
		if e.RetryAfter > 0 {
			if e.ContentType != "" {
				b.WriteString(", ")
			}
			b.WriteString("retry after ")
			b.WriteString(e.RetryAfter.String())
		}
		b.WriteString(")")
	}
	return b.String()
}

// TransportError is a failure to exchange HTTP messages: DNS, connection refused or reset,
// TLS, a connection dropped before or while the reply was read, or a timeout (including
// the context's deadline). Err is the underlying error, typically a *url.Error wrapping a
// net error; errors.Is(err, context.DeadlineExceeded) works through it.
// A cancelled context is not a TransportError: it is returned wrapped as context.Canceled.
type TransportError struct {
	Err error
}

func (e *TransportError) Error() string { return "transport: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// Timeout reports whether the failure was a timeout: a net.Error timeout or an expired
// context deadline.
func (e *TransportError) Timeout() bool {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// ProtocolError is a reply that came back (usually with a 2xx status) but cannot be
// understood: malformed XML or JSON, not a SOAP envelope, no Response element, a value of
// the wrong type.
type ProtocolError struct {
	HTTPStatus int    // HTTP status of the reply; 0 when parsed without HTTP
	Reason     string // what is wrong, e.g. "malformed XML"
	Err        error  // underlying error (e.g. *xml.SyntaxError); may be nil
}

func (e *ProtocolError) Error() string {
	s := "protocol error: " + e.Reason
	if e.HTTPStatus != 0 {
		s += " (HTTP " + strconv.Itoa(e.HTTPStatus) + ")"
	}
	if e.Err != nil {
		s += ": " + Truncate(e.Err.Error(), 300)
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ProtocolError) Unwrap() error { return e.Err }

// Truncate cuts s to at most n bytes at a UTF-8 boundary, marking the cut with "…". Every
// error text that quotes a server's words goes through it.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Cut(s, n) + "…"
}

// Cut returns the longest prefix of s of at most n bytes that ends at a UTF-8 boundary.
func Cut[T string | []byte](s T, n int) T {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Fault codes (local names, SOAP 1.1 faultcode and WCF subcodes) that say the request
// itself is wrong.
var senderFaults = map[string]bool{
	"client": true, "sender": true, "versionmismatch": true, "mustunderstand": true,
	"actionnotsupported": true, "deserializationfailed": true, "contractfilter": true,
	"invalidmessage": true, "dataencodingunknown": true,
}

// SenderFault reports whether a fault's codes say the request itself is wrong, such as
// "s:Client", "a:ActionNotSupported" or "Client.Authentication"; it is how a transport sets
// FaultError.Sender. "s:Server", "Receiver", "a:InternalServiceFault" and unknown codes are
// server-side.
func SenderFault(codes ...string) bool {
	for _, c := range codes {
		if c == "" {
			continue
		}
		local := c
		if i := strings.LastIndexByte(c, ':'); i >= 0 {
			local = c[i+1:]
		}
		local = strings.ToLower(local)
		if senderFaults[local] {
			return true
		}
		if i := strings.IndexByte(local, '.'); i > 0 && senderFaults[local[:i]] {
			return true
		}
	}
	return false
}

// RetryAfter reads a Retry-After value: delay-seconds or an HTTP-date, capped at a year. It
// also reports whether the header holds one at all: "0" and a date in the past are a
// Retry-After of zero (ok), an absent, negative or unreadable value is none (zero, not ok).
// Flow control tells the two apart (a 503 with Retry-After is throttling, without it an
// outage); HTTPError.RetryAfter is its duration. It is the one reader of the header.
func RetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	const maxRetryAfter = 365 * 24 * time.Hour
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}
