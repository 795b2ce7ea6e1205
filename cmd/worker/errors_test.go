package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/golden"
	"github.com/erpresync/erpresync/rest"
	"github.com/erpresync/erpresync/soap"
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

// TestConfigErrorsNameNoGoNames: every refusal of the libraries the worker configures is an
// *erpsync.ConfigError that speaks of the value in words; the worker reports a field a
// setting feeds under the setting's name; and every field the settings table lists exists.
func TestConfigErrorsNameNoGoNames(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled: validation fails first
	defer rdb.Close()
	const base = "https://sod.superoffice.com/Cust1"
	src := auth.NewStaticTicket("t")
	// The key is parsed last, so every other refusal comes before it is looked at.
	su := auth.SystemUserAuthConfig{LoginURL: base + "/Login", SystemToken: "t", PrivateKey: []byte("not a key"), AppToken: "a", ContextIdentifier: "Cust1"}
	pw := auth.PasswordAuthConfig{BaseURL: base, UserName: "u", Password: "p"}
	fc := flow.Config{Redis: rdb, Tenant: "t"}
	refusals := []func() error{
		func() error { _, err := soap.New(soap.Config{Auth: src}); return err },
		func() error { _, err := soap.New(soap.Config{BaseURL: "ftp://x/y", Auth: src}); return err },
		func() error { _, err := soap.New(soap.Config{BaseURL: base}); return err },
		func() error {
			_, err := soap.New(soap.Config{BaseURL: base, Auth: src, MaxResponseBytes: -1})
			return err
		},
		func() error { _, err := soap.New(soap.Config{BaseURL: base, Auth: src, AppToken: "\x01"}); return err },
		func() error { _, err := rest.New(rest.Config{Auth: src}); return err },
		func() error { _, err := rest.New(rest.Config{BaseURL: base + "/api/v1/x", Auth: src}); return err },
		func() error { _, err := rest.New(rest.Config{BaseURL: base}); return err },
		func() error {
			_, err := rest.New(rest.Config{BaseURL: base, Auth: src, MaxResponseBytes: -1})
			return err
		},
		func() error { _, err := rest.New(rest.Config{BaseURL: base, Auth: src, AppToken: "a\nb"}); return err },
		func() error { c := pw; c.BaseURL = ""; _, err := auth.NewPasswordAuth(c); return err },
		func() error { c := pw; c.BaseURL = "x"; _, err := auth.NewPasswordAuth(c); return err },
		func() error { c := pw; c.UserName = ""; _, err := auth.NewPasswordAuth(c); return err },
		func() error { c := pw; c.Password = ""; _, err := auth.NewPasswordAuth(c); return err },
		func() error { c := pw; c.Password = "\x01"; _, err := auth.NewPasswordAuth(c); return err },
		func() error { c := pw; c.AppToken = "\x01"; _, err := auth.NewPasswordAuth(c); return err },
		func() error { c := su; c.LoginURL = ""; _, err := auth.NewSystemUserAuth(c); return err },
		func() error { c := su; c.LoginURL = "x"; _, err := auth.NewSystemUserAuth(c); return err },
		func() error { c := su; c.SystemToken = ""; _, err := auth.NewSystemUserAuth(c); return err },
		func() error { c := su; c.PrivateKey = nil; _, err := auth.NewSystemUserAuth(c); return err },
		func() error { c := su; c.PrivateKey = []byte("x"); _, err := auth.NewSystemUserAuth(c); return err },
		func() error { c := su; c.AppToken = ""; _, err := auth.NewSystemUserAuth(c); return err },
		func() error { c := su; c.ContextIdentifier = ""; _, err := auth.NewSystemUserAuth(c); return err },
		func() error { c := fc; c.Redis = nil; _, err := flow.New(c); return err },
		func() error { c := fc; c.Tenant = ""; _, err := flow.New(c); return err },
		func() error { c := fc; c.Rate = -1; _, err := flow.New(c); return err },
		func() error { c := fc; c.Burst = -1; _, err := flow.New(c); return err },
		func() error { c := fc; c.MaxConcurrency = -1; _, err := flow.New(c); return err },
		func() error { c := fc; c.ConnThreshold = 2; _, err := flow.New(c); return err },
		func() error { c := fc; c.Lease = 1; _, err := flow.New(c); return err },
		func() error { c := fc; c.Adaptive = true; _, err := flow.New(c); return err },
	}
	mapped := map[string]string{}
	for _, s := range settings {
		for _, f := range s.Fields {
			mapped[f] = s.Env
		}
	}
	for i, refuse := range refusals {
		err := refuse()
		var ce *erpsync.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("refusal %d: %v is no *erpsync.ConfigError", i, err)
			continue
		}
		shown := settingError(err).Error()
		for _, msg := range []string{err.Error(), shown} {
			if m := goName.FindString(msg); m != "" {
				t.Errorf("refusal %d (%s): %q names %q", i, ce.Field, msg, m)
			}
		}
		if env, ok := mapped[ce.Field]; ok && !strings.HasPrefix(shown, env+" ") {
			t.Errorf("refusal %d (%s): the worker says %q, want it to start with %s", i, ce.Field, shown, env)
		}
	}
	// The settings table's fields exist, so a renamed field cannot fall out of the mapping.
	types := map[string]reflect.Type{
		"soap.Config": reflect.TypeFor[soap.Config](), "rest.Config": reflect.TypeFor[rest.Config](), "flow.Config": reflect.TypeFor[flow.Config](),
		"auth.PasswordAuthConfig": reflect.TypeFor[auth.PasswordAuthConfig](), "auth.SystemUserAuthConfig": reflect.TypeFor[auth.SystemUserAuthConfig](),
	}
	for field, env := range mapped {
		i := strings.LastIndexByte(field, '.')
		typ, ok := types[field[:i]]
		if !ok {
			t.Errorf("%s lists %s, of a type this test does not know", env, field)
			continue
		}
		if _, ok := typ.FieldByName(field[i+1:]); !ok {
			t.Errorf("%s lists %s, which does not exist", env, field)
		}
	}
}
