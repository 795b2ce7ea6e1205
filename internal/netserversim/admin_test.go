package netserversim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func adminDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, drain(t, resp)
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{Admin: true})

	status, body := adminDo(t, http.MethodPost, rs.RootURL+"/_sim/tickets", "")
	var tk struct{ Ticket string }
	if err := json.Unmarshal(body, &tk); status != http.StatusOK || err != nil || !strings.HasPrefix(tk.Ticket, "7T:") {
		t.Fatalf("tickets: %d %s", status, body)
	}

	status, body = adminDo(t, http.MethodPost, rs.RootURL+"/_sim/faults",
		`{"fail503": 1, "throttle": 1, "retry_after": "3s", "poison": ["A-P"], "latency": "0s"}`)
	var st struct {
		Fail503    int      `json:"fail503"`
		Throttle   int      `json:"throttle"`
		RetryAfter string   `json:"retry_after"`
		Poison     []string `json:"poison"`
	}
	if err := json.Unmarshal(body, &st); status != http.StatusOK || err != nil || st.Fail503 != 1 || st.Throttle != 1 ||
		st.RetryAfter != "3s" || len(st.Poison) != 1 {
		t.Fatalf("faults: %d %s", status, body)
	}
	if r := resync(t, rs, tk.Ticket, "Customer", "A-1"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("after fail503: %d", r.status)
	}
	if r := resync(t, rs, tk.Ticket, "Customer", "A-1"); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" {
		t.Fatalf("after throttle: %d %q", r.status, r.header.Get("Retry-After"))
	}
	wantOK(t, resync(t, rs, tk.Ticket, "Customer", "A-1"))

	status, body = adminDo(t, http.MethodGet, rs.RootURL+"/_sim/counts", "")
	var snap Snapshot
	if err := json.Unmarshal(body, &snap); status != http.StatusOK || err != nil {
		t.Fatalf("counts: %d %s", status, body)
	}
	if snap.Resynced["A-1"] != 1 || snap.Calls[OutcomeUnavailable] != 1 || snap.Calls[OutcomeThrottled] != 1 ||
		snap.ChangeCount("contact", ExpectedChange(ActorCustomer, "A-1").Kind) != 1 {
		t.Fatalf("counts = %s", body)
	}

	if status, _ := adminDo(t, http.MethodPost, rs.RootURL+"/_sim/expire-tickets", ""); status != http.StatusNoContent {
		t.Fatalf("expire-tickets: %d", status)
	}
	wantException(t, resync(t, rs, tk.Ticket, "Customer", "A-1"), DefaultExceptionType, DefaultExceptionMessage)

	if status, _ := adminDo(t, http.MethodPost, rs.RootURL+"/_sim/reset", ""); status != http.StatusNoContent {
		t.Fatalf("reset: %d", status)
	}
	if c := rs.Counts(); c.TotalCalls() != 0 {
		t.Fatalf("after reset: %+v", c)
	}

	for _, bad := range []string{`{"latency": "soon"}`, `{"fault_rate": 2}`, `{"fault_kinds": ["meteor"]}`, `{"nope": 1}`, `not json`} {
		if status, body := adminDo(t, http.MethodPost, rs.RootURL+"/_sim/faults", bad); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, status, body)
		}
	}
	if st := rs.Faults(); len(st.Poison) != 1 {
		t.Errorf("a rejected request changed settings: %+v", st)
	}
	if status, _ := adminDo(t, http.MethodGet, rs.RootURL+"/_sim/nothing", ""); status != http.StatusNotFound {
		t.Errorf("unknown admin route: %d", status)
	}

	// Without Config.Admin the routes do not exist.
	off := start(t, Config{})
	if status, _ := adminDo(t, http.MethodGet, off.RootURL+"/_sim/counts", ""); status != http.StatusNotFound {
		t.Errorf("admin disabled: %d, want 404", status)
	}
}

func TestApplyFaultsClear(t *testing.T) {
	t.Parallel()
	srv, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	n, on, rate := 2, true, 0.25
	if err := srv.ApplyFaults(FaultRequest{Drop: &n, Outage: &on, FaultRate: &rate, FaultKinds: []FaultKind{FaultDrop}}); err != nil {
		t.Fatal(err)
	}
	if st := srv.Faults(); st.Drop != 2 || !st.Outage || st.FaultRate != 0.25 || len(st.FaultKinds) != 1 {
		t.Fatalf("state = %+v", st)
	}
	if err := srv.ApplyFaults(FaultRequest{Clear: true}); err != nil {
		t.Fatal(err)
	}
	if st := srv.Faults(); st.Drop != 0 || st.Outage || st.FaultRate != 0 {
		t.Fatalf("after clear: %+v", st)
	}
}
