package ledger

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/erpresync/erpresync/tasks"
)

// ExportFormat is how change items and dead letters are written out for other systems.
type ExportFormat string

// The export formats.
const (
	// ExportCSV is RFC 4180 CSV with a header line.
	ExportCSV ExportFormat = "csv"
	// ExportJSONL is one JSON object a line (NDJSON).
	ExportJSONL ExportFormat = "jsonl"
)

// ParseExportFormat accepts "csv" and "jsonl"; its error names the valid ones.
func ParseExportFormat(s string) (ExportFormat, error) {
	switch f := ExportFormat(s); f {
	case ExportCSV, ExportJSONL:
		return f, nil
	}
	return "", fmt.Errorf("%q: want csv or jsonl", s)
}

// ContentType is the media type of the format, for HTTP.
func (f ExportFormat) ContentType() string {
	if f == ExportJSONL {
		return "application/x-ndjson"
	}
	return "text/csv; charset=utf-8"
}

// changeHeader is the CSV header of change items; the JSON names are ChangeItem's tags.
var changeHeader = []string{"run", "table", "record_id", "kind", "task_id", "at"}

// ChangeWriter writes change items to an io.Writer in one ExportFormat, the header (CSV)
// first. Call Flush at the end. Not safe for concurrent use.
type ChangeWriter struct {
	csv    *csv.Writer
	json   *json.Encoder
	header bool
}

// NewChangeWriter returns a ChangeWriter on w; an unknown format writes CSV.
func NewChangeWriter(w io.Writer, f ExportFormat) *ChangeWriter {
	if f == ExportJSONL {
		return &ChangeWriter{json: json.NewEncoder(w)}
	}
	return &ChangeWriter{csv: csv.NewWriter(w)}
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
	c.csv.Flush()
	return c.csv.Error()
}
