package soap

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
)

// replyCorpus returns the golden replies and the benchmark replies.
func replyCorpus(t testing.TB) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, name := range files {
		if strings.HasPrefix(filepath.Base(name), "request_") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, benchReply(1), benchReply(3))
}

// checkSameDecoding fails t unless the production decoder and the general parser it falls
// back to (encoding/xml's token stream, the decoder as it was before the scanner) give the
// same Result or the same error for data. Nesting deeper than maxDepth is refused by both,
// each in its own words.
func checkSameDecoding(t testing.TB, data []byte) {
	t.Helper()
	got, gotErr := parseForceResync(data, 200, defaultTicketErrorPattern.MatchString)
	want, wantErr := parseForceResyncXML(data, 200, defaultTicketErrorPattern.MatchString)
	if errors.Is(gotErr, errTooDeep) {
		return
	}
	if !reflect.DeepEqual(got, want) || !sameError(gotErr, wantErr) {
		t.Fatalf("decoders differ on %q:\n got %#v, %v\nwant %#v, %v", data, got, gotErr, want, wantErr)
	}
	// The scanner alone: what it accepts, the general parser accepts alike.
	env, resp, found, err := decodeForceResync(data)
	if err != nil {
		return
	}
	var oresp *erpsync.Result
	var ofound bool
	oenv, oerr := parseEnvelope(data, forceResyncBody(&oresp, &ofound))
	if oerr != nil {
		t.Fatalf("scanner accepts %q, the general parser refuses: %v", data, oerr)
	}
	if !reflect.DeepEqual(env, *oenv) || !reflect.DeepEqual(resp, oresp) || found != ofound {
		t.Fatalf("scanner and general parser differ on %q:\n got %#v %#v %v\nwant %#v %#v %v", data, env, resp, found, *oenv, oresp, ofound)
	}
}

// sameError compares errors by value, and protocol errors by their text (the scanner and
// the general parser wrap their causes differently).
func sameError(a, b error) bool {
	var pa, pb *erpsync.ProtocolError
	if errors.As(a, &pa) && errors.As(b, &pb) {
		return pa.HTTPStatus == pb.HTTPStatus && pa.Reason == pb.Reason && a.Error() == b.Error()
	}
	return reflect.DeepEqual(a, b)
}

// TestScannerTakesGoldenReplies: every golden reply is decoded by the scanner itself, not
// handed to the general parser.
func TestScannerTakesGoldenReplies(t *testing.T) {
	t.Parallel()
	for _, data := range replyCorpus(t) {
		if _, _, _, err := decodeForceResync(data); err != nil {
			t.Errorf("scanner declines %.80q…: %v", data, err)
		}
		checkSameDecoding(t, data)
	}
}

// TestDecoderDifferentialCases are the corners where a hand-written tokenizer most easily
// parts from encoding/xml.
func TestDecoderDifferentialCases(t *testing.T) {
	t.Parallel()
	const (
		open  = `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Response>`
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
	for _, in := range inner {
		checkSameDecoding(t, []byte(open+in+close))
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
		checkSameDecoding(t, []byte(in))
	}
}

// TestDecoderDifferentialMutations compares the decoders on seeded random mutations of
// every golden reply: bytes inserted, deleted and replaced, biased toward XML syntax.
func TestDecoderDifferentialMutations(t *testing.T) {
	t.Parallel()
	n := 1000
	if testing.Short() {
		n = 200
	}
	rng := rand.New(rand.NewPCG(11, 1))
	for _, data := range replyCorpus(t) {
		for range n {
			checkSameDecoding(t, mutate(rng, data))
		}
	}
}

// mutate returns a copy of data with one to four random edits.
func mutate(rng *rand.Rand, data []byte) []byte {
	const alphabet = "<>/=\"'&;#x:! -?[]\r\n\t\xc3\xa9\xff\x00aeiAZ019"
	out := append([]byte(nil), data...)
	for range 1 + rng.IntN(4) {
		if len(out) == 0 {
			out = append(out, alphabet[rng.IntN(len(alphabet))])
			continue
		}
		i := rng.IntN(len(out))
		switch rng.IntN(4) {
		case 0:
			out = append(out[:i], out[i+1:]...)
		case 1:
			out = append(out[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, out[i:]...)...)
		case 2:
			out[i] = alphabet[rng.IntN(len(alphabet))]
		default: // duplicate a slice: repeated elements, attributes, declarations
			j := min(len(out), i+1+rng.IntN(40))
			out = append(out[:j], append(append([]byte(nil), out[i:j]...), out[j:]...)...)
		}
	}
	return out
}

// FuzzDecoderDifferential holds the scanner to the general parser on arbitrary input
// (make fuzz-decoder).
func FuzzDecoderDifferential(f *testing.F) {
	for _, b := range replyCorpus(f) {
		f.Add(b)
	}
	f.Add([]byte(`<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code></s:Fault></s:Body></s:Envelope>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSameDecoding(t, data)
	})
}
