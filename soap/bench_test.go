package soap

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/sotest"
)

// benchReply builds a WCF-shaped success reply with n updated records, one per key.
func benchReply(n int) []byte {
	var b strings.Builder
	b.WriteString(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>` +
		`<h:ExceptionInfo i:nil="true" xmlns:h="http://www.superoffice.net/ws/crm/NetServer/Services88" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/>` +
		`<h:Succeeded xmlns:h="http://www.superoffice.net/ws/crm/NetServer/Services88">true</h:Succeeded></s:Header><s:Body>` +
		`<ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance">` +
		`<TableRight i:nil="true"/><FieldProperties i:nil="true"/><IsOk>true</IsOk><UserExplanation i:nil="true"/><TechExplanation i:nil="true"/><ErrorCode i:nil="true"/>` +
		`<Changes><TableRight i:nil="true"/><FieldProperties i:nil="true"/><AddedRecords/><UpdatedRecords>`)
	for i := range n {
		fmt.Fprintf(&b, `<ChangedDataItem><TableRight i:nil="true"/><FieldProperties i:nil="true"/><Tablename>contact</Tablename><RecordId>%d</RecordId></ChangedDataItem>`, 1000+i)
	}
	b.WriteString(`</UpdatedRecords><DeletedRecords/></Changes><Status>Ok</Status></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`)
	return []byte(b.String())
}

func BenchmarkEncodeRequest(b *testing.B) {
	for _, n := range sotest.BenchSizes {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			keys := sotest.BenchKeys(n)
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				for _, k := range keys {
					if err := erpsync.ValidateKey(k); err != nil {
						b.Fatal(err)
					}
				}
				buf = appendForceResyncExternal(buf[:0], false, sotest.AppToken, sotest.Ticket, 3, erpsync.ActorCustomer, keys)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkDecodeResponse(b *testing.B) {
	benchDecode(b, func(data []byte) (int, error) {
		resp, err := ParseResponse(data)
		if err != nil {
			return 0, err
		}
		return len(resp.Changes.Updated), nil
	})
}

// benchDecode measures decode on a reply of each of sotest.BenchSizes; decode returns how
// many updated records it read, which must be one per key.
func benchDecode(b *testing.B, decode func(data []byte) (updated int, err error)) {
	for _, n := range sotest.BenchSizes {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			data := benchReply(n)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if updated, err := decode(data); err != nil || updated != n {
					b.Fatalf("%d updated records, want %d: %v", updated, n, err)
				}
			}
		})
	}
}

// The baselines: the same envelope written and read with plain encoding/xml struct
// marshalling, measured in the same run so the hand-written encoder and the tolerant
// parser can be compared with the obvious implementation on this machine.

type baselineEnvelope struct {
	XMLName xml.Name `xml:"http://schemas.xmlsoap.org/soap/envelope/ Envelope"`
	Header  struct {
		AppToken string `xml:"http://www.superoffice.net/ws/crm/NetServer/Services88 ApplicationToken"`
		Ticket   string `xml:"http://www.superoffice.net/ws/crm/NetServer/Services88 Credentials>Ticket"`
	} `xml:"http://schemas.xmlsoap.org/soap/envelope/ Header"`
	Body struct {
		Call struct {
			ErpConnectionID int      `xml:"ErpConnectionId"`
			ErpActorType    string   `xml:"ErpActorType"`
			Keys            []string `xml:"ExternalKeys>string"`
		} `xml:"http://www.superoffice.net/ws/crm/NetServer/Services88 ForceResyncExternal"`
	} `xml:"http://schemas.xmlsoap.org/soap/envelope/ Body"`
}

func BenchmarkEncodeRequestBaseline(b *testing.B) {
	for _, n := range sotest.BenchSizes {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			keys := sotest.BenchKeys(n)
			var env baselineEnvelope
			env.Header.AppToken, env.Header.Ticket = sotest.AppToken, sotest.Ticket
			env.Body.Call.ErpConnectionID, env.Body.Call.ErpActorType, env.Body.Call.Keys = 3, "Customer", keys
			b.ReportAllocs()
			for b.Loop() {
				if _, err := xml.Marshal(&env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type baselineReply struct {
	Body struct {
		Resp struct {
			Response struct {
				IsOk    bool   `xml:"IsOk"`
				Status  string `xml:"Status"`
				Changes struct {
					Added   []baselineItem `xml:"AddedRecords>ChangedDataItem"`
					Updated []baselineItem `xml:"UpdatedRecords>ChangedDataItem"`
					Deleted []baselineItem `xml:"DeletedRecords>ChangedDataItem"`
				} `xml:"Changes"`
			} `xml:"Response"`
		} `xml:"ForceResyncExternalResponse"`
	} `xml:"Body"`
}

type baselineItem struct {
	Tablename string `xml:"Tablename"`
	RecordID  int32  `xml:"RecordId"`
}

func BenchmarkDecodeResponseBaseline(b *testing.B) {
	benchDecode(b, func(data []byte) (int, error) {
		var r baselineReply
		err := xml.Unmarshal(data, &r)
		return len(r.Body.Resp.Response.Changes.Updated), err
	})
}
