package tasks

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// TestPayloadsOfEarlierVersions: batches and trickle keys queued before the domain types
// left the soap package still decode, validate and re-encode byte for byte, so a worker of
// this version runs what an older producer queued.
func TestPayloadsOfEarlierVersions(t *testing.T) {
	t.Parallel()
	const batch = `{"run":"night-1","erp_connection":3,"actor_type":"Customer","keys":["10001","10002"],"seq":7,"source":"cli","parent":"night-1:b000006","depth":1,"id":"night-1:b000006.1"}`
	var b Batch
	if err := json.Unmarshal([]byte(batch), &b); err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if b.ActorType != erpsync.ActorCustomer || len(b.Keys) != 2 || b.Depth != 1 {
		t.Errorf("decoded %+v", b)
	}
	if out, _ := json.Marshal(b); string(out) != batch {
		t.Errorf("re-encoded\n%s\nwant\n%s", out, batch)
	}

	const trickle = `{"erp_connection":3,"actor_type":"Sale","key":"S-1","at":"2026-11-30T23:59:58Z"}`
	var tr Trickle
	if err := json.Unmarshal([]byte(trickle), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.ActorType != erpsync.ActorSale || !tr.At.Equal(time.Date(2026, 11, 30, 23, 59, 58, 0, time.UTC)) {
		t.Errorf("decoded %+v", tr)
	}
	if out, _ := json.Marshal(tr); string(out) != trickle {
		t.Errorf("re-encoded\n%s\nwant\n%s", out, trickle)
	}

	// An actor type given by its ordinal, as the enum allows, decodes too.
	if err := json.Unmarshal([]byte(`{"run":"r","erp_connection":1,"actor_type":"4","keys":["k"]}`), &b); err != nil || b.ActorType != erpsync.ActorPerson {
		t.Errorf("ordinal actor type: %v, %v", b.ActorType, err)
	}
}
