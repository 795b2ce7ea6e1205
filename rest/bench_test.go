package rest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/sotest"
)

// benchReply builds a WebAPI-shaped success reply with n updated records, one per key.
func benchReply(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"IsOk":true,"UserExplanation":"","TechExplanation":"","ErrorCode":"","Changes":{"AddedRecords":[],"UpdatedRecords":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"Tablename":"contact","RecordId":%d,"TableRight":null,"FieldProperties":{}}`, 1000+i)
	}
	b.WriteString(`],"DeletedRecords":[],"TableRight":null,"FieldProperties":{}},"Status":"Ok","TableRight":null,"FieldProperties":{}}`)
	return []byte(b.String())
}

// The baseline: the same request and reply through encoding/json with plain structs.
type plainRequest struct {
	ErpConnectionId int
	ErpActorType    string
	ExternalKeys    []string
}

type plainItem struct {
	Tablename string
	RecordId  int32
}

type plainReply struct {
	IsOk            bool
	UserExplanation string
	TechExplanation string
	ErrorCode       string
	Status          string
	Changes         *struct {
		AddedRecords, UpdatedRecords, DeletedRecords []plainItem
	}
}

func BenchmarkEncodeRequest(b *testing.B) {
	for _, n := range sotest.BenchSizes {
		keys := sotest.BenchKeys(n)
		b.Run("codec/keys="+strconv.Itoa(n), func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				if err := erpsync.ValidateRequest(3, erpsync.ActorCustomer, keys, false); err != nil {
					b.Fatal(err)
				}
				buf = appendRequest(buf[:0], 3, erpsync.ActorCustomer, keys)
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run("encoding-json/keys="+strconv.Itoa(n), func(b *testing.B) {
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				out, err = json.Marshal(plainRequest{ErpConnectionId: 3, ErpActorType: erpsync.ActorCustomer.String(), ExternalKeys: keys})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(out)))
		})
	}
}

func BenchmarkDecodeResponse(b *testing.B) {
	for _, n := range sotest.BenchSizes {
		body := benchReply(n)
		b.Run("codec/keys="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := decodeResponse(body, 200)
				if err != nil || len(r.Changes.Updated) != n {
					b.Fatal(r, err)
				}
			}
		})
		b.Run("encoding-json/keys="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var r plainReply
				if err := json.Unmarshal(body, &r); err != nil || len(r.Changes.UpdatedRecords) != n {
					b.Fatal(err)
				}
			}
		})
	}
}
