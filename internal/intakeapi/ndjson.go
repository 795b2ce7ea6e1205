package intakeapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// ndjsonNames are the members of an NDJSON line the API reads; others are ignored (an
// export may carry more), but not one that differs from these only in case.
var ndjsonNames = []string{"key"}

// maxNDJSONLine bounds one NDJSON line (as intake bounds a plain line).
const maxNDJSONLine = 1 << 20

// lineError is a body line that cannot be read: it refuses the whole request (400), and
// nothing is enqueued because the body is refused while it is still being spooled.
type lineError struct {
	Line   int
	Reason string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// ndjsonHint is what a valid line looks like.
const ndjsonHint = `want one JSON object a line, such as {"key": "10042"}`

// ndjsonReader turns application/x-ndjson ({"key": "..."} a line) into one key a line, the
// input intake reads. Every input line becomes exactly one output line (a blank one stays
// blank), so intake's line numbers are the body's.
type ndjsonReader struct {
	br   *bufio.Reader
	line int
	out  []byte // converted, n.out[n.off:] not yet read
	off  int
	long []byte // a line longer than the reader's buffer, being collected
	err  error
}

func newNDJSONReader(r io.Reader) *ndjsonReader {
	return &ndjsonReader{br: bufio.NewReaderSize(r, 64<<10), out: make([]byte, 0, 64<<10)}
}

func (n *ndjsonReader) Read(p []byte) (int, error) {
	for len(n.out) == n.off {
		if n.err != nil {
			return 0, n.err
		}
		n.fill()
	}
	c := copy(p, n.out[n.off:])
	n.off += c
	if n.off == len(n.out) {
		n.out, n.off = n.out[:0], 0
	}
	return c, nil
}

// fill converts lines until about 32 KiB of output are ready or the input ends.
func (n *ndjsonReader) fill() {
	n.out = n.out[:0]
	for len(n.out) < 32<<10 && n.err == nil {
		b, err := n.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(n.long)+len(b) > maxNDJSONLine {
				n.err = &lineError{Line: n.line + 1, Reason: fmt.Sprintf("longer than %d MiB", maxNDJSONLine>>20)}
				return
			}
			n.long = append(n.long, b...)
			continue
		}
		if n.long != nil {
			b = append(n.long, b...)
			n.long = nil
		}
		if err != nil && err != io.EOF {
			n.err = err // the body's own error: the line it cut is not a line
			return
		}
		if len(b) > 0 {
			n.line++
			if e := n.convert(b); e != nil {
				n.err = e
				return
			}
		}
		if err != nil {
			n.err = err // io.EOF
		}
	}
}

// convert appends the key of one line, and a line break, to out.
func (n *ndjsonReader) convert(b []byte) error {
	if n.line == 1 {
		b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		n.out = append(n.out, '\n')
		return nil
	}
	if key, ok := plainKey(b); ok {
		n.out = append(n.out, key...)
		n.out = append(n.out, '\n')
		return nil
	}
	if b[0] != '{' {
		return &lineError{Line: n.line, Reason: "not a JSON object: " + ndjsonHint}
	}
	var rec struct {
		Key jsontext.Value `json:"key"`
	}
	if err := decodeObject(b, &rec, ndjsonNames, false); err != nil {
		return &lineError{Line: n.line, Reason: fmt.Sprintf("%v; %s", err, ndjsonHint)}
	}
	if len(rec.Key) == 0 || rec.Key.Kind() == 'n' {
		return &lineError{Line: n.line, Reason: `no "key" field: ` + ndjsonHint}
	}
	var key string
	if rec.Key.Kind() != '"' || json.Unmarshal(rec.Key, &key) != nil {
		return &lineError{Line: n.line, Reason: `"key" is not a string (quote numbers: {"key": "10042"})`}
	}
	if i := strings.IndexAny(key, "\r\n"); i >= 0 {
		return &lineError{Line: n.line, Reason: fmt.Sprintf("the key holds a line break at byte %d; an external key is one line", i)}
	}
	n.out = append(n.out, key...)
	n.out = append(n.out, '\n')
	return nil
}

// plainKey reads the common line {"key": "10042"} (blanks anywhere between the tokens)
// without decodeObject, which costs several allocations a line. It reports false for
// anything else (escapes, other members, invalid UTF-8), which decodeObject then reads
// with the same result or refuses.
func plainKey(b []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(b, []byte("{"))
	if !ok {
		return nil, false
	}
	if rest, ok = bytes.CutPrefix(skipBlanks(rest), []byte(`"key"`)); !ok {
		return nil, false
	}
	if rest, ok = bytes.CutPrefix(skipBlanks(rest), []byte(":")); !ok {
		return nil, false
	}
	if rest, ok = bytes.CutPrefix(skipBlanks(rest), []byte(`"`)); !ok {
		return nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, false
	}
	key := rest[:end]
	for _, c := range key {
		if c == '\\' || c < 0x20 {
			return nil, false
		}
	}
	if !utf8.Valid(key) || string(skipBlanks(rest[end+1:])) != "}" {
		return nil, false
	}
	return key, true
}

func skipBlanks(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}
