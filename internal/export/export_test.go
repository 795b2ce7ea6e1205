package export_test

import (
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/export"
	"github.com/erpresync/erpresync/tasks"
)

func TestParseExportFormat(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"csv", "jsonl"} {
		if f, err := export.ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseExportFormat(%q) = %q, %v", s, f, err)
		}
	}
	_, err := export.ParseFormat("xlsx")
	if err == nil || err.Error() != `"xlsx": want csv or jsonl` {
		t.Errorf("ParseExportFormat(xlsx): %v", err)
	}
}

func TestChangeWriter(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 2, 30, 0, 5, time.UTC)
	items := []tasks.ChangeItem{
		{Run: "r", Table: "contact", RecordID: 7, Kind: tasks.KindAdded, TaskID: "t1", At: at},
		{Run: "r", Table: "person", RecordID: 9, Kind: tasks.KindDeleted, TaskID: "t2", At: at},
	}
	tests := []struct {
		name  string
		f     export.Format
		items []tasks.ChangeItem
		want  string
	}{
		{"csv", export.CSV, items, "run,table,record_id,kind,task_id,at\n" +
			"r,contact,7,added,t1,2026-11-27T02:30:00.000000005Z\n" +
			"r,person,9,deleted,t2,2026-11-27T02:30:00.000000005Z\n"},
		{"empty csv has its header", export.CSV, nil, "run,table,record_id,kind,task_id,at\n"},
		{"jsonl", export.JSONL, items[:1],
			`{"run":"r","table":"contact","record_id":7,"kind":"added","task_id":"t1","at":"2026-11-27T02:30:00.000000005Z"}` + "\n"},
		{"empty jsonl", export.JSONL, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			w := export.NewChangeWriter(&b, tt.f)
			for _, it := range tt.items {
				if err := w.Write(it); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

// TestCSVCell: what a spreadsheet would run as a formula (OWASP's list: = + - @, tab,
// carriage return) is written behind an apostrophe, and so is a value starting with one;
// ParseCSVCell gives every value back exactly.
func TestCSVCell(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`=HYPERLINK("http://x","y")`: `'=HYPERLINK("http://x","y")`,

		"+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)", "\tx": "'\tx", "\rx": "'\rx",
		"'": "''", "'a": "''a", "''": "'''",
		"": "", "a=1": "a=1", "CUST-13": "CUST-13", " =x": " =x", "\n=x": "\n=x",
	} {
		if got := export.CSVCell(in); got != want {
			t.Errorf("CSVCell(%q) = %q, want %q", in, got, want)
		}
		if back := export.ParseCSVCell(export.CSVCell(in)); back != in {
			t.Errorf("ParseCSVCell(CSVCell(%q)) = %q", in, back)
		}
	}
	// What CSVCell never writes is read as it is.
	for _, s := range []string{"'", "'a", "a'=", "'x=1"} {
		if got := export.ParseCSVCell(s); got != s {
			t.Errorf("ParseCSVCell(%q) = %q, want it unchanged", s, got)
		}
	}
}

// TestChangeWriterNeutralisesFormulas: the changes export writes through CSVCell too (a table
// name comes from SuperOffice).
func TestChangeWriterNeutralisesFormulas(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	w := export.NewChangeWriter(&b, export.CSV)
	w.Write(tasks.ChangeItem{Run: "r", Table: "=1+1", RecordID: -7, Kind: "updated", TaskID: "r:b000000", At: time.Unix(0, 0)})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "r,'=1+1,'-7,updated,r:b000000,1970-01-01T00:00:00Z\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("csv:\n%s\nwant a last line %q", b.String(), want)
	}
}
