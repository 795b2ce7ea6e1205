package soap

import (
	"regexp"

	"github.com/erpresync/erpresync/erpsync"
)

// defaultTicketErrorExpr is the default Config.TicketErrorPattern: an ExceptionInfo whose
// ExceptionType or Message matches it is taken to mean that the ticket is invalid or expired.
// NetServer's exact strings are undocumented, so the pattern is deliberately broad.
const defaultTicketErrorExpr = `(?i)security|credential|ticket|authenticat|expired`

var defaultTicketErrorPattern = regexp.MustCompile(defaultTicketErrorExpr)

// maxInnerExceptions bounds how deep InnerException chains are followed.
const maxInnerExceptions = 8

// senderFault is erpsync.SenderFault: whether a fault's codes say the request is wrong.
func senderFault(codes ...string) bool { return erpsync.SenderFault(codes...) }
