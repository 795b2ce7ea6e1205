package soap

import (
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Callers branch on them with errors.Is; the package wraps them with context.
var (
	// ErrEmptyKeys is returned by ForceResyncExternal for an empty key list: NetServer reads
	// an empty ExternalKeys array as "resync everything". Use ForceResyncAll to mean that.
	ErrEmptyKeys = errors.New("empty external key list would resync everything (use ForceResyncAll)")

	// ErrResponseTooLarge means the reply was longer than Config.MaxResponseBytes; the
	// wrapping error names the cap.
	ErrResponseTooLarge = errors.New("response too large")

	// ErrLoginRefused means the login service answered and refused the credentials
	// (AuthenticationSucceeded=false, or IsSuccessful=false for a system user). Retrying
	// with the same credentials will not help.
	ErrLoginRefused = errors.New("login refused")
)

// DefaultTicketErrorExpr is the default Config.TicketErrorPattern: an ExceptionInfo whose
// ExceptionType or Message matches it is taken to mean that the ticket is invalid or expired.
// NetServer's exact strings are undocumented, so the pattern is deliberately broad.
const DefaultTicketErrorExpr = `(?i)security|credential|ticket|authenticat|expired`

var defaultTicketErrorPattern = regexp.MustCompile(DefaultTicketErrorExpr)

// maxInnerExceptions bounds how deep InnerException chains are followed.
const maxInnerExceptions = 8

// ExceptionError is a NetServer exception reported in the ExceptionInfo SOAP header
// (usually with Succeeded=false and HTTP 200). StackTrace and Parameters are dropped.
type ExceptionError struct {
	Type         string          // ExceptionType, e.g. "SoSecurityException"
	Message      string          // Message, in English
	FriendlyText string          // FriendlyText, localised for end users
	Source       string          // Source
	Inner        *ExceptionError // InnerException; nil if none

	// TicketRejected is true when Type or Message of this exception or an inner one matched
	// the ticket error pattern (Config.TicketErrorPattern for a Client, else
	// DefaultTicketErrorExpr): the ticket is invalid or expired.
	TicketRejected bool
}

func (e *ExceptionError) Error() string {
	var b strings.Builder
	b.WriteString("NetServer exception")
	for i, x := 0, e; x != nil && i < 3; i, x = i+1, x.Inner {
		if i > 0 {
			b.WriteString("; inner")
		}
		if x.Type != "" {
			b.WriteString(" ")
			b.WriteString(truncate(x.Type, 120))
		}
		if x.Message != "" {
			b.WriteString(": ")
			b.WriteString(truncate(x.Message, 300))
		}
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
// rejected (see ExceptionError.TicketRejected). A Client has already re-authenticated and
// retried once when it returns such an error (or, during its re-login pause after a fresh
// ticket was rejected too, deliberately has not), so callers classify it as an auth failure.
func IsTicketError(err error) bool {
	var e *ExceptionError
	return errors.As(err, &e) && e.TicketRejected
}

// FaultError is a SOAP Fault in the reply body. WCF sends faults with HTTP 500 for
// infrastructure errors (wrong SOAPAction, deserialisation failures, internal errors).
type FaultError struct {
	Code       string // faultcode (1.1) or Code/Value (1.2) as sent, e.g. "s:Client"
	Subcode    string // innermost Code/Subcode/Value (1.2 only), e.g. "a:ActionNotSupported"
	Reason     string // faultstring (1.1) or the first Reason/Text (1.2)
	HTTPStatus int    // HTTP status of the reply; 0 when parsed without HTTP
}

func (e *FaultError) Error() string {
	var b strings.Builder
	b.WriteString("SOAP fault")
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(truncate(e.Code, 120))
	}
	if e.Subcode != "" {
		b.WriteString("/")
		b.WriteString(truncate(e.Subcode, 120))
	}
	if e.HTTPStatus != 0 {
		b.WriteString(" (HTTP ")
		b.WriteString(strconv.Itoa(e.HTTPStatus))
		b.WriteString(")")
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(truncate(e.Reason, 300))
	}
	return b.String()
}

// maxErrorBody is how much of a non-SOAP reply HTTPError keeps.
const maxErrorBody = 512

// HTTPError is a reply that is not a SOAP envelope and not a success: an IIS or proxy error
// page, a 415 for the wrong content type, a 429 or 503 from throttling or maintenance.
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
			b.WriteString(truncate(e.ContentType, 80))
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
// understood: malformed XML, not a SOAP envelope, no Response element, a value of the
// wrong type, or JSON that is not the expected shape.
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
		s += ": " + truncate(e.Err.Error(), 300)
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ProtocolError) Unwrap() error { return e.Err }

// truncate cuts s to at most n bytes at a UTF-8 boundary, marking the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return cut(s, n) + "…"
}

// cut returns the longest prefix of s of at most n bytes that ends at a UTF-8 boundary.
func cut[T string | []byte](s T, n int) T {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP-date. It returns zero
// for an absent, invalid or past value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(365*24*time.Hour/time.Second) {
			n = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
