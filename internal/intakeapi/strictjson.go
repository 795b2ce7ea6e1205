package intakeapi

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// jsonError is a JSON body, or NDJSON line, that the API refuses: where (the 1-based line
// within the JSON text, and the member's JSON pointer when one is at fault) and why.
type jsonError struct {
	Line   int
	Member string // e.g. "/keys/2"; "" when the fault is not within a member
	Reason string
}

func (e *jsonError) Error() string {
	if e.Member != "" {
		return fmt.Sprintf("member %q: %s", strings.TrimPrefix(e.Member, "/"), e.Reason)
	}
	return e.Reason
}

// decodeObject is the one JSON reader of the API's bodies (POST /v1/keys, every NDJSON
// line): b must be exactly one JSON object. Unlike encoding/json, it refuses what would be
// read as something else than was sent — a member given twice (encoding/json keeps the
// last), a member whose name differs from a documented one only in case (encoding/json
// matches "KEY" to "key"), an invalid escape such as a lone surrogate \ud800 or invalid
// UTF-8 (encoding/json turns both into U+FFFD, and that altered key would be resynced) —
// as well as, with onlyKnown, a member that is not one of names. names are v's members,
// the JSON names of its fields. It uses github.com/go-json-experiment/json (the coming
// encoding/json/v2), whose defaults already refuse duplicate names and invalid UTF-8 and
// match names case-sensitively.
func decodeObject(b []byte, v any, names []string, onlyKnown bool) error {
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	if err := checkNames(dec, names, onlyKnown); err != nil {
		return withLine(b, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return withLine(b, err)
	}
	return nil
}

// checkNames reads one JSON object from dec, checking its member names (the syntax of the
// whole, duplicates and escapes included, is checked by the decoder).
func checkNames(dec *jsontext.Decoder, names []string, onlyKnown bool) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return &jsonError{Reason: fmt.Sprintf("a JSON object is wanted, not %s", kindName(tok.Kind()))}
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String()
		known := false
		for _, n := range names {
			if name == n {
				known = true
			} else if strings.EqualFold(name, n) {
				return &jsonError{Member: "/" + name, Reason: fmt.Sprintf("names are case-sensitive: write %q", n)}
			}
		}
		if !known && onlyKnown {
			return &jsonError{Member: "/" + name, Reason: fmt.Sprintf("unknown: want %s", strings.Join(names, ", "))}
		}
		if err := dec.SkipValue(); err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err == nil {
		return &jsonError{Reason: "more than one JSON value: send one object"}
	} else if !errors.Is(err, errEOF) {
		return err
	}
	return nil
}

var errEOF = func() error {
	_, err := jsontext.NewDecoder(strings.NewReader("")).ReadToken()
	return err
}()

// withLine turns a decoding error into a *jsonError naming the line of b it is on, worded
// for the people who write the producer (JSON kinds, never Go types).
func withLine(b []byte, err error) error {
	var (
		je  *jsonError
		se  *jsontext.SyntacticError
		sme *json.SemanticError
		off int64 = -1
	)
	switch {
	case errors.As(err, &je):
		je.Line = lineOf(b, int64(bytes.Index(b, []byte(`"`+strings.TrimPrefix(je.Member, "/")+`"`))))
		return je
	case errors.As(err, &se):
		off = se.ByteOffset
		reason := "invalid JSON: " + se.Err.Error()
		if strings.Contains(reason, "duplicate") {
			reason = "given twice: give each member once"
		}
		if strings.Contains(reason, "surrogate") || strings.Contains(reason, "UTF-8") {
			reason += " (a key must be valid UTF-8; \\u escapes must pair surrogates)"
		}
		je = &jsonError{Member: string(se.JSONPointer), Reason: reason}
	case errors.As(err, &sme):
		off = sme.ByteOffset
		je = &jsonError{Member: string(sme.JSONPointer), Reason: fmt.Sprintf("want %s, not %s", goKindName(sme.GoType), kindName(sme.JSONKind))}
	case errors.Is(err, errEOF):
		je = &jsonError{Reason: "invalid JSON: the text ends too early"}
		off = int64(len(b))
	default:
		je = &jsonError{Reason: strings.TrimPrefix(strings.TrimPrefix(err.Error(), "jsontext: "), "json: ")}
	}
	je.Line = lineOf(b, off)
	return je
}

// lineOf is the 1-based line of byte off of b (1 when off is unknown).
func lineOf(b []byte, off int64) int {
	if off < 0 || off > int64(len(b)) {
		return 1
	}
	return 1 + bytes.Count(b[:off], []byte{'\n'})
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "this value"
}

func goKindName(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(goKindName(t.Elem()), "a ") + "s"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another value"
}
