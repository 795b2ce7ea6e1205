package soap

import (
	"regexp"
)

// defaultTicketErrorExpr is the default Config.TicketErrorPattern: an ExceptionInfo whose
// ExceptionType or Message matches it is taken to mean that the ticket is invalid or expired.
// NetServer's exact strings are undocumented, so the pattern is deliberately broad.
const defaultTicketErrorExpr = `(?i)security|credential|ticket|authenticat|expired`

var defaultTicketErrorPattern = regexp.MustCompile(defaultTicketErrorExpr)

// maxInnerExceptions bounds how deep InnerException chains are followed.
const maxInnerExceptions = 8
