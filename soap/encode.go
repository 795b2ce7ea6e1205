package soap

import (
	"strconv"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/xmltext"
)

// The SOAP action and the service path of ErpSync (protocol reference §3); the namespaces
// are internal/xmltext's.
const (
	actionForceResyncExternal = xmltext.NetServer + "/ErpSync/ForceResyncExternal"

	pathErpSync = "/Remote/Services88/ErpSync.svc"
)

const xmlDecl = `<?xml version="1.0" encoding="utf-8"?>` + "\n"

// appendEnvelopeStart writes the XML declaration, <s:Envelope>, the header block and
// <s:Body>. The ApplicationToken header is left out when appToken is empty (on-site
// installations do not check it), Credentials when ticket is empty.
func appendEnvelopeStart(b []byte, soap12 bool, appToken, ticket string) []byte {
	b = append(b, xmlDecl...)
	if soap12 {
		b = append(b, `<s:Envelope xmlns:s="`+xmltext.SOAP12+`">`...)
	} else {
		b = append(b, `<s:Envelope xmlns:s="`+xmltext.SOAP11+`">`...)
	}
	b = append(b, `<s:Header>`...)
	if appToken != "" {
		b = append(b, `<ApplicationToken xmlns="`+xmltext.NetServer+`">`...)
		b = xmltext.AppendEscaped(b, appToken)
		b = append(b, `</ApplicationToken>`...)
	}
	if ticket != "" {
		b = append(b, `<Credentials xmlns="`+xmltext.NetServer+`"><Ticket>`...)
		b = xmltext.AppendEscaped(b, ticket)
		b = append(b, `</Ticket></Credentials>`...)
	}
	return append(b, `</s:Header><s:Body>`...)
}

func appendEnvelopeEnd(b []byte) []byte {
	return append(b, `</s:Body></s:Envelope>`...)
}

// appendForceResyncExternal appends a complete ForceResyncExternal request envelope: body
// children in WSDL order (ErpConnectionId, ErpActorType, ExternalKeys), keys as <a:string>
// in the Arrays namespace. An empty keys slice is written as an explicit empty array.
// Keys must already have passed erpsync.ValidateKey; characters XML cannot carry become U+FFFD.
func appendForceResyncExternal(b []byte, soap12 bool, appToken, ticket string, erpConnectionID int, actor erpsync.ActorType, keys []string) []byte {
	b = appendEnvelopeStart(b, soap12, appToken, ticket)
	b = append(b, `<ForceResyncExternal xmlns="`+xmltext.NetServer+`"><ErpConnectionId>`...)
	b = strconv.AppendInt(b, int64(erpConnectionID), 10)
	b = append(b, `</ErpConnectionId><ErpActorType>`...)
	b = append(b, actor.String()...)
	b = append(b, `</ErpActorType>`...)
	if len(keys) == 0 {
		b = append(b, `<ExternalKeys/>`...)
	} else {
		b = append(b, `<ExternalKeys xmlns:a="`+xmltext.Arrays+`">`...)
		for _, k := range keys {
			b = append(b, `<a:string>`...)
			b = xmltext.AppendEscaped(b, k)
			b = append(b, `</a:string>`...)
		}
		b = append(b, `</ExternalKeys>`...)
	}
	b = append(b, `</ForceResyncExternal>`...)
	return appendEnvelopeEnd(b)
}

// forceResyncSize estimates the envelope size so the buffer is allocated once.
func forceResyncSize(appToken, ticket string, keys []string) int {
	n := 640 + len(appToken) + len(ticket)
	for _, k := range keys {
		n += len(k) + len(`<a:string></a:string>`)
	}
	return n
}
