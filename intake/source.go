package intake

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/erpresync/erpresync/internal/export"
)

// Source is where a submission's keys come from: a file (Path) or a reader (R), holding one
// key per line or, with CSVColumn set, CSV with the key in one column.
//
// Every key is trimmed of surrounding white space; CRLF line ends and a leading UTF-8 BOM
// are accepted; blank lines (and CSV records whose fields are all blank) are skipped. A CSV
// key is read through export.ParseCSVCell, so that one our exports wrote with a leading
// apostrophe (as '=X) is read back as it was (=X).
//
// A reader (or a path that is not a regular file, such as a pipe) is first copied to a
// temporary file (in ProducerConfig.TempDir), because the producer reads its input more
// than once: strict mode validates everything before it enqueues anything, and the
// duplicate check re-reads earlier keys from the file instead of keeping them in memory.
// The copy needs as much disk as the input and is removed when Submit returns.
type Source struct {
	// Name labels the input in messages (KeyError.File) and in the ledger. Zero value: Path,
	// or "stdin" for a reader.
	Name string
	// Path is the file to read. Empty: read R.
	Path string
	// R is read to EOF when Path is empty.
	R io.Reader
	// CSVColumn, when set, reads the input as CSV (RFC 4180: quoted fields may hold commas,
	// quotes and line breaks) and takes the key from this column: a header name (the first
	// record is then the header) or a 0-based index. Empty: one key per line.
	CSVColumn string
	// CSVHeader says that the first record is a header when CSVColumn is an index; it is
	// skipped. A column given by name always implies a header.
	CSVHeader bool
	// CSVComma is the field delimiter. Zero value: ','.
	CSVComma rune
}

func (s Source) name() string {
	switch {
	case s.Name != "":
		return s.Name
	case s.Path != "":
		return s.Path
	default:
		return "stdin"
	}
}

// format is the resolved way of reading records from an input.
type format struct {
	csv    bool
	comma  rune
	column int  // 0-based key column (CSV)
	header bool // the first record is a header (CSV)
	label  string
}

// Validate reports what is wrong with s before any input is read: neither a path nor a
// reader, a delimiter that cannot separate CSV fields, a blank or negative CSV column. The
// error wraps ErrConfig. (A column name the header lacks is found only when Submit reads it.)
func (s Source) Validate() error {
	if s.Path == "" && s.R == nil {
		return fmt.Errorf("%w: source has neither a path nor a reader", ErrConfig)
	}
	if s.CSVComma != 0 && (s.CSVComma == '"' || s.CSVComma == '\r' || s.CSVComma == '\n' || !utf8.ValidRune(s.CSVComma) || s.CSVComma == utf8.RuneError) {
		return fmt.Errorf("%w: CSV delimiter %q: want a single character other than a quote or a line break", ErrConfig, s.CSVComma)
	}
	if s.CSVColumn != "" && strings.TrimSpace(s.CSVColumn) == "" {
		return fmt.Errorf("%w: CSV column %q is blank: want a header name or a 0-based index", ErrConfig, s.CSVColumn)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(s.CSVColumn)); err == nil && n < 0 {
		return fmt.Errorf("%w: CSV column %d: an index counts from 0", ErrConfig, n)
	}
	return nil
}

// resolveFormat decides how to read f: for a CSV column given by name it reads the header.
func (s Source) resolveFormat(f io.ReaderAt) (format, error) {
	if s.CSVColumn == "" {
		return format{}, nil
	}
	ft := format{csv: true, comma: s.CSVComma, header: s.CSVHeader}
	if ft.comma == 0 {
		ft.comma = ','
	}
	col := strings.TrimSpace(s.CSVColumn)
	if n, err := strconv.Atoi(col); err == nil { // not negative: see Validate
		ft.column = n
		ft.label = "column " + strconv.Itoa(n)
		return ft, nil
	}
	ft.header = true
	ft.label = "column " + strconv.Quote(col)
	r := csv.NewReader(&boundedReader{r: skipBOM(io.NewSectionReader(f, 0, 1<<62)), limit: maxRecord})
	r.Comma = ft.comma
	r.FieldsPerRecord = -1
	hdr, err := r.Read()
	if err == io.EOF {
		return format{}, fmt.Errorf("%w: %s: CSV column %q: the input is empty, so it has no header", ErrConfig, s.name(), col)
	}
	if err != nil {
		return format{}, fmt.Errorf("%s: reading CSV header: %w", s.name(), csvError(err, 1, 1))
	}
	for i, h := range hdr {
		if strings.TrimSpace(h) == col {
			ft.column = i
			return ft, nil
		}
	}
	for i, h := range hdr {
		if strings.EqualFold(strings.TrimSpace(h), col) {
			ft.column = i
			return ft, nil
		}
	}
	names := make([]string, len(hdr))
	for i, h := range hdr {
		names[i] = strconv.Quote(strings.TrimSpace(h))
	}
	return format{}, fmt.Errorf("%w: %s:1: CSV header has no column %q; it has %s (or give a 0-based index)", ErrConfig, s.name(), col, strings.Join(names, ", "))
}

var bom = []byte("\xEF\xBB\xBF")

// skipBOM returns r without a leading UTF-8 byte order mark.
func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, bom) {
		br.Discard(3)
	}
	return br
}

// record is one input record: a line, or a CSV record.
type record struct {
	key   []byte // trimmed key; valid until the next call of next
	line  int    // 1-based line of the key
	blank bool   // blank line, blank CSV record or the header: not a key
	// problem, when set, makes the record invalid without looking at the key.
	problem error
}

// recordReader reads records from an offset of an input file. Every record (including
// blank lines and the header) has an index; checkpoints map an index to an offset so that
// any record can be read again.
type recordReader interface {
	next(rec *record) error // io.EOF at the end
	// offset is the byte offset where the next record starts; line is its 1-based line.
	offset() int64
	line() int
}

// maxLine bounds how much of one line is kept; a longer line is reported invalid.
const maxLine = 1 << 20

// maxRecord bounds a CSV record: encoding/csv holds a whole record in memory, and one
// unterminated quote makes the rest of the input a single field.
const maxRecord = 16 << 20

// lineReader reads one key per line.
type lineReader struct {
	br  *bufio.Reader
	off int64
	ln  int
	buf []byte
	bom int64 // BOM bytes skipped but not yet counted in off
}

func newLineReader(r io.ReaderAt, off int64, line, bufSize int) *lineReader {
	lr := &lineReader{br: bufio.NewReaderSize(io.NewSectionReader(r, off, 1<<62), bufSize), off: off, ln: line}
	if off == 0 {
		if b, err := lr.br.Peek(3); err == nil && bytes.Equal(b, bom) {
			lr.br.Discard(3)
			lr.bom = 3
		}
	}
	return lr
}

func (l *lineReader) offset() int64 { return l.off }
func (l *lineReader) line() int     { return l.ln }

func (l *lineReader) next(rec *record) error {
	*rec = record{line: l.ln}
	b, err := l.br.ReadSlice('\n')
	n := len(b)
	if err == bufio.ErrBufferFull {
		// A line longer than the buffer: collect it, but keep at most maxLine bytes.
		l.buf = append(l.buf[:0], b...)
		for err == bufio.ErrBufferFull {
			b, err = l.br.ReadSlice('\n')
			n += len(b)
			if len(l.buf) < maxLine {
				l.buf = append(l.buf, b[:min(len(b), maxLine-len(l.buf))]...)
			}
		}
		b = l.buf
	}
	if err != nil && err != io.EOF {
		return err
	}
	if n == 0 && err == io.EOF {
		return io.EOF
	}
	l.off += int64(n) + l.bom
	l.bom = 0
	l.ln++
	if n > maxLine {
		rec.problem = &reasonError{fmt.Sprintf("line longer than %d bytes", maxLine), ErrLineTooLong}
		rec.key = bytes.TrimSpace(b[:min(len(b), 40)])
		return nil
	}
	rec.key = bytes.TrimSpace(b)
	rec.blank = len(rec.key) == 0
	return nil
}

// csvReader reads the key column of CSV records.
type csvReader struct {
	r      *csv.Reader
	br     *boundedReader // under r
	base   int64          // offset where r started
	ln0    int            // line where r started
	off    int64
	ln     int
	col    int
	header bool // the next record is the header
	label  string
}

func newCSVReader(ra io.ReaderAt, off int64, line int, ft format) *csvReader {
	var src io.Reader = io.NewSectionReader(ra, off, 1<<62)
	base := off
	if off == 0 {
		var head [3]byte
		if n, _ := ra.ReadAt(head[:], 0); n == 3 && bytes.Equal(head[:], bom) {
			src = io.NewSectionReader(ra, 3, 1<<62)
			base = 3
		}
	}
	br := &boundedReader{r: src}
	r := csv.NewReader(br)
	r.Comma = ft.comma
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	return &csvReader{r: r, br: br, base: base, ln0: line, off: off, ln: line, col: ft.column, header: off == 0 && ft.header, label: ft.label}
}

func (c *csvReader) offset() int64 { return c.off }
func (c *csvReader) line() int     { return c.ln }

func (c *csvReader) next(rec *record) error {
	*rec = record{line: c.ln}
	// The record may use maxRecord bytes from where it starts (csv.Reader's buffer reads
	// at most 4 KiB ahead, so that much has always been allowed already).
	c.br.limit = c.r.InputOffset() + maxRecord
	fields, err := c.r.Read()
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return csvError(err, c.ln0, c.ln)
	}
	c.off = c.base + c.r.InputOffset()
	last := len(fields) - 1
	l, _ := c.r.FieldPos(last)
	c.ln = c.ln0 + l - 1 + strings.Count(fields[last], "\n") + 1
	first, _ := c.r.FieldPos(0)
	rec.line = c.ln0 + first - 1
	if c.header {
		c.header = false
		rec.blank = true
		return nil
	}
	if c.col >= len(fields) {
		allBlank := true
		for _, f := range fields {
			if strings.TrimSpace(f) != "" {
				allBlank = false
				break
			}
		}
		rec.blank = allBlank
		if !allBlank {
			rec.problem = &reasonError{fmt.Sprintf("record has %d field(s); %s is missing", len(fields), c.label), ErrMissingField}
		}
		return nil
	}
	kl, _ := c.r.FieldPos(c.col)
	rec.line = c.ln0 + kl - 1
	// A key our CSV exports wrote with a leading ' (export.CSVCell) is read back as it was.
	rec.key = []byte(export.ParseCSVCell(strings.TrimSpace(fields[c.col])))
	if len(rec.key) == 0 {
		rec.blank = true
		for _, f := range fields {
			if strings.TrimSpace(f) != "" {
				rec.blank = false
				break
			}
		}
	}
	return nil
}

// csvError turns a csv.ParseError of a reader that started at line ln0, or a record that
// started at line ln and grew too long, into a malformed-input error; other errors are
// returned as they are.
func csvError(err error, ln0, ln int) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &malformedError{fmt.Sprintf("line %d, column %d: %v", pe.Line+ln0-1, pe.Column, pe.Err)}
	}
	if errors.Is(err, errRecordTooLong) {
		return &malformedError{fmt.Sprintf("line %d: a CSV record longer than %d MiB (an unterminated quoted field?)", ln, maxRecord>>20)}
	}
	return err
}

// errRecordTooLong is boundedReader's error.
var errRecordTooLong = errors.New("CSV record too long")

// boundedReader reads r up to limit bytes, then fails with errRecordTooLong.
type boundedReader struct {
	r     io.Reader
	n     int64 // bytes read
	limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n >= b.limit {
		return 0, errRecordTooLong
	}
	p = p[:min(int64(len(p)), b.limit-b.n)]
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

func newRecordReader(f io.ReaderAt, off int64, line int, ft format, bufSize int) recordReader {
	if ft.csv {
		return newCSVReader(f, off, line, ft)
	}
	return newLineReader(f, off, line, bufSize)
}

// reasonError is a record problem found while reading: the reason a person reads, and the
// sentinel a program matches.
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.reason }
func (e *reasonError) Unwrap() error { return e.err }
