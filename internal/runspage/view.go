package runspage

import (
	"html/template"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/tasks"
)

// runView is one run as the templates show it.
type runView struct {
	ledger.RunStatus
	// Tenant is the run's tenant, "" the implicit one; the run's URLs carry it as ?tenant=.
	Tenant string
	P      runreport.Progress
	// Href is the run's page, relative to Path, without the tenant.
	Href string
	// Tables are the records changed, one row per CRM table, by name.
	Tables []tableRow
	// Changed counts every record added, updated or deleted.
	Changed int64
}

// tableRow is the records of one CRM table a run changed.
type tableRow struct {
	Table                   string
	Added, Updated, Deleted int64
}

func newRunView(tenant string, st ledger.RunStatus, now time.Time) runView {
	v := runView{RunStatus: st, Tenant: tenant, P: runreport.ProgressOf(st, now), Href: "./" + url.PathEscape(st.Run)}
	names := map[string]bool{}
	for _, byTable := range st.Records {
		for t := range byTable {
			names[t] = true
		}
	}
	for _, t := range slices.Sorted(maps.Keys(names)) {
		row := tableRow{Table: t, Added: st.Records[tasks.KindAdded][t],
			Updated: st.Records[tasks.KindUpdated][t], Deleted: st.Records[tasks.KindDeleted][t]}
		v.Changed += row.Added + row.Updated + row.Deleted
		v.Tables = append(v.Tables, row)
	}
	return v
}

// deadPage is one page of a run's dead letters, oldest first.
type deadPage struct {
	Letters    []tasks.DeadLetter
	Total      int
	Page       int // 1-based
	Pages      int // at least 1
	First      int // 1-based position of Letters[0]; 0 when the page is empty
	Last       int
	Prev, Next int // page numbers; 0 when there is none
}

func newDeadPage(all []tasks.DeadLetter, page, per int) deadPage {
	d := deadPage{Total: len(all), Page: page, Pages: max((len(all)+per-1)/per, 1)}
	if start := (page - 1) * per; start < len(all) {
		end := min(start+per, len(all))
		d.Letters, d.First, d.Last = all[start:end], start+1, end
	}
	if page > 1 {
		d.Prev = min(page-1, d.Pages)
	}
	if page < d.Pages {
		d.Next = page + 1
	}
	return d
}

// funcs are the templates' formatting helpers.
var funcs = template.FuncMap{
	"count":   count,
	"int64":   func(n int) int64 { return int64(n) },
	"decimal": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"when":    when,
	"minute":  minute,
	"state":   stateLabel,
	"tenant":  tenantColumn,
	"oneline": func(s string) string { return strings.Join(strings.Fields(s), " ") },
	"orDash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
}

// count writes n with thousands separators: 1,234,567.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// when is a time in UTC to the second, or "-" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// minute is a time in UTC to the minute, without the zone, for narrow columns.
func minute(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// stateLabel is a run state for people; a state this package does not know shows as is.
func stateLabel(s string) string {
	switch s {
	case ledger.RunActive:
		return "active"
	case ledger.RunDone:
		return "done"
	case ledger.RunDoneWithDead:
		return "done, with dead letters"
	}
	return s
}
