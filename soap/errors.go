package soap

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultTicketErrorExpr is the default Config.TicketErrorPattern: an ExceptionInfo whose
// ExceptionType or Message matches it is taken to mean that the ticket is invalid or expired.
// NetServer's exact strings are undocumented, so the pattern is deliberately broad.
const DefaultTicketErrorExpr = `(?i)security|credential|ticket|authenticat|expired`

var defaultTicketErrorPattern = regexp.MustCompile(DefaultTicketErrorExpr)

// maxInnerExceptions bounds how deep InnerException chains are followed.
const maxInnerExceptions = 8

// Fault codes (local names, SOAP 1.1 faultcode and WCF subcodes) that say the request
// itself is wrong.
var senderFaults = map[string]bool{
	"client": true, "sender": true, "versionmismatch": true, "mustunderstand": true,
	"actionnotsupported": true, "deserializationfailed": true, "contractfilter": true,
	"invalidmessage": true, "dataencodingunknown": true,
}

// senderFault reports whether a fault's codes say the request itself is wrong, such as
// "s:Client", "a:ActionNotSupported" or "Client.Authentication". "s:Server", "Receiver",
// "a:InternalServiceFault" and unknown codes are server-side.
func senderFault(codes ...string) bool {
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
