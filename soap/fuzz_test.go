package soap

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
)

// FuzzParseResponse feeds arbitrary bytes to the reply parser, seeded with the seed
// response and every golden reply. It must never panic, and must return exactly one of a
// erpsync.Result or an error of the package's types.
func FuzzParseResponse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		if strings.HasPrefix(filepath.Base(name), "request_") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("<html><body>503</body></html>"))
	for _, b := range cornerReplies() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := ParseResponse(data)
		if (resp == nil) == (err == nil) {
			t.Fatalf("ParseResponse = %v, %v: want exactly one of a response and an error", resp, err)
		}
		if err != nil {
			var (
				ex *erpsync.ExceptionError
				fe *erpsync.FaultError
				pe *erpsync.ProtocolError
			)
			if !errors.As(err, &ex) && !errors.As(err, &fe) && !errors.As(err, &pe) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			_ = err.Error()
			return
		}
		if resp.StatusName == "" && resp.Status != erpsync.StatusOk && resp.Status != erpsync.StatusError {
			t.Fatalf("no Status sent but Status = %v", resp.Status)
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
	})
}

// cornerReplies are replies at the corners of XML where a reader most easily goes wrong:
// character and entity references, CDATA, comments, processing instructions, xsi:nil
// spellings, odd names and prefixes, declarations, a byte order mark, truncation.
func cornerReplies() [][]byte {
	const (
		open  = `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Response><IsOk>true</IsOk>`
		close = `</Response></ForceResyncExternalResponse></s:Body></s:Envelope>`
	)
	inner := []string{
		`<IsOk>true</IsOk>`,
		`<IsOk> true </IsOk><Status>Ok</Status>`,
		`<IsOk>yes</IsOk>`,
		`<IsOk>tr<!-- c -->ue</IsOk>`,
		`<IsOk>tr<x/>ue</IsOk>`,
		`<IsOk><![CDATA[true]]></IsOk>`,
		`<IsOk>&#116;rue</IsOk>`,
		`<IsOk>&#x74;rue</IsOk>`,
		`<IsOk>&#X74;rue</IsOk>`,
		`<IsOk>&tr;ue</IsOk>`,
		`<IsOk>true</IsOk ><Status >Warning</Status >`,
		`<TechExplanation>a&lt;b&gt;c&amp;d&apos;e&quot;f</TechExplanation>`,
		`<TechExplanation>line1` + "\r\n" + `line2` + "\r" + `line3` + "\n" + `</TechExplanation>`,
		`<TechExplanation><![CDATA[x` + "\r\n" + `y]]>&#13;z</TechExplanation>`,
		`<TechExplanation>a]]>b</TechExplanation>`,
		`<TechExplanation>a]]&gt;b ]>] ></TechExplanation>`,
		`<TechExplanation>&#xD800;</TechExplanation>`,
		`<TechExplanation>&#0;</TechExplanation>`,
		`<TechExplanation>&#x10FFFF;&#x110000;</TechExplanation>`,
		`<TechExplanation>&#x0000000041;</TechExplanation>`,
		`<TechExplanation>ü é 😀</TechExplanation>`,
		"<TechExplanation>\xff</TechExplanation>",
		"<TechExplanation>\x01</TechExplanation>",
		"<TechExplanation>\uFFFE</TechExplanation>",
		`<TechExplanation>a<?pi x?>b</TechExplanation>`,
		`<TechExplanation>a<!DOCTYPE x>b</TechExplanation>`,
		`<TechExplanation i:nil="true">x</TechExplanation>`,
		`<TechExplanation i:nil=" 1 ">x</TechExplanation>`,
		`<TechExplanation i:nil="false" i:nil="true">x</TechExplanation>`,
		`<TechExplanation j:nil="true" xmlns:j="http://www.w3.org/2001/XMLSchema-instance">x</TechExplanation>`,
		`<TechExplanation nil="true">x</TechExplanation>`,
		`<TechExplanation i:nil="true"xmlns:q="u">x</TechExplanation>`,
		`<TechExplanation i:nil=true>x</TechExplanation>`,
		`<TechExplanation i:nil>x</TechExplanation>`,
		`<TechExplanation a="<">x</TechExplanation>`,
		`<TechExplanation a="&amp;&#10;` + "\r\n" + `">x</TechExplanation>`,
		`<TechExplanation xmlns="urn:other">x</TechExplanation>`,
		`<TechExplanation xmlns="">x</TechExplanation>`,
		`<q:TechExplanation xmlns:q="http://www.superoffice.net/ws/crm/NetServer/Services99">x</q:TechExplanation>`,
		`<q:TechExplanation xmlns:q="http://www.superoffice.net/ws/crm/NetServer/Services99">x</r:TechExplanation>`,
		`<q:TechExplanation>x</q:TechExplanation>`,
		`<xml:TechExplanation>x</xml:TechExplanation>`,
		`<xmlns:TechExplanation>x</xmlns:TechExplanation>`,
		`<a:b:TechExplanation>x</a:b:TechExplanation>`,
		`<:TechExplanation>x</:TechExplanation>`,
		`<TechExplanation:>x</TechExplanation:>`,
		`<1TechExplanation>x</1TechExplanation>`,
		`<Tëch>x</Tëch>`,
		`<TechExplanation>x</TechExplanation`,
		`<TechExplanation>x</TechExplanationX>`,
		`<TechExplanation/><TechExplanation>y</TechExplanation>`,
		`<!-- a -- b --><IsOk>1</IsOk>`,
		`<!--- x ---><IsOk>1</IsOk>`,
		`<!-- x ---><IsOk>1</IsOk>`,
		`<![CDATX[x]]>`,
		`<Changes><AddedRecords><ChangedDataItem><Tablename>contact</Tablename><RecordId>+7</RecordId></ChangedDataItem><ChangedDataItem><Tablename>person</Tablename><RecordId>-2147483648</RecordId></ChangedDataItem></AddedRecords><AddedRecords><ChangedDataItem i:nil="1"/><ChangedDataItem/></AddedRecords><DeletedRecords i:nil="true"/><UpdatedRecords/></Changes>`,
		`<Changes><AddedRecords><ChangedDataItem><RecordId>2147483648</RecordId></ChangedDataItem></AddedRecords></Changes>`,
		`<Changes><AddedRecords><ChangedDataItem><RecordId> 0012 </RecordId><Tablename>a<b/>c</Tablename></ChangedDataItem></AddedRecords></Changes>`,
		`<Changes><AddedRecords><ChangedDataItem><RecordId>1_000</RecordId></ChangedDataItem></AddedRecords></Changes>`,
		`<Status>warn</Status><Status></Status><IsOk>1</IsOk>`,
		`<Status>Postponed</Status>`,
		"<Status>\u00a0Ok\u00a0</Status>",
	}
	var out [][]byte
	for _, in := range inner {
		out = append(out, []byte(open+in+close))
	}
	whole := []string{
		"",
		"   ",
		"\uFEFF\uFEFF" + open + close,
		"\uFEFF" + open + close,
		"\u00a0" + open + close,
		`<?xml version="1.0" encoding="UTF-8"?>` + open + close,
		`<?xml version="1.1"?>` + open + close,
		`<?xml version='1.0' encoding='us-ascii'?>` + open + close,
		`<?xml version="1.0" encoding="latin1"?>` + open + close,
		`<?xml encoding="utf-16"?>` + open + close,
		`<?xml?>` + open + close,
		`<?other stuff?>` + open + close,
		`<!DOCTYPE x [<!ENTITY a "b">]>` + open + close,
		`<![CDATA[ ]]>` + open + close,
		open + close + `trailing garbage <<<`,
		open + close[:len(close)-3],
		`<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>`,
		`<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>a:X</s:Value></s:Subcode></s:Code><s:Reason><s:Text></s:Text><s:Text xml:lang="en">why</s:Text></s:Reason></s:Fault><s:Fault><faultcode>y</faultcode></s:Fault></s:Body></s:Envelope>`,
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode> s:Client </faultcode><faultstring>bad</faultstring><detail><x/></detail></s:Fault></s:Body></s:Envelope>`,
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><h:Succeeded xmlns:h="http://www.superoffice.net/ws/crm/NetServer/Services88">false</h:Succeeded><h:ExceptionInfo xmlns:h="http://www.superoffice.net/ws/crm/NetServer/Services88"><h:Message>Ticket expired</h:Message><h:InnerException><h:ExceptionType>T</h:ExceptionType></h:InnerException><h:InnerException><h:Message>second</h:Message></h:InnerException></h:ExceptionInfo><s:Body/></s:Envelope>`,
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><h:ExceptionInfo xmlns:h="http://www.superoffice.net/ws/crm/NetServer/Services88"/><h:Succeeded xmlns:h="http://www.superoffice.net/ws/crm/NetServer/Services88">true</h:Succeeded></s:Header><s:Body/></s:Envelope>`,
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header xmlns:s="urn:x"><s:Body/></s:Header><s:Body/></s:Envelope>`,
		`<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><ForceResyncExternalResult><IsOk>1</IsOk></ForceResyncExternalResult><Response><IsOk>0</IsOk></Response></ForceResyncExternalResponse></Body></Envelope>`,
	}
	for _, in := range whole {
		out = append(out, []byte(in))
	}
	return out
}
