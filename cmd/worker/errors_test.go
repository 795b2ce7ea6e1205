package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/internal/golden"
	"github.com/erpresync/erpresync/internal/tenant"
)

// goName matches what an operator must never read: a Go type or field of ours ("Config.Tenant",
// "PasswordAuthConfig", "auth.NewStaticTicket"). SuperOffice's own operation names
// (ErpSync.ForceResyncExternal) are fine.
var goName = regexp.MustCompile(`[A-Za-z]*Config\b|\b(soap|rest|auth|flow|tasks|intake|nightly|retry|erpsync)\.[A-Z]`)

// TestErrorLinesGolden: what the worker says about a configuration or login it cannot use,
// one line each, naming the setting to change; the lines are in testdata/errors.golden
// (go test -run TestErrorLinesGolden -update rewrites it).
func TestErrorLinesGolden(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	badKey := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(badKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	call := []string{"call", "--erp-connection", "3", "--actor-type", "Customer", "K1"}
	password := map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_USERNAME": testUser, "SUPEROFFICE_PASSWORD": testPassword}
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "bare worker", env: map[string]string{}},
		{name: "URL not http", env: map[string]string{"SUPEROFFICE_URL": "ftp://sod.superoffice.com/Cust1", "SUPEROFFICE_TICKET": "7T:x"}},
		{name: "URL of a service", env: map[string]string{"SUPEROFFICE_URL": "https://sod.superoffice.com/Cust1/Remote/Services88/ErpSync.svc", "SUPEROFFICE_TICKET": "7T:x"}},
		{name: "password XML cannot carry", env: map[string]string{"SUPEROFFICE_URL": "https://crm.example.com/SuperOffice", "SUPEROFFICE_USERNAME": "u", "SUPEROFFICE_PASSWORD": "a\x01b"}},
		{name: "private key unusable", env: map[string]string{"SUPEROFFICE_URL": "https://sod.superoffice.com/Cust1", "SUPEROFFICE_SYSTEM_TOKEN": "t", "SUPEROFFICE_PRIVATE_KEY_FILE": badKey,
			"SUPEROFFICE_CONTEXT_ID": "Cust1", "SUPEROFFICE_LOGIN_URL": "https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate", "SUPEROFFICE_APP_TOKEN": "a"}},
		{name: "rate limit", env: map[string]string{"SUPEROFFICE_URL": "https://sod.superoffice.com/Cust1", "SUPEROFFICE_TICKET": "7T:x", "SUPEROFFICE_RATE_LIMIT": "-1"}},
		{name: "call: wrong password", args: call, env: withEnv(password, "SUPEROFFICE_PASSWORD", "wrong")},
		{name: "call: wrong password over REST", args: call, env: withEnv(withEnv(password, "SUPEROFFICE_PASSWORD", "wrong"), "SUPEROFFICE_API", "rest")},
		{name: "call: wrong tenant path", args: call, env: withEnv(password, "SUPEROFFICE_URL", sim.URL+"-nope")},
		{name: "call: wrong tenant path with a ticket over REST", args: call, env: map[string]string{"SUPEROFFICE_URL": sim.URL + "-nope", "SUPEROFFICE_TICKET": "7T:x", "SUPEROFFICE_API": "rest"}},
		{name: "call: ticket rejected", args: call, env: map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_TICKET": "7T:not-issued"}},
		{name: "demo -h", args: []string{"demo", "-h"}, env: map[string]string{}},
	}
	var out strings.Builder
	for _, tt := range tests {
		env := withEnv(tt.env, "WORKER_HTTP_ADDR", "off")
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr, envFunc(env))
		text := stderr.String()
		if i := strings.Index(text, "\nFlags:\n"); i >= 0 { // the flag list is the settings table's
			text = text[:i+len("\nFlags:\n")] + "  ...\n"
		}
		text = strings.ReplaceAll(text, sim.URL, "$SIM")
		var vars []string
		for k, v := range tt.env {
			vars = append(vars, fmt.Sprintf("%s=%q ", k, strings.ReplaceAll(v, sim.URL, "$SIM")))
		}
		slices.Sort(vars)
		vars = slices.DeleteFunc(vars, func(s string) bool { return strings.HasPrefix(s, "SUPEROFFICE_PRIVATE_KEY_FILE=") })
		fmt.Fprintf(&out, "## %s\n$ %sworker %s\n%sexit %d\n\n", tt.name, strings.Join(vars, ""), strings.Join(tt.args, " "), logMessages(text), code)
		if tt.name == "demo -h" {
			continue
		}
		if n := strings.Count(strings.TrimSpace(text), "\n") + 1; n != 1 {
			t.Errorf("%s: %d lines, want one:\n%s", tt.name, n, text)
		}
		if m := goName.FindString(text); m != "" {
			t.Errorf("%s: names %q, a Go name of ours:\n%s", tt.name, m, text)
		}
	}
	golden.Check(t, "errors.golden", []byte(out.String()), *update)
}

// logMessages turns the JSON log lines of s into "level: message" (the time changes).
func logMessages(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		var e struct{ Level, Message string }
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &e) == nil {
			fmt.Fprintf(&b, "%s: %s\n", e.Level, e.Message)
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// TestSettingsNameTheTenant: every field of the implicit tenant is named by exactly one
// setting, so each of the tenant's errors speaks of a setting an operator can change. (The
// libraries' refusals are mapped to the tenant's fields in internal/tenant.)
func TestSettingsNameTheTenant(t *testing.T) {
	t.Parallel()
	named := map[tenant.Field]string{}
	for _, s := range settings {
		if s.Spec == 0 {
			continue
		}
		if other, ok := named[s.Spec]; ok {
			t.Errorf("%s and %s both feed %s", other, s.Env, s.Spec)
		}
		named[s.Spec] = s.Env
	}
	for _, f := range tenant.Fields() {
		switch f {
		case tenant.FieldID, tenant.FieldEnvironment, tenant.FieldIntakeTokens: // the tenants file's only
			continue
		}
		if named[f] == "" {
			t.Errorf("no setting feeds the tenant's %s", f)
		}
	}
}
