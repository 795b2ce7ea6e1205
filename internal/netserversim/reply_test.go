package netserversim

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/internal/golden"
)

var ticketRE = regexp.MustCompile(`7T:[A-Za-z0-9+/]+=*`)

// TestReplyGolden pins the exact bytes of each reply shape (protocol doc §4.3, §4.4, §7.1 and
// WCF's faults). Refresh with: go test ./internal/netserversim -run TestReplyGolden -update
func TestReplyGolden(t *testing.T) {
	t.Parallel()
	users := map[string]string{testTicketUser: testPassword}
	rs := start(t, Config{Users: users})
	old := start(t, Config{OmitStatus: true})
	rs.SetPoison("G-POISON")
	keys := []string{"G-10001", "G-10002", "G-10003", "G-10004", "G-10005", "G-10006", "G-10007", "G-10008"}

	tests := []struct {
		file string
		run  func() response
	}{
		{"resync_ok.xml", func() response { return resync(t, rs, rs.IssueTicket(), "Customer", keys...) }},
		{"resync_ok_before_10.1.9.xml", func() response { return resync(t, old, old.IssueTicket(), "Person", keys[:3]...) }},
		{"resync_all.xml", func() response { return resync(t, rs, rs.IssueTicket(), "Customer") }},
		{"resync_rejected.xml", func() response { return resync(t, rs, rs.IssueTicket(), "Customer", "G-1", "G-POISON") }},
		{"exception_ticket.xml", func() response { return resync(t, rs, "7T:bogus", "Customer", "G-1") }},
		{"fault_action.xml", func() response {
			return post(t, rs.ErpSyncURL(), ctSOAP11, `"urn:nope"`, resyncRequestXML("", "Customer", "G-1"))
		}},
		{"fault_version.xml", func() response { return post(t, rs.ErpSyncURL(), ctSOAP11, actionQuoted, seedRequest) }},
		{"fault_deserialize.xml", func() response {
			return post(t, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML("", "Contact", "G-1"))
		}},
		{"authenticate_ok.xml", func() response {
			return post(t, rs.SoPrincipalURL(), ctSOAP11, loginQuoted, loginRequestXML("", testTicketUser, testPassword))
		}},
		{"authenticate_refused.xml", func() response {
			return post(t, rs.SoPrincipalURL(), ctSOAP11, loginQuoted, loginRequestXML("", testTicketUser, "wrong"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			r := tc.run()
			if ct := r.header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			golden.Check(t, tc.file, []byte(ticketRE.ReplaceAllString(r.body, "7T:TICKET")+"\n"), *update)
		})
	}
}

// TestReplyShape asserts the §4.3 rules independently of the golden bytes.
func TestReplyShape(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	old := start(t, Config{OmitStatus: true})
	keys := []string{"S-1", "S-2", "S-3", "S-4", "S-5", "S-6", "S-7", "S-8", "S-9", "S-10", "S-2"}

	r := resync(t, rs, rs.IssueTicket(), "Project", keys...)
	p := wantOK(t, r)
	for _, want := range []string{
		`<h:ExceptionInfo i:nil="true" xmlns:h="` + ns88 + `"`,
		`<h:ExtraInfo i:nil="true"`,
		`<h:Succeeded xmlns:h="` + ns88 + `">true</h:Succeeded>`,
		`<h:TimeZone i:nil="true"`,
		`<Response xmlns:i="` + nsXSI + `"><TableRight i:nil="true"/><FieldProperties i:nil="true"/><IsOk>true</IsOk>` +
			`<UserExplanation i:nil="true"/><TechExplanation i:nil="true"/><ErrorCode i:nil="true"/><Changes>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("reply lacks %s", want)
		}
	}
	if i, j := strings.Index(r.body, "</Changes>"), strings.Index(r.body, "<Status>Ok</Status>"); i < 0 || j < i {
		t.Errorf("Status must follow Changes: %s", r.body)
	}
	got := p.changes()
	want := ExpectedChanges(ActorProject, keys)
	if len(got) != len(want) || len(got) != 10 {
		t.Fatalf("got %d changes, want %d (10 distinct keys)", len(got), len(want))
	}
	gotSet := map[Change]bool{}
	for _, c := range got {
		gotSet[c] = true
	}
	for _, c := range want {
		if !gotSet[c] || c.Table != "project" {
			t.Errorf("missing change %+v", c)
		}
	}

	r = resync(t, old, old.IssueTicket(), "Customer", "S-1")
	if p := wantOK(t, r); p.Body.Resync.Response.Status != nil || strings.Contains(r.body, "Status") {
		t.Errorf("OmitStatus: reply still has Status: %s", r.body)
	}
}

func TestResyncAll(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	ticket := rs.IssueTicket()
	bodies := []string{
		resyncBody("3", "Customer"), // <ExternalKeys/>
		`<ForceResyncExternal xmlns="` + ns88 + `"><ErpConnectionId>3</ErpConnectionId><ErpActorType>Customer</ErpActorType>` +
			`<ExternalKeys i:nil="true" xmlns:i="` + nsXSI + `"/></ForceResyncExternal>`,
		`<ForceResyncExternal xmlns="` + ns88 + `"><ErpConnectionId>3</ErpConnectionId></ForceResyncExternal>`,
	}
	for _, b := range bodies {
		p := wantOK(t, post(t, rs.ErpSyncURL(), ctSOAP11, actionQuoted, envelope11(soapHeader("", ticket), b)))
		if n := len(p.changes()); n != 0 {
			t.Errorf("resync-all reported %d changes, want 0", n)
		}
	}
	// A resync-all with a bad ticket is still a resync-all someone sent.
	resync(t, rs, "7T:expired", "Customer")
	c := rs.Counts()
	if c.ResyncAll != 4 || c.Calls[OutcomeOK] != 3 || c.Calls[OutcomeException] != 1 || len(c.Changes) != 0 {
		t.Fatalf("counts = %+v, want 4 resync-all, 3 ok, 1 exception, no changes", c)
	}
}

func TestDuplicateAndEmptyKeys(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	p := wantOK(t, resync(t, rs, rs.IssueTicket(), "Sale", "D-1", "D-1", "", "D-2"))
	if got := len(p.changes()); got != 3 {
		t.Fatalf("changes = %d, want 3 (D-1, \"\", D-2)", got)
	}
	if rs.Seen("D-1") != 1 || rs.ResyncCount("D-1") != 1 || rs.ResyncCount("") != 1 {
		t.Fatalf("counts = %+v", rs.Counts())
	}
	if c := rs.Counts(); c.ResyncAll != 0 {
		t.Fatalf("a batch holding an empty key is not a resync-all: %+v", c)
	}
}

func TestHTTPStatusForReplies(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	if r := resync(t, rs, "", "Customer", "H-1"); r.status != http.StatusOK {
		t.Fatalf("missing ticket: status %d, want 200 (ExceptionInfo replies are ordinary messages)", r.status)
	}
}
