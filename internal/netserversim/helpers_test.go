package netserversim

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/xml"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	actionQuoted   = `"` + ActionForceResyncExternal + `"`
	loginQuoted    = `"` + ActionAuthenticateUsernamePassword + `"`
	ctSOAP11       = "text/xml; charset=utf-8"
	testTicketUser = "SAL0"
	testPassword   = "secret"
)

// start runs a simulator for one test and closes it in Cleanup.
func start(t *testing.T, cfg Config) *Running {
	t.Helper()
	rs, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(rs.Close)
	return rs
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// testKeys are generated once per test binary; 1024 bits keeps -race runs fast.
var testKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var ks [2]*rsa.PrivateKey
	for i := range ks {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		ks[i] = k
	}
	return ks
})

// jwtKey signs the simulator's JWTs; sysKey is the partner application's system-user key.
func jwtKey() *rsa.PrivateKey { return testKeys()[0] }
func sysKey() *rsa.PrivateKey { return testKeys()[1] }

// header builds the §3.5 <s:Header> content.
func soapHeader(appToken, ticket string) string {
	return `<ApplicationToken xmlns="` + ns88 + `">` + appToken + `</ApplicationToken>` +
		`<Credentials xmlns="` + ns88 + `"><Ticket>` + ticket + `</Ticket></Credentials>`
}

// envelope11 wraps header entries and a body element in a SOAP 1.1 envelope.
func envelope11(header, body string) string {
	return `<?xml version="1.0" encoding="utf-8"?>` + "\n" +
		`<s:Envelope xmlns:s="` + nsSoap11 + `">` + "\n" +
		`  <s:Header>` + header + `</s:Header>` + "\n" +
		`  <s:Body>` + body + `</s:Body>` + "\n" +
		`</s:Envelope>`
}

// resyncBody is the §3.5 ForceResyncExternal body; keys == nil writes <ExternalKeys/>.
func resyncBody(connID, actor string, keys ...string) string {
	var b strings.Builder
	b.WriteString(`<ForceResyncExternal xmlns="` + ns88 + `">`)
	b.WriteString(`<ErpConnectionId>` + connID + `</ErpConnectionId>`)
	b.WriteString(`<ErpActorType>` + actor + `</ErpActorType>`)
	if keys == nil {
		b.WriteString(`<ExternalKeys/>`)
	} else {
		b.WriteString(`<ExternalKeys xmlns:a="` + nsArrays + `">`)
		for _, k := range keys {
			b.WriteString(`<a:string>` + k + `</a:string>`)
		}
		b.WriteString(`</ExternalKeys>`)
	}
	b.WriteString(`</ForceResyncExternal>`)
	return b.String()
}

// resyncRequestXML is a complete, valid ForceResyncExternal envelope.
func resyncRequestXML(ticket, actor string, keys ...string) string {
	return envelope11(soapHeader("CLIENT_SECRET", ticket), resyncBody("3", actor, keys...))
}

func loginRequestXML(appToken, user, password string) string {
	return envelope11(`<ApplicationToken xmlns="`+ns88+`">`+appToken+`</ApplicationToken>`,
		`<AuthenticateUsernamePassword xmlns="`+ns88+`"><UserName>`+user+`</UserName><Password>`+
			password+`</Password></AuthenticateUsernamePassword>`)
}

type response struct {
	status int
	header http.Header
	body   string
}

var testClient = &http.Client{Timeout: 10 * time.Second}

// post sends one raw request; action "" omits the SOAPAction header.
func post(t *testing.T, url, contentType, action, body string) response {
	t.Helper()
	resp, err := do(testClient, url, contentType, action, body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp
}

func do(c *http.Client, url, contentType, action, body string) (response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if action != "" {
		req.Header.Set("SOAPAction", action)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// resync posts a valid ForceResyncExternal request.
func resync(t *testing.T, rs *Running, ticket, actor string, keys ...string) response {
	t.Helper()
	return post(t, rs.ErpSyncURL(), ctSOAP11, actionQuoted, resyncRequestXML(ticket, actor, keys...))
}

// parsedReply is a test-side reading of a reply envelope, by local names only.
type parsedReply struct {
	Header struct {
		ExceptionInfo struct {
			Nil           string `xml:"http://www.w3.org/2001/XMLSchema-instance nil,attr"`
			Message       string
			ExceptionType string
		}
		Succeeded string
	}
	Body struct {
		Resync struct {
			Response struct {
				Nil             string `xml:"http://www.w3.org/2001/XMLSchema-instance nil,attr"`
				IsOk            string
				UserExplanation string
				TechExplanation string
				ErrorCode       string
				Changes         struct {
					Nil     string       `xml:"http://www.w3.org/2001/XMLSchema-instance nil,attr"`
					Added   []parsedItem `xml:"AddedRecords>ChangedDataItem"`
					Updated []parsedItem `xml:"UpdatedRecords>ChangedDataItem"`
					Deleted []parsedItem `xml:"DeletedRecords>ChangedDataItem"`
				}
				Status *string
			}
		} `xml:"ForceResyncExternalResponse"`
		Auth struct {
			Ticket                  string `xml:"Credentials>Ticket"`
			AuthenticationSucceeded string
		} `xml:"AuthenticateResponse"`
		Fault struct {
			Code   string `xml:"faultcode"`
			String string `xml:"faultstring"`
		}
	}
}

type parsedItem struct {
	Tablename string
	RecordId  int32
}

func parse(t *testing.T, r response) parsedReply {
	t.Helper()
	var p parsedReply
	if err := xml.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatalf("reply is not XML (%v): %s", err, r.body)
	}
	return p
}

// changesOf flattens a reply's Changes into Change values.
func (p parsedReply) changes() []Change {
	var out []Change
	c := p.Body.Resync.Response.Changes
	for _, l := range []struct {
		items []parsedItem
		kind  ChangeKind
	}{{c.Added, Added}, {c.Updated, Updated}, {c.Deleted, Deleted}} {
		for _, it := range l.items {
			out = append(out, Change{Table: it.Tablename, RecordID: it.RecordId, Kind: l.kind})
		}
	}
	return out
}

// wantOK asserts an HTTP 200, Succeeded=true, IsOk=true reply.
func wantOK(t *testing.T, r response) parsedReply {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body: %s", r.status, r.body)
	}
	p := parse(t, r)
	if p.Header.Succeeded != "true" || p.Body.Resync.Response.IsOk != "true" {
		t.Fatalf("Succeeded=%q IsOk=%q, want true/true; body: %s", p.Header.Succeeded, p.Body.Resync.Response.IsOk, r.body)
	}
	return p
}

// wantException asserts the §4.4 shape: 200, ExceptionInfo filled, Succeeded=false, nil Response.
func wantException(t *testing.T, r response, wantType, wantMsg string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body: %s", r.status, r.body)
	}
	p := parse(t, r)
	ei := p.Header.ExceptionInfo
	if p.Header.Succeeded != "false" || ei.Nil != "" || ei.ExceptionType != wantType || ei.Message != wantMsg {
		t.Fatalf("Succeeded=%q ExceptionInfo{nil=%q type=%q msg=%q}, want false and %q/%q; body: %s",
			p.Header.Succeeded, ei.Nil, ei.ExceptionType, ei.Message, wantType, wantMsg, r.body)
	}
	if p.Body.Resync.Response.Nil != "true" && !strings.Contains(r.body, `<Response i:nil="true"`) {
		t.Fatalf("Response not nil: %s", r.body)
	}
}

// wantFault asserts an HTTP 500 SOAP 1.1 fault with the given faultcode.
func wantFault(t *testing.T, r response, code, textContains string) {
	t.Helper()
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500; body: %s", r.status, r.body)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/xml") {
		t.Fatalf("Content-Type = %q, want text/xml", r.header.Get("Content-Type"))
	}
	p := parse(t, r)
	if p.Body.Fault.Code != code || !strings.Contains(p.Body.Fault.String, textContains) {
		t.Fatalf("fault %q %q, want code %q containing %q", p.Body.Fault.Code, p.Body.Fault.String, code, textContains)
	}
}

// drain reads a response body to the end and closes it, so the simulator sees the reply as
// delivered (closing early is a client giving up mid-body).
func drain(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return b
}
