package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/internal/netserversim"
)

func envFunc(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCallCommand(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	sim.SetPoison("BAD-1")
	closedAddr := freeAddr(t)
	base := map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_USERNAME": testUser, "SUPEROFFICE_PASSWORD": testPassword}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantOut    string // substring of stdout
		wantErr    string // substring of stderr
		wantNoSend bool
	}{
		{name: "ok", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1", "K2"}, env: base, wantCode: 0, wantOut: `"is_ok": true`},
		{name: "business failure", args: []string{"--erp-connection", "3", "--actor-type", "customer", "K1", "BAD-1"}, env: base, wantCode: 1, wantOut: `"error_code": "ERP_REJECTED"`, wantErr: "worker call: SuperOffice answered IsOk=false (ERP_REJECTED"},
		{name: "no keys", args: []string{"--erp-connection", "3", "--actor-type", "Customer"}, env: base, wantCode: 2, wantErr: "no keys given", wantNoSend: true},
		{name: "bad actor", args: []string{"--erp-connection", "3", "--actor-type", "Contact", "K1"}, env: base, wantCode: 2, wantErr: `--actor-type: actor type "Contact": want one of Customer`, wantNoSend: true},
		{name: "bad connection", args: []string{"--erp-connection", "x", "--actor-type", "Customer", "K1"}, env: base, wantCode: 2, wantErr: `--erp-connection "x"`, wantNoSend: true},
		{name: "ok over REST", args: []string{"--superoffice-api", "rest", "--erp-connection", "3", "--actor-type", "Customer", "K1", "K2"}, env: base, wantCode: 0, wantOut: `"is_ok": true`},
		{name: "business failure over REST", args: []string{"--erp-connection", "3", "--actor-type", "customer", "K1", "BAD-1"}, env: withEnv(base, "SUPEROFFICE_API", "rest"), wantCode: 1, wantOut: `"error_code": "ERP_REJECTED"`, wantErr: "worker call: SuperOffice answered IsOk=false (ERP_REJECTED"},
		{name: "invalid ticket over REST", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_API": "rest", "SUPEROFFICE_TICKET": "7T:not-issued-secret"}, wantCode: 2, wantErr: "HTTP 401"},
		{name: "unknown API", args: []string{"--superoffice-api", "grpc", "--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: base, wantCode: 2, wantErr: `SUPEROFFICE_API="grpc": want soap or rest`, wantNoSend: true},
		{name: "SOAP 1.2 over REST", args: []string{"--superoffice-api", "rest", "--superoffice-soap12", "--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: base, wantCode: 2, wantErr: "SUPEROFFICE_SOAP12", wantNoSend: true},
		{name: "key too long", args: []string{"--erp-connection", "3", "--actor-type", "Customer", strings.Repeat("k", 255)}, env: base, wantCode: 2, wantErr: "key 1:", wantNoSend: true},
		{name: "no url", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_TICKET": "7T:x"}, wantCode: 2, wantErr: "SUPEROFFICE_URL is not set", wantNoSend: true},
		{name: "no credentials", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_URL": sim.URL}, wantCode: 2, wantErr: "no SuperOffice credentials", wantNoSend: true},
		{name: "password without user", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_PASSWORD": "p"}, wantCode: 2, wantErr: "SUPEROFFICE_PASSWORD is set but SUPEROFFICE_USERNAME is not", wantNoSend: true},
		{name: "two auth modes", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_TICKET": "7T:x", "SUPEROFFICE_SYSTEM_TOKEN": "tok"}, wantCode: 2, wantErr: "contradictory SuperOffice credentials", wantNoSend: true},
		{name: "refused login", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_USERNAME": testUser, "SUPEROFFICE_PASSWORD": "wrong-secret-pw"}, wantCode: 2, wantErr: "refused"},
		{name: "unreachable", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_URL": "http://" + closedAddr + "/Cust1", "SUPEROFFICE_TICKET": "7T:secret-ticket"}, wantCode: 2, wantErr: "connection refused"},
		{name: "invalid ticket", args: []string{"--erp-connection", "3", "--actor-type", "Customer", "K1"}, env: map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_TICKET": "7T:not-issued-secret"}, wantCode: 2, wantErr: "SoSecurityException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sim.Counts().TotalCalls()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"call"}, tt.args...), &stdout, &stderr, envFunc(tt.env))
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.wantOut)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.wantErr)
			}
			if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); tt.wantCode != 0 && n > 0 {
				t.Errorf("want a one-line reason, got %d lines: %s", n+1, stderr.String())
			}
			for _, secret := range []string{"wrong-secret-pw", "not-issued-secret", "secret-ticket", testPassword} {
				if strings.Contains(stdout.String()+stderr.String(), secret) {
					t.Errorf("output leaks a secret %q", secret)
				}
			}
			if tt.wantNoSend && sim.Counts().TotalCalls() != before {
				t.Errorf("a call reached SuperOffice although the input was refused")
			}
		})
	}
}

// withEnv is env with one more variable.
func withEnv(env map[string]string, k, v string) map[string]string {
	out := maps.Clone(env)
	out[k] = v
	return out
}

func TestCallPrintsChanges(t *testing.T) {
	t.Parallel()
	forEachAPI(t, testCallPrintsChanges)
}

func testCallPrintsChanges(t *testing.T, api string) {
	sim := startSim(t)
	env := map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_API": api, "SUPEROFFICE_TICKET": sim.IssueTicket()}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"call", "--erp-connection", "7", "--actor-type", "Person", "P1"}, &stdout, &stderr, envFunc(env)); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got struct {
		IsOk    bool   `json:"is_ok"`
		Status  string `json:"status"`
		Changes map[string][]struct {
			Table    string `json:"table"`
			RecordID int32  `json:"record_id"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	want := netserversim.ExpectedChange(netserversim.ActorType(4), "P1")
	items := got.Changes[string(want.Kind)]
	if !got.IsOk || got.Status != "Ok" || len(items) != 1 || items[0].Table != want.Table || items[0].RecordID != want.RecordID {
		t.Fatalf("printed %+v, want one %s item %+v", got, want.Kind, want)
	}
	for _, kind := range []string{"added", "updated", "deleted"} {
		if got.Changes[kind] == nil {
			t.Errorf("changes.%s is null, want a list", kind)
		}
	}
}
