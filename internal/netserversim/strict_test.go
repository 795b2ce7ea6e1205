package netserversim

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// seedRequest is the SOAP request of seed/ForceResyncExternal.txt, verbatim: a SOAP 1.2
// envelope with the headers outside <Header> and xsi:type attributes everywhere.
const seedRequest = `<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope
xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
xmlns:SOAP-ENC="http://www.w3.org/2003/05/soap-encoding"
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
xmlns:xsd="http://www.w3.org/2001/XMLSchema"
xmlns:NetServerServices882="http://schemas.microsoft.com/2003/10/Serialization/Arrays"
xmlns:NetServerServices881="http://schemas.microsoft.com/2003/10/Serialization/"
xmlns:ErpSync="http://www.superoffice.net/ws/crm/NetServer/Services88">
<ErpSync:ApplicationToken>1234567-1234-9876</ErpSync:ApplicationToken>
<ErpSync:Credentials>
<ErpSync:Ticket>7T:1234abcxyzExample==</ErpSync:Ticket>
</ErpSync:Credentials>
<SOAP-ENV:Body>
<ErpSync:ForceResyncExternal>
<ErpSync:ErpConnectionId xsi:type="xsd:int">0</ErpSync:ErpConnectionId>
<ErpSync:ErpActorType xsi:type="ErpSync:ErpActorType">Unknown</ErpSync:ErpActorType>
<ErpSync:ExternalKeys xsi:type="NetServerServices882:ArrayOfstring">
<NetServerServices882:string xsi:type="xsd:string"></NetServerServices882:string>
</ErpSync:ExternalKeys>
</ErpSync:ForceResyncExternal>
</SOAP-ENV:Body>
</SOAP-ENV:Envelope>`

// seedAsSOAP11 is the seed request repaired the way §1 prescribes (SOAP 1.1 namespace,
// headers inside <Header>) but keeping its xsi:type attributes, with the ticket filled in.
func seedAsSOAP11(ticket, key string) string {
	s := strings.Replace(seedRequest, "http://www.w3.org/2003/05/soap-envelope", nsSoap11, 1)
	s = strings.Replace(s, "<ErpSync:ApplicationToken>", "<SOAP-ENV:Header><ErpSync:ApplicationToken>", 1)
	s = strings.Replace(s, "</ErpSync:Credentials>", "</ErpSync:Credentials></SOAP-ENV:Header>", 1)
	s = strings.Replace(s, "7T:1234abcxyzExample==", ticket, 1)
	return strings.Replace(s, `<NetServerServices882:string xsi:type="xsd:string"></NetServerServices882:string>`,
		`<NetServerServices882:string xsi:type="xsd:string">`+key+`</NetServerServices882:string>`, 1)
}

func TestSeedFileMatchesEmbeddedRequest(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../shared/seed/ForceResyncExternal.txt")
	if err != nil {
		t.Skipf("seed not available: %v", err)
	}
	if !strings.Contains(string(b), seedRequest) {
		t.Fatal("the embedded seed request no longer matches shared/seed/ForceResyncExternal.txt")
	}
}

// TestStrictness checks each WCF basicHttpBinding rule against raw requests. Every case uses
// its own key, which must never count as seen: strictness failures happen before processing.
func TestStrictness(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	ticket := rs.IssueTicket()
	body := func(key string) string { return resyncRequestXML(ticket, "Customer", key) }
	withBody := func(b string) string { return envelope11(soapHeader("x", ticket), b) }

	tests := []struct {
		name   string
		key    string
		ctype  string
		action string
		body   string
		method string
		seen   int // processed (parsed) requests count as seen, even when refused
		check  func(t *testing.T, r response)
	}{
		{name: "soap+xml content type", ctype: "application/soap+xml; charset=utf-8", check: want415("application/soap+xml; charset=utf-8")},
		{name: "text/plain", ctype: "text/plain", check: want415("text/plain")},
		{name: "no content type", ctype: "", check: want415("")},
		{name: "latin1 charset", ctype: "text/xml; charset=iso-8859-1", check: want415("text/xml; charset=iso-8859-1")},
		{name: "seed SOAP 1.2 as text/xml", ctype: ctSOAP11, body: seedRequest,
			check: faultCheck("s:VersionMismatch", "does not match that of the encoder (Soap11")},
		{name: "seed SOAP 1.2 as soap+xml", ctype: "application/soap+xml;charset=UTF-8", body: seedRequest,
			check: want415("application/soap+xml;charset=UTF-8")},
		{name: "unknown action", action: `"urn:nope"`,
			check: faultCheck("a:ActionNotSupported", "The message with Action 'urn:nope' cannot be processed at the receiver, due to a ContractFilter mismatch at the EndpointDispatcher.")},
		{name: "missing action", action: "-",
			check: faultCheck("a:ActionNotSupported", "The message with Action '' cannot be processed")},
		{name: "other ErpSync operation", action: `"` + actionPrefixErpSync + `ForceResync"`,
			check: faultCheck("a:ActionNotSupported", "ErpSync/ForceResync'")},
		{name: "SoPrincipal action on ErpSync.svc", action: loginQuoted,
			check: faultCheck("a:ActionNotSupported", "AuthenticateUsernamePassword")},
		{name: "action case differs", action: `"` + strings.ToLower(ActionForceResyncExternal) + `"`,
			check: faultCheck("a:ActionNotSupported", "cannot be processed")},
		{name: "headers outside Header", seen: 1,
			body:  `<s:Envelope xmlns:s="` + nsSoap11 + `">` + soapHeader("x", ticket) + `<s:Body>` + resyncBody("3", "Customer", "k") + `</s:Body></s:Envelope>`,
			check: exceptionCheck()},
		{name: "headers in another namespace", seen: 1,
			body:  envelope11(`<Credentials xmlns="urn:other"><Ticket>`+ticket+`</Ticket></Credentials>`, resyncBody("3", "Customer", "k")),
			check: exceptionCheck()},
		{name: "ticket in another namespace", seen: 1,
			body:  envelope11(`<Credentials xmlns="`+ns88+`"><Ticket xmlns="">`+ticket+`</Ticket></Credentials>`, resyncBody("3", "Customer", "k")),
			check: exceptionCheck()},
		{name: "no header at all", seen: 1,
			body:  `<s:Envelope xmlns:s="` + nsSoap11 + `"><s:Body>` + resyncBody("3", "Customer", "k") + `</s:Body></s:Envelope>`,
			check: exceptionCheck()},
		{name: "actor before connection id",
			body:  withBody(`<ForceResyncExternal xmlns="` + ns88 + `"><ErpActorType>Customer</ErpActorType><ErpConnectionId>3</ErpConnectionId><ExternalKeys/></ForceResyncExternal>`),
			check: faultCheck("a:DeserializationFailed", "Found element 'ErpConnectionId'")},
		{name: "keys before actor",
			body:  withBody(`<ForceResyncExternal xmlns="` + ns88 + `"><ErpConnectionId>3</ErpConnectionId><ExternalKeys/><ErpActorType>Customer</ErpActorType></ForceResyncExternal>`),
			check: faultCheck("a:DeserializationFailed", "Found element 'ErpActorType'")},
		{name: "repeated element",
			body:  withBody(`<ForceResyncExternal xmlns="` + ns88 + `"><ErpConnectionId>3</ErpConnectionId><ErpConnectionId>4</ErpConnectionId></ForceResyncExternal>`),
			check: faultCheck("a:DeserializationFailed", "Found element 'ErpConnectionId'")},
		{name: "unknown element",
			body:  withBody(`<ForceResyncExternal xmlns="` + ns88 + `"><ErpConnectionId>3</ErpConnectionId><Foo/></ForceResyncExternal>`),
			check: faultCheck("a:DeserializationFailed", "Found element 'Foo'")},
		{name: "parameters without namespace",
			body:  withBody(`<e:ForceResyncExternal xmlns:e="` + ns88 + `"><ErpConnectionId>3</ErpConnectionId></e:ForceResyncExternal>`),
			check: faultCheck("a:DeserializationFailed", "Found element 'ErpConnectionId' from namespace ''")},
		{name: "unknown actor type", body: withBody(resyncBody("3", "Contact", "k")),
			check: faultCheck("a:DeserializationFailed", "Invalid enum value 'Contact'")},
		{name: "actor type lower case", body: withBody(resyncBody("3", "customer", "k")),
			check: faultCheck("a:DeserializationFailed", "Invalid enum value 'customer'")},
		{name: "actor type ordinal", body: withBody(resyncBody("3", "1", "k")),
			check: faultCheck("a:DeserializationFailed", "Invalid enum value '1'")},
		{name: "connection id not an int", body: withBody(resyncBody("three", "Customer", "k")),
			check: faultCheck("a:DeserializationFailed", "The value 'three' cannot be parsed as the type 'Int32'")},
		{name: "key items not strings",
			body:  withBody(`<ForceResyncExternal xmlns="` + ns88 + `"><ExternalKeys xmlns:a="` + nsArrays + `"><a:int>1</a:int></ExternalKeys></ForceResyncExternal>`),
			check: faultCheck("a:DeserializationFailed", "Expecting element 'string'")},
		{name: "wrong operation element", body: withBody(`<ForceResync xmlns="` + ns88 + `"/>`),
			check: faultCheck("a:DeserializationFailed", "Expected to find node type 'Element' with name 'ForceResyncExternal'")},
		{name: "empty body", body: withBody(``),
			check: faultCheck("a:DeserializationFailed", "Expected to find node type 'Element' with name 'ForceResyncExternal'")},
		{name: "mustUnderstand header", body: envelope11(soapHeader("x", ticket)+`<Foo xmlns="urn:x" s:mustUnderstand="1"/>`, resyncBody("3", "Customer", "k")),
			check: faultCheck("s:MustUnderstand", "The header 'Foo' from the namespace 'urn:x' was not understood")},
		{name: "repeated Credentials header", body: envelope11(soapHeader("x", ticket)+soapHeader("x", ticket), resyncBody("3", "Customer", "k")),
			check: faultCheck("s:Client", "Multiple headers with name 'ApplicationToken'")},
		{name: "malformed XML", body: `<s:Envelope xmlns:s="` + nsSoap11 + `"><s:Body>`, check: wantStatus(http.StatusBadRequest)},
		{name: "DTD", body: strings.Replace(body("k"), "\n<s:Envelope", "\n<!DOCTYPE x [<!ENTITY a \"b\">]>\n<s:Envelope", 1), check: wantStatus(http.StatusBadRequest)},
		{name: "not an envelope", body: resyncBody("3", "Customer", "k"), check: wantStatus(http.StatusBadRequest)},
		{name: "envelope without body", body: `<s:Envelope xmlns:s="` + nsSoap11 + `"><s:Header/></s:Envelope>`, check: wantStatus(http.StatusBadRequest)},
		{name: "UTF-16 declaration", body: strings.Replace(body("k"), "utf-8", "utf-16", 1), check: wantStatus(http.StatusBadRequest)},
		{name: "GET", method: http.MethodGet, check: wantStatus(http.StatusMethodNotAllowed)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "strict-" + string(rune('A'+i))
			if tc.ctype == "" && !strings.HasPrefix(tc.name, "no content") {
				tc.ctype = ctSOAP11
			}
			switch tc.action {
			case "":
				tc.action = actionQuoted
			case "-":
				tc.action = ""
			}
			if tc.body == "" {
				tc.body = body(key)
			}
			tc.body = strings.ReplaceAll(tc.body, ">k<", ">"+key+"<")
			var r response
			if tc.method == http.MethodGet {
				resp, err := testClient.Get(rs.ErpSyncURL())
				if err != nil {
					t.Fatal(err)
				}
				r = response{status: resp.StatusCode, header: resp.Header, body: string(drain(t, resp))}
			} else {
				r = post(t, rs.ErpSyncURL(), tc.ctype, tc.action, tc.body)
			}
			tc.check(t, r)
			if n := rs.Seen(key); n != tc.seen {
				t.Errorf("Seen(%q) = %d, want %d", key, n, tc.seen)
			}
			if n := rs.ResyncCount(key); n != 0 {
				t.Errorf("ResyncCount(%q) = %d, want 0", key, n)
			}
		})
	}
}

func want415(ct string) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		want := "Cannot process the message because the content type '" + ct + "' was not the expected type 'text/xml; charset=utf-8'."
		if r.status != http.StatusUnsupportedMediaType || r.body != want {
			t.Fatalf("got %d %q, want 415 %q", r.status, r.body, want)
		}
	}
}

func faultCheck(code, text string) func(*testing.T, response) {
	return func(t *testing.T, r response) { t.Helper(); wantFault(t, r, code, text) }
}

func exceptionCheck() func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		wantException(t, r, DefaultExceptionType, DefaultExceptionMessage)
	}
}

func wantStatus(code int) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		if r.status != code {
			t.Fatalf("status = %d, want %d; body: %s", r.status, code, r.body)
		}
	}
}

// TestTolerance checks what the simulator must accept: quoted or bare SOAPAction, xsi:type
// attributes (the seed's style once repaired), prefixed elements, case-insensitive paths,
// omitted optional parameters, and unknown headers without mustUnderstand.
func TestTolerance(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	ticket := rs.IssueTicket()
	lowerURL := strings.ToLower(rs.ErpSyncURL())

	tests := []struct {
		name, url, ctype, action, body, key string
	}{
		{name: "bare SOAPAction", action: ActionForceResyncExternal},
		{name: "spaces around quoted SOAPAction", action: "  " + actionQuoted + " "},
		{name: "docs content type", ctype: "text/xml;charset=UTF-8"},
		{name: "content type without charset", ctype: "text/xml"},
		{name: "lower-case path", url: lowerURL},
		{name: "seed repaired to SOAP 1.1 with xsi:type", body: seedAsSOAP11(ticket, "tol-seed"), key: "tol-seed"},
		{name: "unknown header without mustUnderstand",
			body: envelope11(soapHeader("x", ticket)+`<Foo xmlns="urn:x"/><TimeZone xmlns="`+ns88+`"><SoTimeZoneId>1</SoTimeZoneId></TimeZone>`,
				resyncBody("3", "Customer", "tol-hdr")), key: "tol-hdr"},
		{name: "UTF-8 byte order mark", body: "\uFEFF" + resyncRequestXML(ticket, "Customer", "tol-bom"), key: "tol-bom"},
		{name: "only keys",
			body: envelope11(soapHeader("x", ticket), `<ForceResyncExternal xmlns="`+ns88+`"><ExternalKeys xmlns:a="`+nsArrays+`"><a:string>tol-only</a:string></ExternalKeys></ForceResyncExternal>`),
			key:  "tol-only"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.url == "" {
				tc.url = rs.ErpSyncURL()
			}
			if tc.ctype == "" {
				tc.ctype = ctSOAP11
			}
			if tc.action == "" {
				tc.action = actionQuoted
			}
			if tc.key == "" {
				tc.key = "tol-" + string(rune('a'+i))
			}
			if tc.body == "" {
				tc.body = resyncRequestXML(ticket, "Customer", tc.key)
			}
			wantOK(t, post(t, tc.url, tc.ctype, tc.action, tc.body))
			if n := rs.ResyncCount(tc.key); n != 1 {
				t.Errorf("ResyncCount(%q) = %d, want 1", tc.key, n)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{Tenant: "Cust777"})
	ticket := rs.IssueTicket()
	for _, p := range []string{"/Cust12345/Remote/Services88/ErpSync.svc", "/Remote/Services88/ErpSync.svc",
		"/Cust777/Remote/Services87/ErpSync.svc", "/Cust777/Remote/Services88/Contact.svc", "/Cust777/Remote/Services88/ErpSync.svc/x"} {
		r := post(t, rs.RootURL+p, ctSOAP11, actionQuoted, resyncRequestXML(ticket, "Customer", "p"))
		if r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, r.status)
		}
	}
	wantOK(t, post(t, rs.RootURL+"/CUST777/REMOTE/SERVICES88/ERPSYNC.SVC", ctSOAP11, actionQuoted, resyncRequestXML(ticket, "Customer", "p")))

	// On-site at the site root.
	root := start(t, Config{Tenant: "/"})
	if root.URL != root.RootURL {
		t.Fatalf("URL = %q, want the root %q", root.URL, root.RootURL)
	}
	wantOK(t, resync(t, root, root.IssueTicket(), "Customer", "p"))
}

// TestAnyTenant: with AnyTenant, the service paths answer under any one segment, sharing
// tickets and counters; everything else stays as strict as without it.
func TestAnyTenant(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{Tenant: "Cust777", AnyTenant: true})
	ticket := rs.IssueTicket()
	for _, p := range []string{"/Cust777", "/tenant-0001", "/OTHER"} {
		wantOK(t, post(t, rs.RootURL+p+"/Remote/Services88/ErpSync.svc", ctSOAP11, actionQuoted, resyncRequestXML(ticket, "Customer", "k"+p)))
		if n := rs.ResyncCount("k" + p); n != 1 {
			t.Errorf("%s: ResyncCount = %d, want 1", p, n)
		}
	}
	for _, p := range []string{"/Remote/Services88/ErpSync.svc", "/a/b/Remote/Services88/ErpSync.svc",
		"/x/Remote/Services87/ErpSync.svc", "/x/Remote/Services88/Contact.svc", "/x/Remote/Services88/ErpSync.svc/y"} {
		r := post(t, rs.RootURL+p, ctSOAP11, actionQuoted, resyncRequestXML(ticket, "Customer", "p"))
		if r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, r.status)
		}
	}
	if _, err := New(Config{Tenant: "/", AnyTenant: true}); err == nil || !strings.Contains(err.Error(), "any tenant") {
		t.Errorf("AnyTenant at the site root: %v, want an error", err)
	}
}

func TestRequestTooLarge(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{MaxRequestBytes: 512})
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = "large-key"
	}
	r := resync(t, rs, rs.IssueTicket(), "Customer", keys...)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", r.status)
	}
	if got := rs.Counts().Calls[OutcomeBadRequest]; got != 1 {
		t.Fatalf("bad_request calls = %d, want 1", got)
	}
}

// FuzzParseRequest feeds arbitrary bytes through the whole request parser: it must never
// panic, whatever a client sends.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(resyncRequestXML("7T:x", "Customer", "a", "b")))
	f.Add([]byte(seedRequest))
	f.Add([]byte(seedAsSOAP11("7T:x", "k")))
	f.Add([]byte(loginRequestXML("", "u", "p")))
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := parseXML(data)
		if err != nil {
			return
		}
		env, e := splitEnvelope(root)
		if e != envOK {
			return
		}
		_, _ = readHeaders(env.headers, map[string]bool{"ApplicationToken": true, "Credentials": true, "TimeZone": true})
		_, _ = parseForceResync(env.body)
		_, _ = parseLogin(env.body)
	})
}
