package soap

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/golden"
	"github.com/erpresync/erpresync/internal/sotest"
	"github.com/erpresync/erpresync/tasks"
)

// TestRequestGolden sends requests through the client and compares what reached the
// server, headers and body, with section 3.5 of the protocol reference via golden files.
func TestRequestGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		golden          string
		soap12          bool
		keys            []string // nil: ForceResyncAll
		wantContentType string
		wantSOAPAction  string
	}{
		{
			name:            "soap11",
			golden:          "request_soap11.golden.xml",
			keys:            []string{"10001", "10002"},
			wantContentType: "text/xml; charset=utf-8",
			wantSOAPAction:  `"http://www.superoffice.net/ws/crm/NetServer/Services88/ErpSync/ForceResyncExternal"`,
		},
		{
			name:            "soap12",
			golden:          "request_soap12.golden.xml",
			soap12:          true,
			keys:            []string{"10001", "10002"},
			wantContentType: `application/soap+xml; charset=utf-8; action="http://www.superoffice.net/ws/crm/NetServer/Services88/ErpSync/ForceResyncExternal"`,
		},
		{
			name:            "escaping",
			golden:          "request_escaping.golden.xml",
			keys:            []string{`a&b<c>"d'`, "line1\r\nline2\ttab", "Ærø-😀"},
			wantContentType: "text/xml; charset=utf-8",
			wantSOAPAction:  `"http://www.superoffice.net/ws/crm/NetServer/Services88/ErpSync/ForceResyncExternal"`,
		},
		{
			name:            "all",
			golden:          "request_all_soap11.golden.xml",
			wantContentType: "text/xml; charset=utf-8",
			wantSOAPAction:  `"http://www.superoffice.net/ws/crm/NetServer/Services88/ErpSync/ForceResyncExternal"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got *http.Request
			var body []byte
			srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got, body = r, b
				mu.Unlock()
				w.Header().Set("Content-Type", "text/xml; charset=utf-8")
				w.Write(sotest.ReadTestdata(t, "response_success.xml"))
			}))
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.SOAP12 = tt.soap12 })
			var err error
			if tt.keys == nil {
				_, err = c.ForceResyncAll(bg, 3, erpsync.ActorCustomer)
			} else {
				_, err = c.ForceResyncExternal(bg, 3, erpsync.ActorCustomer, tt.keys)
			}
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got.Method != http.MethodPost {
				t.Errorf("method = %s, want POST", got.Method)
			}
			if got.URL.Path != "/Cust12345/Remote/Services88/ErpSync.svc" {
				t.Errorf("path = %s", got.URL.Path)
			}
			if ct := got.Header.Get("Content-Type"); ct != tt.wantContentType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.wantContentType)
			}
			if sa, ok := got.Header["Soapaction"]; tt.wantSOAPAction == "" && ok {
				t.Errorf("SOAPAction = %q, want none for SOAP 1.2", sa)
			} else if tt.wantSOAPAction != "" && got.Header.Get("SOAPAction") != tt.wantSOAPAction {
				t.Errorf("SOAPAction = %q, want %q", got.Header.Get("SOAPAction"), tt.wantSOAPAction)
			}
			golden.Check(t, tt.golden, body, *update)
		})
	}
}

// TestRequestEscapingRoundTrip checks that keys survive XML parsing byte for byte.
func TestRequestEscapingRoundTrip(t *testing.T) {
	t.Parallel()
	keys := []string{`a&b<c>"d'`, "line1\r\nline2\ttab", "\r", " lead and trail ", "]]>", "Ærø-😀"}
	b := appendForceResyncExternal(nil, false, sotest.AppToken, sotest.Ticket, 1, erpsync.ActorSale, keys)
	var env struct {
		Body struct {
			Req struct {
				Keys []string `xml:"ExternalKeys>string"`
			} `xml:"ForceResyncExternal"`
		} `xml:"Body"`
	}
	if err := xmlUnmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(env.Body.Req.Keys, keys) {
		t.Errorf("keys after round trip = %q, want %q", env.Body.Req.Keys, keys)
	}
}

// TestSeedCopyExact checks that testdata/response_seed.xml is the seed's response exactly
// as printed, when the shared seed is present.
func TestSeedCopyExact(t *testing.T) {
	t.Parallel()
	seed, err := os.ReadFile("../../shared/seed/ForceResyncExternal.txt")
	if err != nil {
		t.Skipf("shared seed not found: %v", err)
	}
	s := string(seed)
	i := strings.Index(s, "ForceResyncExternal Response\n")
	if i < 0 {
		t.Fatal("seed has no response section")
	}
	s = s[i+len("ForceResyncExternal Response\n"):]
	j := strings.Index(s, "</SOAP-ENV:Envelope>")
	want := s[:j+len("</SOAP-ENV:Envelope>")]
	if got := sotest.ReadTestdata(t, "response_seed.xml"); !bytes.Equal(got, []byte(want)) {
		t.Errorf("testdata/response_seed.xml is not the seed's response as printed")
	}
}

func TestParseResponseGolden(t *testing.T) {
	t.Parallel()
	empty := []erpsync.ChangedItem{}
	zero := []erpsync.ChangedItem{{Table: "", RecordID: 0}}
	tests := []struct {
		name string
		file string
		want *erpsync.Result
	}{
		{
			name: "seed as printed",
			file: "response_seed.xml",
			want: &erpsync.Result{
				IsOk: false, Status: erpsync.StatusOk, StatusName: "Ok",
				Changes: erpsync.Changes{Added: zero, Updated: zero, Deleted: zero},
			},
		},
		{
			name: "WCF success",
			file: "response_success.xml",
			want: &erpsync.Result{
				IsOk: true, Status: erpsync.StatusOk, StatusName: "Ok",
				Changes: erpsync.Changes{Added: empty, Updated: []erpsync.ChangedItem{{Table: "contact", RecordID: 123}}, Deleted: empty},
			},
		},
		{
			name: "business failure",
			file: "response_business_failure.xml",
			want: &erpsync.Result{
				IsOk: false, Status: erpsync.StatusError, StatusName: "Error",
				UserExplanation: "Kunden finnes ikke i økonomisystemet & kan ikke synkroniseres.",
				TechExplanation: "Connector: external key 10002 not found for actor Customer",
				ErrorCode:       "ERP-404",
			},
		},
		{
			name: "no Status (older server)",
			file: "response_no_status.xml",
			want: &erpsync.Result{
				IsOk: true, Status: erpsync.StatusOk, StatusName: "",
				Changes: erpsync.Changes{
					Added:   []erpsync.ChangedItem{{Table: "person", RecordID: 7}},
					Updated: []erpsync.ChangedItem{{Table: "contact", RecordID: 42}, {Table: "contact", RecordID: 43}},
				},
			},
		},
		{
			name: "unknown Status",
			file: "response_unknown_status.xml",
			want: &erpsync.Result{
				IsOk: true, Status: erpsync.StatusUnknown, StatusName: "Postponed",
				UserExplanation: "Queued for later",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseResponse(sotest.ReadTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseResponse =\n%#v\nwant\n%#v", *got, *tt.want)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	t.Parallel()
	t.Run("exception", func(t *testing.T) {
		t.Parallel()
		_, err := ParseResponse(sotest.ReadTestdata(t, "response_exception.xml"))
		var ex *erpsync.ExceptionError
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want *erpsync.ExceptionError", err)
		}
		want := &erpsync.ExceptionError{
			Type: "SoSecurityException", Message: "Ticket is not valid or has expired",
			FriendlyText: "Your session has expired. Please log in again.", Source: "SoCore",
			Inner:          &erpsync.ExceptionError{Type: "SoCredentialsException", Message: "Credentials rejected", Source: "SoCore"},
			TicketRejected: true,
		}
		if !reflect.DeepEqual(ex, want) {
			t.Errorf("exception =\n%#v\nwant\n%#v", ex, want)
		}
		if !erpsync.IsTicketError(err) {
			t.Error("IsTicketError = false, want true")
		}
		if strings.Contains(err.Error(), "StackTrace") || strings.Contains(err.Error(), "SoSession.Authenticate") {
			t.Errorf("error text carries the stack trace: %v", err)
		}
	})
	faults := []struct {
		name string
		file string
		want erpsync.FaultError
	}{
		{"fault 1.1", "response_fault11.xml", erpsync.FaultError{Code: "a:ActionNotSupported", Reason: "The message with Action"}},
		{"fault 1.2", "response_fault12.xml", erpsync.FaultError{Code: "s:Receiver", Subcode: "a:InternalServiceFault", Reason: "The server was unable to process the request due to an internal error."}},
	}
	for _, tt := range faults {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseResponse(sotest.ReadTestdata(t, tt.file))
			var f *erpsync.FaultError
			if !errors.As(err, &f) {
				t.Fatalf("err = %v, want *erpsync.FaultError", err)
			}
			if f.Code != tt.want.Code || f.Subcode != tt.want.Subcode || !strings.HasPrefix(f.Reason, tt.want.Reason) || f.HTTPStatus != 0 {
				t.Errorf("fault = %+v, want %+v", f, tt.want)
			}
		})
	}
	protocol := []struct {
		name string
		body string
	}{
		{"empty", ""},
		{"html", "<!DOCTYPE html><html><body>Service Unavailable</body></html>"},
		{"xhtml", `<html xmlns="http://www.w3.org/1999/xhtml"><body>oops</body></html>`},
		{"truncated", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>`},
		{"malformed", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body></s:Envelope>`},
		{"no response", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>`},
		{"nil response, no exception", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/></ForceResyncExternalResponse></s:Body></s:Envelope>`},
		{"empty Response: no IsOk", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response/></ForceResyncExternalResponse></s:Body></s:Envelope>`},
		{"nil IsOk", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><IsOk i:nil="true"/><Status>Error</Status></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`},
		{"bad boolean", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><IsOk>yes</IsOk></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`},
		{"succeeded false without exception", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><Succeeded xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88">false</Succeeded></s:Header><s:Body/></s:Envelope>`},
		{"wrong envelope namespace", `<s:Envelope xmlns:s="urn:other"><s:Body/></s:Envelope>`},
		{"prefix without namespace", `<soap:Envelope><soap:Body/></soap:Envelope>`},
	}
	for _, tt := range protocol {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := ParseResponse([]byte(tt.body))
			var pe *erpsync.ProtocolError
			if !errors.As(err, &pe) || resp != nil {
				t.Fatalf("ParseResponse = %v, %v; want *erpsync.ProtocolError", resp, err)
			}
		})
	}
}

// TestReplyWithoutIsOk: a PluginResponse without IsOk, the rest of a business failure
// intact, is a protocol error by the rule the REST client applies too
// (erpsync.CompleteResult), and so transient; read as IsOk=false it would pass for the
// connector's "no", and the batch be split, retried and dead-lettered as one.
func TestReplyWithoutIsOk(t *testing.T) {
	t.Parallel()
	srv := sotest.NewServer(t, sotest.CannedReply(200, "text/xml; charset=utf-8", sotest.ReadTestdata(t, "response_no_isok.xml")))
	c := newTestClient(t, srv.URL, nil)
	resp, err := c.ForceResyncExternal(bg, 3, erpsync.ActorCustomer, []string{"10002"})
	var pe *erpsync.ProtocolError
	if resp != nil || !errors.As(err, &pe) {
		t.Fatalf("ForceResyncExternal = %+v, %v; want a *erpsync.ProtocolError", resp, err)
	}
	if _, want := erpsync.CompleteResult(&erpsync.Result{}, false, false, 200); pe.Error() != want.Error() {
		t.Errorf("err = %v, want %v", pe, want)
	}
	if got := tasks.Classify(err); got != tasks.ClassTransient {
		t.Errorf("Classify = %v, want %v", got, tasks.ClassTransient)
	}
}

// TestParseTolerance covers shapes that must parse: headers under Envelope, other
// prefixes, xsi:type, absent members, whitespace around values, any ServicesNN namespace.
func TestParseTolerance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want erpsync.Result
	}{
		{
			name: "headers directly under Envelope, SOAP 1.2, odd prefixes",
			body: `<X:Envelope xmlns:X="http://www.w3.org/2003/05/soap-envelope" xmlns:Q="http://www.superoffice.net/ws/crm/NetServer/Services88" xmlns:t="http://www.w3.org/2001/XMLSchema-instance">
<Q:Succeeded>true</Q:Succeeded><X:Body><Q:ForceResyncExternalResponse><Q:Response t:type="Q:PluginResponse"><Q:IsOk t:type="xsd:boolean"> 1 </Q:IsOk><Q:Status> Warning </Q:Status></Q:Response></Q:ForceResyncExternalResponse></X:Body></X:Envelope>`,
			want: erpsync.Result{IsOk: true, Status: erpsync.StatusWarning, StatusName: "Warning"},
		},
		{
			name: "Services87 namespace, nil items, comments and CDATA",
			body: `<?xml version="1.0" encoding="utf-8"?><!-- hi --><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services87" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Response><IsOk>true</IsOk><TechExplanation><![CDATA[a<b]]> &amp; c</TechExplanation><Changes><DeletedRecords><ChangedDataItem i:nil="true"/><ChangedDataItem><RecordId>-5</RecordId></ChangedDataItem></DeletedRecords></Changes><Status i:nil="true"/></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`,
			want: erpsync.Result{IsOk: true, Status: erpsync.StatusOk, TechExplanation: "a<b & c", Changes: erpsync.Changes{Deleted: []erpsync.ChangedItem{{RecordID: -5}}}},
		},
		{
			name: "UTF-8 byte order mark (XML 1.0 §4.3.3)",
			body: "\uFEFF" + `<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><IsOk>true</IsOk></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`,
			want: erpsync.Result{IsOk: true, Status: erpsync.StatusOk},
		},
		{
			name: "character references, line ends normalised except an escaped CR",
			body: `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><IsOk>&#116;r<!-- c -->ue</IsOk><TechExplanation>a` + "\r\n" + `b&#13;&#x1F600;&apos;</TechExplanation></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`,
			want: erpsync.Result{IsOk: true, Status: erpsync.StatusOk, TechExplanation: "a\nb\r😀'"},
		},
		{
			name: "elements of other namespaces are ignored",
			body: `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><IsOk>true</IsOk><x:Status xmlns:x="urn:x">Error</x:Status></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`,
			want: erpsync.Result{IsOk: true, Status: erpsync.StatusOk},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseResponse([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %#v\nwant %#v", *got, tt.want)
			}
		})
	}
}
