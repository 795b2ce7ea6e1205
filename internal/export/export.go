package export

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/erpresync/erpresync/tasks"
)

// Format is how change items and dead letters are written out for other systems.
type Format string

// The export formats.
const (
	// CSV is RFC 4180 CSV with a header line.
	CSV Format = "csv"
	// JSONL is one JSON object a line (NDJSON).
	JSONL Format = "jsonl"
)

// ParseFormat accepts "csv" and "jsonl"; its error names the valid ones.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case CSV, JSONL:
		return f, nil
	}
	return "", fmt.Errorf("%q: want csv or jsonl", s)
}

// ContentType is the media type of the format, for HTTP.
func (f Format) ContentType() string {
	if f == JSONL {
		return "application/x-ndjson"
	}
	return "text/csv; charset=utf-8"
}

// csvFormulaStart holds the first characters that make a spreadsheet (Excel, LibreOffice,
// Google Sheets) read a CSV cell as a formula — OWASP's CSV injection list: = + - @, tab
// and carriage return — and the apostrophe, which CSVCell itself puts first.
const csvFormulaStart = "=+-@\t\r'"

// CSVCell is how every CSV we export writes a value (CSVWriter calls it on every field): a
// value starting with one of = + - @, a tab or a carriage return gets a leading apostrophe,
// so that a spreadsheet shows it as text instead of running it (an ERP key
// =HYPERLINK(...) is written '=HYPERLINK(...), which Excel displays as =HYPERLINK(...)).
// A value that starts with an apostrophe gets one more, so that ParseCSVCell gives every
// value back exactly.
func CSVCell(s string) string {
	if s != "" && strings.IndexByte(csvFormulaStart, s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// ParseCSVCell undoes CSVCell: it removes a leading apostrophe that is followed by one of
// = + - @ ', a tab or a carriage return, and returns anything else as it is. Intake reads CSV
// keys through it, so that a CSV we exported can be submitted again as it is.
func ParseCSVCell(s string) string {
	if len(s) > 1 && s[0] == '\'' && strings.IndexByte(csvFormulaStart, s[1]) >= 0 {
		return s[1:]
	}
	return s
}

// CSVWriter writes RFC 4180 CSV records with every field through CSVCell: the one writer of
// our CSV exports.
type CSVWriter struct {
	w   *csv.Writer
	rec []string
}

// NewCSVWriter returns a CSVWriter on w.
func NewCSVWriter(w io.Writer) *CSVWriter { return &CSVWriter{w: csv.NewWriter(w)} }

// Write writes one record; fields is not changed.
func (c *CSVWriter) Write(fields []string) error {
	c.rec = c.rec[:0]
	for _, f := range fields {
		c.rec = append(c.rec, CSVCell(f))
	}
	return c.w.Write(c.rec)
}

// Flush writes out what is buffered and reports the first write error.
func (c *CSVWriter) Flush() error {
	c.w.Flush()
	return c.w.Error()
}

// changeHeader is the CSV header of change items; the JSON names are ChangeItem's tags.
var changeHeader = []string{"run", "table", "record_id", "kind", "task_id", "at"}

// ChangeWriter writes change items to an io.Writer in one Format, the header (CSV)
// first. Call Flush at the end. Not safe for concurrent use.
type ChangeWriter struct {
	csv    *CSVWriter
	json   *json.Encoder
	header bool
}

// NewChangeWriter returns a ChangeWriter on w; an unknown format writes CSV.
func NewChangeWriter(w io.Writer, f Format) *ChangeWriter {
	if f == JSONL {
		return &ChangeWriter{json: json.NewEncoder(w)}
	}
	return &ChangeWriter{csv: NewCSVWriter(w)}
}

// Write writes one item.
func (c *ChangeWriter) Write(it tasks.ChangeItem) error {
	if c.json != nil {
		return c.json.Encode(it)
	}
	if err := c.writeHeader(); err != nil {
		return err
	}
	return c.csv.Write([]string{it.Run, it.Table, strconv.Itoa(int(it.RecordID)), it.Kind, it.TaskID, it.At.UTC().Format(time.RFC3339Nano)})
}

func (c *ChangeWriter) writeHeader() error {
	if c.header {
		return nil
	}
	c.header = true
	return c.csv.Write(changeHeader)
}

// Flush writes out what is buffered (and the CSV header of an empty export) and reports
// the first write error.
func (c *ChangeWriter) Flush() error {
	if c.csv == nil {
		return nil
	}
	if err := c.writeHeader(); err != nil {
		return err
	}
	return c.csv.Flush()
}
