package intake

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Callers branch on them with errors.Is; the package wraps them with context.
var (
	// ErrInvalidKeys is wrapped by the *ValidationError that Submit returns in strict mode when
	// the input holds at least one invalid key. Nothing was enqueued.
	ErrInvalidKeys = errors.New("invalid keys in input")

	// ErrDuplicate is the Err of a *KeyError that reports a key already taken earlier in the
	// same run.
	ErrDuplicate = errors.New("duplicate key")

	// ErrMissingField is the Err of a *KeyError for a CSV record that has no field at the key
	// column.
	ErrMissingField = errors.New("missing CSV field")

	// ErrLineTooLong is the Err of a *KeyError for a line longer than 1 MiB; only its first
	// 40 bytes are reported.
	ErrLineTooLong = errors.New("line too long")

	// ErrMalformed is wrapped by the error for input that cannot be read as CSV (a stray
	// quote, an unterminated quoted field, a record over 16 MiB). The submission stops
	// there; batches enqueued before stay enqueued.
	ErrMalformed = errors.New("malformed CSV")

	// ErrRunMismatch means a run name was submitted again with different parameters (ERP
	// connection, actor type, batch size, input format or queue), or with other input (a
	// batch already queued under the run holds other keys): its batches would not match the
	// first submission's, so resubmitting could enqueue keys twice or drop them.
	ErrRunMismatch = errors.New("run resubmitted differently")

	// ErrNoKeys means the input held no valid key: it was empty (a failed export, an empty
	// pipe), held only blank lines or a CSV header, or only invalid keys. Submit returns it,
	// wrapped with the run and the input's name, unless RunSpec.AllowEmpty; either way the run
	// is recorded in the ledger with no keys (state ledger.RunEmpty), and nothing is enqueued:
	// an empty key list would make SuperOffice resync everything. The nightly schedule counts
	// it as an empty source.
	ErrNoKeys = errors.New("no keys were read")

	// ErrConfig is wrapped by every error about a ProducerConfig or RunSpec field, or a
	// Source that names a CSV column the header lacks.
	ErrConfig = errors.New("invalid configuration")
)

// KeyError reports one input record that was not taken: an invalid key (too long, not
// UTF-8, a character XML 1.0 cannot carry), a CSV record without the key column, or a
// duplicate (Err is ErrDuplicate). It prints as "FILE:LINE: key "…": REASON".
type KeyError struct {
	File   string `json:"file"`   // Source name, e.g. the file path or "stdin"
	Line   int    `json:"line"`   // 1-based line where the record (or, for CSV, the key field) starts
	Key    string `json:"key"`    // the key as read and trimmed, cut to 40 bytes; may be invalid UTF-8
	Reason string `json:"reason"` // what is wrong, e.g. "longer than 254 characters (300)"
	Err    error  `json:"-"`      // the underlying error: a *erpsync.KeyError, or one wrapping ErrDuplicate, ErrMissingField or ErrLineTooLong
}

func (e *KeyError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(": ")
	if e.Key != "" || !errors.Is(e.Err, ErrMissingField) {
		b.WriteString("key ")
		b.WriteString(strconv.Quote(e.Key))
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

func (e *KeyError) Unwrap() error { return e.Err }

// ValidationError is returned by Submit in strict mode when keys are invalid. It wraps
// ErrInvalidKeys; Errors holds the first MaxReported problems in input order.
type ValidationError struct {
	Invalid int         // how many records were invalid
	Errors  []*KeyError // the first MaxReported of them
}

func (e *ValidationError) Error() string {
	if len(e.Errors) == 0 {
		return fmt.Sprintf("%d invalid keys", e.Invalid)
	}
	s := fmt.Sprintf("%d invalid key", e.Invalid)
	if e.Invalid != 1 {
		s += "s"
	}
	s += "; first: " + e.Errors[0].Error()
	return s + " (strict mode: nothing was enqueued)"
}

func (e *ValidationError) Unwrap() error { return ErrInvalidKeys }

// noKeysError is the ErrNoKeys of an input named name, of size bytes, with the counts of sum.
func noKeysError(name string, size int64, sum Summary) error {
	switch {
	case size == 0:
		return fmt.Errorf("%w: %s is empty", ErrNoKeys, name)
	case sum.Read == 0:
		return fmt.Errorf("%w: %s holds no key (only blank lines or a CSV header)", ErrNoKeys, name)
	default:
		return fmt.Errorf("%w: %s holds %d records, %d invalid, no valid key", ErrNoKeys, name, sum.Read, sum.Invalid)
	}
}

// malformedError is a CSV syntax error; it prints without the sentinel's text.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }
func (e *malformedError) Unwrap() error { return ErrMalformed }
