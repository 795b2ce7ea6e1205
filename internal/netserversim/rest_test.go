package netserversim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// postREST sends one WebAPI request and returns status, content type and body.
func postREST(t *testing.T, rs *Running, method, contentType, authz, appToken, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, rs.URL+"/api/v1/Agents/ErpSync/ForceResyncExternal", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if appToken != "" {
		req.Header.Set("SO-AppToken", appToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestRESTStrictness: the WebAPI endpoint refuses what the real one would, with the
// WebAPI's error shapes, and counts like the SOAP endpoint.
func TestRESTStrictness(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{})
	good := "SOTicket " + rs.IssueTicket()
	const body = `{"ErpConnectionId": 3, "ErpActorType": "Customer", "ExternalKeys": ["A-1", "A-2", "A-1"]}`
	tests := []struct {
		name        string
		method, ct  string
		authz, body string
		wantStatus  int
		wantBody    string
	}{
		{"GET", "GET", ctJSON, good, body, 405, "does not support http method"},
		{"text/plain", "POST", "text/plain", good, body, 415, "media type 'text/plain'"},
		{"XML", "POST", "text/xml; charset=utf-8", good, body, 415, "not supported"},
		{"no Authorization", "POST", ctJSON, "", body, 401, `"Error":true`},
		{"Basic scheme", "POST", ctJSON, "Basic dTpw", body, 401, "SOTicket"},
		{"unknown ticket", "POST", ctJSON, "SOTicket 7T:nope==", body, 401, DefaultExceptionMessage},
		{"unknown member", "POST", ctJSON, good, `{"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":["A"],"Extra":1}`, 400, `unknown field \"Extra\"`},
		{"trailing data", "POST", ctJSON, good, body + `{}`, 400, "data after the JSON object"},
		{"not JSON", "POST", ctJSON, good, `<x/>`, 400, "The request is invalid."},
		{"bad actor", "POST", ctJSON, good, `{"ErpConnectionId":3,"ErpActorType":"Customr","ExternalKeys":["A"]}`, 400, "Customr"},
		{"connection id not Int32", "POST", ctJSON, good, `{"ErpConnectionId":3000000000,"ErpActorType":"Customer","ExternalKeys":["A"]}`, 400, "Int32"},
		{"no ExternalKeys", "POST", ctJSON, good, `{"ErpConnectionId":3,"ErpActorType":"Customer"}`, 400, "ExternalKeys is required"},
		{"actor as number, other case", "POST", "application/json", "soticket " + strings.TrimPrefix(good, "SOTicket "), `{"erpConnectionId":3,"erpActorType":4,"externalKeys":["P-1"]}`, 200, `"IsOk":true`},
		{"ok", "POST", ctJSON, good, body, 200, `"Status":"Ok"`},
		{"resync all", "POST", ctJSON, good, `{"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":[]}`, 200, `"AddedRecords":[]`},
	}
	for _, tt := range tests {
		status, ct, got := postREST(t, rs, tt.method, tt.ct, tt.authz, "", tt.body)
		if status != tt.wantStatus || !strings.Contains(got, tt.wantBody) {
			t.Errorf("%s: HTTP %d %s, want %d containing %q", tt.name, status, got, tt.wantStatus, tt.wantBody)
		}
		if status != 405 && status != 413 && !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: content type %q, want JSON", tt.name, ct)
		}
	}
	if rs.ResyncCount("A-1") != 1 || rs.ResyncCount("A-2") != 1 || rs.Seen("A-1") != 2 || rs.ResyncCount("P-1") != 1 {
		t.Errorf("counters: A-1 resynced %d seen %d, A-2 %d, P-1 %d", rs.ResyncCount("A-1"), rs.Seen("A-1"), rs.ResyncCount("A-2"), rs.ResyncCount("P-1"))
	}
	c := rs.Counts()
	if c.ResyncAll != 1 || c.Calls[OutcomeOK] != 3 || c.Calls[OutcomeBadRequest] != 9 || c.Calls[OutcomeException] != 3 {
		t.Errorf("counts = %+v", c)
	}
}

// TestRESTReplies: the reply JSON of a success, a poison batch (Changes null), an Online
// call without the app token and an app not granted the agent.
func TestRESTReplies(t *testing.T) {
	t.Parallel()
	rs := start(t, Config{Online: true, AppToken: "APP-SECRET-1"})
	rs.SetPoison("BAD")
	authz := "SOTicket " + rs.IssueTicket()
	status, _, got := postREST(t, rs, "POST", ctJSON, authz, "APP-SECRET-1", `{"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":["K-1"]}`)
	var ok struct {
		IsOk    bool
		Status  string
		Changes struct{ AddedRecords, UpdatedRecords, DeletedRecords []struct{ Tablename string } }
	}
	if err := json.Unmarshal([]byte(got), &ok); status != 200 || err != nil || !ok.IsOk || ok.Status != "Ok" ||
		len(ok.Changes.AddedRecords)+len(ok.Changes.UpdatedRecords)+len(ok.Changes.DeletedRecords) != 1 {
		t.Errorf("success: HTTP %d %s", status, got)
	}
	status, _, got = postREST(t, rs, "POST", ctJSON, authz, "APP-SECRET-1", `{"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":["K-2","BAD"]}`)
	if status != 200 || !strings.Contains(got, `"IsOk":false`) || !strings.Contains(got, `"Changes":null`) || !strings.Contains(got, `"ErrorCode":"ERP_REJECTED"`) {
		t.Errorf("poison: HTTP %d %s", status, got)
	}
	status, _, got = postREST(t, rs, "POST", ctJSON, authz, "", `{"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":["K-3"]}`)
	if status != 401 || !strings.Contains(got, msgAppToken) {
		t.Errorf("no app token: HTTP %d %s", status, got)
	}
	ng := start(t, Config{ErpSyncNotGranted: true})
	status, _, got = postREST(t, ng, "POST", ctJSON, "SOTicket "+ng.IssueTicket(), "", `{"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":["K-4"]}`)
	if status != 403 || !strings.Contains(got, msgNotGranted) {
		t.Errorf("not granted: HTTP %d %s", status, got)
	}
}
