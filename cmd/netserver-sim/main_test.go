package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/netserversim"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseFlagsAndEnv(t *testing.T) {
	t.Parallel()
	o, err := parse([]string{"-tenant", "FromFlag", "-users", "SAL0:pw, ADMIN:x:y", "-poison", "a,,b "},
		env(map[string]string{
			"NETSERVER_SIM_TENANT":     "FromEnv", // the flag wins
			"NETSERVER_SIM_ONLINE":     "true",
			"NETSERVER_SIM_APP_TOKEN":  "secret",
			"NETSERVER_SIM_TICKET_TTL": "90m",
			"NETSERVER_SIM_FAULT_RATE": "0.25",
		}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Tenant != "FromFlag" || !c.Online || c.AppToken != "secret" || c.TicketTTL != 90*time.Minute ||
		c.Users["SAL0"] != "pw" || c.Users["ADMIN"] != "x:y" || c.Addr != "127.0.0.1:8081" || !c.Admin {
		t.Fatalf("cfg = %+v", c)
	}
	if o.faults.Poison == nil || strings.Join(*o.faults.Poison, ",") != "a,b" || o.faults.FaultRate == nil ||
		*o.faults.FaultRate != 0.25 || len(o.faults.FaultKinds) != 3 {
		t.Fatalf("faults = %+v", o.faults)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"-nope"}, nil, "flag provided but not defined"},
		{"bad env", nil, map[string]string{"NETSERVER_SIM_TICKET_TTL": "forever"}, "NETSERVER_SIM_TICKET_TTL"},
		{"bad user", []string{"-users", "nobody"}, nil, "-users"},
		{"missing key file", []string{"-system-user-key", "/nonexistent.pem"}, nil, "-system-user-key"},
		{"stray argument", []string{"extra"}, nil, "unexpected arguments"},
	}
	for _, tc := range tests {
		_, err := parse(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// A malformed -users entry may be a password typed with the wrong separator: the error
	// names the entry, never its text.
	for _, users := range []string{"SAL0=hunter2", "SAL0:pw,:hunter2", "SAL0:pw,hunter2"} {
		_, err := parse([]string{"-users", users}, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-users") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("-users %q: error %v, want one naming -users without the entry's text", users, err)
		}
	}
	if _, err := parse([]string{"-h"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	// Configuration errors surface from run (exit code 2 in main).
	err := run(context.Background(), []string{"-online"}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-app-token") {
		t.Errorf("online without token: %v", err)
	}
	err = run(context.Background(), []string{"-addr", "127.0.0.1:0", "-latency", "soon"}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "latency") {
		t.Errorf("bad latency: %v", err)
	}
}

func TestReadKeys(t *testing.T) {
	t.Parallel()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pkix, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
	for _, p := range []string{write("pkix.pem", "PUBLIC KEY", pkix), write("pkcs1.pem", "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey))} {
		if pub, err := readPublicKey(p); err != nil || !pub.Equal(&k.PublicKey) {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{write("pkcs8.pem", "PRIVATE KEY", pkcs8), write("rsa.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))} {
		if priv, err := readPrivateKey(p); err != nil || !priv.Equal(k) {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestRunServes starts the command in-process on a free port, reads the URL it prints, drives
// a login and a resync over HTTP, injects a fault through the admin API, and shuts it down.
func TestRunServes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-tenant", "Cust999", "-poison", "BAD"},
			env(map[string]string{"NETSERVER_SIM_USERS": "SAL0:secret"}), pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading URL: %v", err)
	}
	base := strings.TrimSpace(line)
	if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, "/Cust999") {
		t.Fatalf("printed URL %q", base)
	}
	root := strings.TrimSuffix(base, "/Cust999")

	post := func(url, action, body string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		req.Header.Set("SOAPAction", `"`+action+`"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	const ns = "http://www.superoffice.net/ws/crm/NetServer/Services88"
	envelope := func(header, body string) string {
		return `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>` + header +
			`</s:Header><s:Body>` + body + `</s:Body></s:Envelope>`
	}
	login := post(base+"/Remote/Services88/SoPrincipal.svc", netserversim.ActionAuthenticateUsernamePassword,
		envelope("", `<AuthenticateUsernamePassword xmlns="`+ns+`"><UserName>SAL0</UserName><Password>secret</Password></AuthenticateUsernamePassword>`))
	_, rest, _ := strings.Cut(login, "<Ticket>")
	ticket, _, _ := strings.Cut(rest, "</Ticket>")
	if !strings.HasPrefix(ticket, "7T:") {
		t.Fatalf("login reply: %s", login)
	}
	resync := func(keys ...string) string {
		var items string
		for _, k := range keys {
			items += `<a:string>` + k + `</a:string>`
		}
		return post(base+"/Remote/Services88/ErpSync.svc", netserversim.ActionForceResyncExternal,
			envelope(`<Credentials xmlns="`+ns+`"><Ticket>`+ticket+`</Ticket></Credentials>`,
				`<ForceResyncExternal xmlns="`+ns+`"><ErpConnectionId>1</ErpConnectionId><ErpActorType>Customer</ErpActorType>`+
					`<ExternalKeys xmlns:a="http://schemas.microsoft.com/2003/10/Serialization/Arrays">`+items+`</ExternalKeys></ForceResyncExternal>`))
	}
	if r := resync("K1", "K2"); !strings.Contains(r, "<IsOk>true</IsOk>") {
		t.Fatalf("resync: %s", r)
	}
	if r := resync("K3", "BAD"); !strings.Contains(r, "<ErrorCode>ERP_REJECTED</ErrorCode>") {
		t.Fatalf("poison flag ignored: %s", r)
	}

	resp, err := http.Post(root+"/_sim/faults", "application/json", strings.NewReader(`{"fail503": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if r := resync("K1"); !strings.Contains(r, "maintenance") {
		t.Fatalf("admin fault not applied: %s", r)
	}

	resp, err = http.Get(root + "/_sim/counts")
	if err != nil {
		t.Fatal(err)
	}
	var snap netserversim.Snapshot
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Resynced["K1"] != 1 || snap.Seen["K3"] != 1 || snap.Resynced["K3"] != 0 || snap.Logins.PasswordOK != 1 ||
		snap.Calls[netserversim.OutcomeUnavailable] != 1 {
		t.Fatalf("counts = %+v", snap)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// TestDefaultTrialUser: without -users the simulator accepts the documented trial login,
// so a first run works as the README shows; -users replaces it.
func TestDefaultTrialUser(t *testing.T) {
	t.Parallel()
	o, err := parse(nil, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Users[defaultUser] != defaultPassword || len(o.cfg.Users) != 1 {
		t.Fatalf("users = %v, want only the trial login", o.cfg.Users)
	}
	o, err = parse([]string{"-users", "sal0:pw"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := o.cfg.Users[defaultUser]; ok || o.cfg.Users["sal0"] != "pw" {
		t.Fatalf("users = %v, want only sal0", o.cfg.Users)
	}
}
