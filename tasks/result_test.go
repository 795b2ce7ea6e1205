package tasks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// TestResultCountsChanges: the result stored with a task counts the changed rows by kind and
// table and does not repeat them (the ledger keeps them).
func TestResultCountsChanges(t *testing.T) {
	t.Parallel()
	resp := &erpsync.Result{IsOk: true, Status: erpsync.StatusOk, Changes: erpsync.Changes{Updated: []erpsync.ChangedItem{
		{Table: "contact", RecordID: 1}, {Table: "contact", RecordID: 2}, {Table: "contact", RecordID: 3}}}}
	resp.Changes.Added = []erpsync.ChangedItem{{Table: "person", RecordID: 424242}}
	b, err := json.Marshal(newResult("r:b000000", "r", 3, resp, time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"batch_id":"r:b000000","run":"r","keys":3,"response":{"is_ok":true,"status":"Ok",` +
		`"records":{"added":{"person":1},"updated":{"contact":3}},"changes":"kept in the run ledger: enqueue changes r"},` +
		`"at":"2026-11-27T02:00:00Z"}`
	if string(b) != want {
		t.Errorf("result =\n%s\nwant\n%s", b, want)
	}
	if strings.Contains(string(b), "424242") {
		t.Error("the result repeats a record id")
	}
}
