package httpcall

import (
	"errors"
	"net/url"
	"strings"

	"github.com/erpresync/erpresync/erpsync"
)

// Redacted replaces a secret in printed values and error text.
const Redacted = "[REDACTED]"

// minSecretLen keeps very short secrets from redacting ordinary words.
const minSecretLen = 4

// maxInnerExceptions bounds how deep InnerException chains are redacted.
const maxInnerExceptions = 8

// Redactor replaces secrets that a server echoed back in text that ends up in errors.
type Redactor []string

// S returns v with every secret of at least four bytes replaced by Redacted.
func (rd Redactor) S(v string) string {
	for _, sec := range rd {
		if len(sec) >= minSecretLen && strings.Contains(v, sec) {
			v = strings.ReplaceAll(v, sec, Redacted)
		}
	}
	return v
}

// Apply redacts, in place, the text fields of the *erpsync.ExceptionError (and its inner
// exceptions) and *erpsync.FaultError in err's chain.
func (rd Redactor) Apply(err error) {
	var ex *erpsync.ExceptionError
	if errors.As(err, &ex) {
		for i, x := 0, ex; x != nil && i <= maxInnerExceptions; i, x = i+1, x.Inner {
			x.Type, x.Message, x.FriendlyText, x.Source = rd.S(x.Type), rd.S(x.Message), rd.S(x.FriendlyText), rd.S(x.Source)
		}
	}
	var f *erpsync.FaultError
	if errors.As(err, &f) {
		f.Code, f.Subcode, f.Reason = rd.S(f.Code), rd.S(f.Subcode), rd.S(f.Reason)
	}
}

// RedactedIfSet prints a secret for String methods: `""` when empty, else Redacted.
func RedactedIfSet(s string) string {
	if s == "" {
		return `""`
	}
	return Redacted
}

// SetOrNil prints whether an optional field (a client, a key) is set.
func SetOrNil(set bool) string {
	if set {
		return "set"
	}
	return "<nil>"
}

// RedactURL prints a URL with any password in it redacted.
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid URL>"
	}
	return u.Redacted()
}
