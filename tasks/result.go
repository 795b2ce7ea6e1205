package tasks

import (
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// result is what the handler stores with a completed task (asynqmon shows it; asynq keeps it
// for the task's Retention). It holds SuperOffice's answer without its change items: those
// are kept once, in the ledger (Ledger.Changes, `enqueue changes RUN`), and the result only
// counts them.
type result struct {
	BatchID  string         `json:"batch_id"`
	Run      string         `json:"run"`
	Keys     int            `json:"keys"`
	Response resultResponse `json:"response"`
	At       time.Time      `json:"at"`
}

// resultResponse is erpsync.Result with its Changes counted instead of listed.
type resultResponse struct {
	IsOk   bool   `json:"is_ok"`
	Status string `json:"status"`
	// Records counts the changed CRM rows: kind ("added", "updated", "deleted") → table → rows.
	Records map[string]map[string]int `json:"records"`
	// Changes says where the change items are.
	Changes string `json:"changes"`
}

func newResult(batchID, run string, keys int, resp *erpsync.Result, at time.Time) result {
	rec := map[string]map[string]int{}
	for _, l := range []struct {
		kind string
		in   []erpsync.ChangedItem
	}{{KindAdded, resp.Changes.Added}, {KindUpdated, resp.Changes.Updated}, {KindDeleted, resp.Changes.Deleted}} {
		for _, it := range l.in {
			if rec[l.kind] == nil {
				rec[l.kind] = map[string]int{}
			}
			rec[l.kind][it.Table]++
		}
	}
	status := resp.Status.String()
	if resp.Status == erpsync.StatusUnknown && resp.StatusName != "" {
		status = resp.StatusName
	}
	return result{BatchID: batchID, Run: run, Keys: keys, At: at,
		Response: resultResponse{IsOk: resp.IsOk, Status: status, Records: rec,
			Changes: "kept in the run ledger: enqueue changes " + run}}
}
