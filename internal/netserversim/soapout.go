package netserversim

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"strconv"
	"strings"
)

// reply is a complete HTTP answer, built before anything is written so that the simulator can
// delay it, trickle it and decide whether it was delivered.
type reply struct {
	status      int
	contentType string
	header      http.Header // extra headers, may be nil
	body        []byte
}

const (
	ctXML  = "text/xml; charset=utf-8"
	ctHTML = "text/html; charset=utf-8"
	ctJSON = "application/json; charset=utf-8"
	ctText = "text/plain; charset=utf-8"
)

// esc escapes s for element content and attribute values.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// WCF writes message-contract headers with an h: prefix and declares xmlns:h/xmlns:i on each
// (§4.3). Null members are emitted as i:nil="true" (§4.3 [I]).
const (
	hdrNil = ` i:nil="true" xmlns:h="` + ns88 + `" xmlns:i="` + nsXSI + `"/>`
	// hdrNilExceptionInfo … hdrNilTimeZone are the null headers of a successful reply.
	hdrNilExceptionInfo = `<h:ExceptionInfo` + hdrNil
	hdrNilExtraInfo     = `<h:ExtraInfo` + hdrNil
	hdrNilTimeZone      = `<h:TimeZone` + hdrNil
)

// exceptionInfo describes a NetServer exception carried in the ExceptionInfo header (§4.4).
type exceptionInfo struct {
	typ, message string
}

// writeHeaders writes <s:Header> with ExceptionInfo, ExtraInfo, Succeeded and TimeZone.
func writeHeaders(b *bytes.Buffer, ex *exceptionInfo) {
	b.WriteString(`<s:Header>`)
	if ex == nil {
		b.WriteString(hdrNilExceptionInfo)
	} else {
		b.WriteString(`<h:ExceptionInfo xmlns:h="` + ns88 + `" xmlns:i="` + nsXSI + `">`)
		b.WriteString(`<h:Message>` + esc(ex.message) + `</h:Message>`)
		b.WriteString(`<h:StackTrace i:nil="true"/>`)
		b.WriteString(`<h:FriendlyText>` + esc(ex.message) + `</h:FriendlyText>`)
		b.WriteString(`<h:ExceptionType>` + esc(ex.typ) + `</h:ExceptionType>`)
		b.WriteString(`<h:Source>SoCore</h:Source>`)
		b.WriteString(`<h:InnerException i:nil="true"/>`)
		b.WriteString(`<h:Parameters i:nil="true"/>`)
		b.WriteString(`</h:ExceptionInfo>`)
	}
	b.WriteString(hdrNilExtraInfo)
	if ex == nil {
		b.WriteString(`<h:Succeeded xmlns:h="` + ns88 + `">true</h:Succeeded>`)
	} else {
		b.WriteString(`<h:Succeeded xmlns:h="` + ns88 + `">false</h:Succeeded>`)
	}
	b.WriteString(hdrNilTimeZone)
	b.WriteString(`</s:Header>`)
}

func soapReply(build func(b *bytes.Buffer)) reply {
	var b bytes.Buffer
	b.WriteString(`<s:Envelope xmlns:s="` + nsSoap11 + `">`)
	build(&b)
	b.WriteString(`</s:Envelope>`)
	return reply{status: http.StatusOK, contentType: ctXML, body: b.Bytes()}
}

// nilOrText writes <name i:nil="true"/> for "" and <name>text</name> otherwise.
func nilOrText(b *bytes.Buffer, name, text string) {
	if text == "" {
		b.WriteString(`<` + name + ` i:nil="true"/>`)
		return
	}
	b.WriteString(`<` + name + `>` + esc(text) + `</` + name + `>`)
}

// pluginResponse is the business content of a ForceResyncExternal reply (§4.2).
type pluginResponse struct {
	isOk                          bool
	userExpl, techExpl, errorCode string   // "" → i:nil
	changes                       []Change // split into the three lists by Kind
	nilChanges                    bool     // <Changes i:nil="true"/> instead of lists
	status                        string   // QuoteStatus name
	omitStatus                    bool     // simulate a server older than 10.1.9
}

// resyncReply builds the ForceResyncExternalResponse envelope in WCF's member order:
// TableRight, FieldProperties, IsOk, UserExplanation, TechExplanation, ErrorCode, Changes,
// then Status (only on servers ≥ 10.1.9).
func resyncReply(pr pluginResponse) reply {
	return soapReply(func(b *bytes.Buffer) {
		writeHeaders(b, nil)
		b.WriteString(`<s:Body><ForceResyncExternalResponse xmlns="` + ns88 + `">`)
		b.WriteString(`<Response xmlns:i="` + nsXSI + `">`)
		b.WriteString(`<TableRight i:nil="true"/><FieldProperties i:nil="true"/>`)
		if pr.isOk {
			b.WriteString(`<IsOk>true</IsOk>`)
		} else {
			b.WriteString(`<IsOk>false</IsOk>`)
		}
		nilOrText(b, "UserExplanation", pr.userExpl)
		nilOrText(b, "TechExplanation", pr.techExpl)
		nilOrText(b, "ErrorCode", pr.errorCode)
		if pr.nilChanges {
			b.WriteString(`<Changes i:nil="true"/>`)
		} else {
			b.WriteString(`<Changes><TableRight i:nil="true"/><FieldProperties i:nil="true"/>`)
			writeItems(b, "AddedRecords", pr.changes, Added)
			writeItems(b, "UpdatedRecords", pr.changes, Updated)
			writeItems(b, "DeletedRecords", pr.changes, Deleted)
			b.WriteString(`</Changes>`)
		}
		if !pr.omitStatus {
			b.WriteString(`<Status>` + pr.status + `</Status>`)
		}
		b.WriteString(`</Response></ForceResyncExternalResponse></s:Body>`)
	})
}

func writeItems(b *bytes.Buffer, list string, changes []Change, kind ChangeKind) {
	n := 0
	for _, c := range changes {
		if c.Kind != kind {
			continue
		}
		if n == 0 {
			b.WriteString(`<` + list + `>`)
		}
		n++
		b.WriteString(`<ChangedDataItem><TableRight i:nil="true"/><FieldProperties i:nil="true"/><Tablename>`)
		b.WriteString(esc(c.Table))
		b.WriteString(`</Tablename><RecordId>`)
		b.WriteString(strconv.Itoa(int(c.RecordID)))
		b.WriteString(`</RecordId></ChangedDataItem>`)
	}
	if n == 0 {
		b.WriteString(`<` + list + `/>`)
		return
	}
	b.WriteString(`</` + list + `>`)
}

// exceptionReply is the §4.4 shape: ExceptionInfo filled, Succeeded=false, a nil Response.
// wrapper is the response element (ForceResyncExternalResponse or AuthenticateResponse).
func exceptionReply(wrapper string, ex exceptionInfo) reply {
	return soapReply(func(b *bytes.Buffer) {
		writeHeaders(b, &ex)
		b.WriteString(`<s:Body><` + wrapper + ` xmlns="` + ns88 + `">`)
		b.WriteString(`<Response i:nil="true" xmlns:i="` + nsXSI + `"/>`)
		if wrapper == "AuthenticateResponse" {
			b.WriteString(`<Credentials i:nil="true" xmlns:i="` + nsXSI + `"/>`)
			b.WriteString(`<AuthenticationSucceeded>false</AuthenticationSucceeded>`)
		}
		b.WriteString(`</` + wrapper + `></s:Body>`)
	})
}

// authenticateReply is SoPrincipal's AuthenticateResponse (§7.1). On refusal Response and
// Credentials are nil and AuthenticationSucceeded is false; it is not an exception.
func authenticateReply(user, ticket, tenant string) reply {
	return soapReply(func(b *bytes.Buffer) {
		writeHeaders(b, nil)
		b.WriteString(`<s:Body><AuthenticateResponse xmlns="` + ns88 + `">`)
		if ticket == "" {
			b.WriteString(`<Response i:nil="true" xmlns:i="` + nsXSI + `"/>`)
			b.WriteString(`<Credentials i:nil="true" xmlns:i="` + nsXSI + `"/>`)
			b.WriteString(`<AuthenticationSucceeded>false</AuthenticationSucceeded>`)
		} else {
			// A minimal SoPrincipalCarrier: the members a client could plausibly read. The
			// real carrier has ~30 members, all minOccurs=0.
			b.WriteString(`<Response>`)
			b.WriteString(`<UserType>InternalAssociate</UserType>`)
			b.WriteString(`<Associate>` + esc(user) + `</Associate>`)
			b.WriteString(`<AssociateId>1</AssociateId>`)
			b.WriteString(`<FullName>` + esc(user) + `</FullName>`)
			b.WriteString(`<DatabaseContextIdentifier>` + esc(tenant) + `</DatabaseContextIdentifier>`)
			b.WriteString(`</Response>`)
			b.WriteString(`<Credentials><Ticket>` + esc(ticket) + `</Ticket></Credentials>`)
			b.WriteString(`<AuthenticationSucceeded>true</AuthenticationSucceeded>`)
		}
		b.WriteString(`</AuthenticateResponse></s:Body>`)
	})
}

// WCF fault codes (§4.4 layer 3, S22).
const (
	nsAddressingNone = "http://schemas.microsoft.com/ws/2005/05/addressing/none"
	nsWCFDispatcher  = "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"
)

// faultReply is an HTTP 500 SOAP 1.1 fault as WCF writes it without exception details.
// code is "s:Name" (SOAP envelope namespace) or "a:Name" with codeNS declared on faultcode.
func faultReply(codeNS, code, text string) reply {
	r := soapReply(func(b *bytes.Buffer) {
		b.WriteString(`<s:Body><s:Fault>`)
		if codeNS != "" {
			b.WriteString(`<faultcode xmlns:a="` + codeNS + `">` + code + `</faultcode>`)
		} else {
			b.WriteString(`<faultcode>` + code + `</faultcode>`)
		}
		b.WriteString(`<faultstring xml:lang="en-US">` + esc(text) + `</faultstring>`)
		b.WriteString(`</s:Fault></s:Body>`)
	})
	r.status = http.StatusInternalServerError
	return r
}

func actionNotSupported(action string) reply {
	return faultReply(nsAddressingNone, "a:ActionNotSupported", "The message with Action '"+action+
		"' cannot be processed at the receiver, due to a ContractFilter mismatch at the EndpointDispatcher. "+
		"This may be because of either a contract mismatch (mismatched Actions between sender and receiver) "+
		"or a binding/security mismatch between the sender and the receiver.  Check that sender and receiver "+
		"have the same contract and the same binding (including security requirements, e.g. Message, "+
		"Transport, None).")
}

func versionMismatch() reply {
	return faultReply("", "s:VersionMismatch", "The envelope version of the incoming message (Soap12 "+
		"("+nsSoap12+")) does not match that of the encoder (Soap11 "+
		"("+nsSoap11+")). Make sure the binding is configured with the same "+
		"version as the expected messages.")
}

func deserializationFailed(e *deserializeError) reply {
	return faultReply(nsWCFDispatcher, "a:DeserializationFailed", e.msg)
}

// unsupportedMediaType is WCF's 415. WCF puts the text in the HTTP reason phrase; Go cannot
// set a reason phrase, so the text is the plain-text body.
func unsupportedMediaType(ct string) reply {
	return reply{status: http.StatusUnsupportedMediaType, contentType: ctText, body: []byte(
		"Cannot process the message because the content type '" + ct +
			"' was not the expected type 'text/xml; charset=utf-8'.")}
}

func plain(status int, text string) reply {
	return reply{status: status, contentType: ctText, body: []byte(text)}
}

// maintenancePage is the 503 answer during outages and injected 503s: an HTML page, not SOAP
// (§4.4: "likely non-SOAP HTTP error page (e.g. 503)" [U]; the page text is ours).
func maintenancePage() reply {
	return reply{status: http.StatusServiceUnavailable, contentType: ctHTML, body: []byte(
		"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n<body><h1>SuperOffice CRM is " +
			"down for maintenance</h1><p>We are performing scheduled maintenance. Please try again shortly.</p>" +
			"</body></html>\n")}
}
