package tenant

import (
	"context"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/tenantstate"
)

// TestBuildFollowsTheTenant: a tenant of the file given by its environment and context id
// alone (no url) calls the host the state API names, over either API, and keeps calling
// after the tenant moved; its flow control sits under the follower.
func TestBuildFollowsTheTenant(t *testing.T) {
	t.Parallel()
	for _, api := range []string{APISOAP, APIREST} {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t) // one tenant (Cust12345) per simulator
			sim, err := netserversim.Start(netserversim.Config{Hosts: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sim.Close)
			file := "tenants:\n  - id: cust-" + api + "\n    environment: " + sim.RootURL + "\n    api: " + api +
				"\n    auth: {ticket_env: T, context_id: Cust12345}\n"
			specs, err := Parse("tenants.yaml", []byte(file), testEnv(map[string]string{"T": sim.IssueTicket()}))
			if err != nil {
				t.Fatal(err)
			}
			ten, err := Build(specs[0], BuildOptions{Redis: db.Client()})
			if err != nil {
				t.Fatal(err)
			}
			defer ten.Close()
			if ten.State == nil || ten.Flow == nil || ten.Mode != ModeTicket {
				t.Fatalf("%+v", ten)
			}
			call := func(key string) {
				t.Helper()
				resp, err := ten.Resyncer.ForceResyncExternal(context.Background(), 3, erpsync.ActorCustomer, []string{key})
				if err != nil || !resp.IsOk {
					t.Fatalf("%s: %+v, %v", key, resp, err)
				}
			}
			call("K1")
			if err := sim.Move(1); err != nil {
				t.Fatal(err)
			}
			call("K2")
			if st := ten.State.Status(); st.State != tenantstate.Running || !strings.HasPrefix(st.Endpoint, sim.HostURLs[1]) {
				t.Errorf("status %+v, want running on %s", st, sim.HostURLs[1])
			}
		})
	}
}

// TestEnvironmentNeedsRedis: without Redis (one call) an environment is refused by name, and
// the names of the environments read as their URLs.
func TestEnvironmentNeedsRedis(t *testing.T) {
	t.Parallel()
	s := Spec{Environment: "online", ContextID: "Cust12345", Ticket: NewSecret("7T:x"),
		Naming: EnvNames{FieldEnvironment: "SUPEROFFICE_ENVIRONMENT", FieldURL: "SUPEROFFICE_URL"}}
	if err := s.Validate(); err != nil {
		t.Fatalf("environment and context id alone: %v", err)
	}
	_, err := Build(s, BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "SUPEROFFICE_ENVIRONMENT is set, but here there is no Redis") || !strings.Contains(err.Error(), "SUPEROFFICE_URL") {
		t.Errorf("without Redis: %v", err)
	}
	for in, want := range map[string]string{"online": "https://online.superoffice.com", "SOD": "https://sod.superoffice.com",
		"https://qaonline.superoffice.com/": "https://qaonline.superoffice.com"} {
		if got := EnvironmentURL(in); got != want {
			t.Errorf("EnvironmentURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := FlowName(s); got != "online.superoffice.com/cust12345" {
		t.Errorf("FlowName %q", got)
	}
	s.Environment = "moon"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "or one of online, sod, stage") {
		t.Errorf("unknown name: %v", err)
	}
}

// TestMovedSaysWhatToSet: a 421 of a tenant with a fixed URL names the tenant, says it moved
// and which settings make the worker follow it; the held batches' line says so too.
func TestMovedSaysWhatToSet(t *testing.T) {
	t.Parallel()
	names := EnvNames{FieldEnvironment: "SUPEROFFICE_ENVIRONMENT", FieldContextID: "SUPEROFFICE_CONTEXT_ID", FieldURL: "SUPEROFFICE_URL", FieldTicket: "SUPEROFFICE_TICKET"}
	s := Spec{URL: "https://online3.superoffice.com/Cust12345", Ticket: NewSecret("7T:x"), Naming: names}
	want := "SuperOffice tenant https://online3.superoffice.com/Cust12345 moved to another host (HTTP 421): set SUPEROFFICE_ENVIRONMENT and SUPEROFFICE_CONTEXT_ID so the worker follows it, or correct SUPEROFFICE_URL"
	if got := s.Fix(&erpsync.HTTPError{StatusCode: 421}); got != want {
		t.Errorf("Fix:\n got %s\nwant %s", got, want)
	}
	if got := s.HeldFix(); !strings.HasSuffix(got, "; if SuperOffice answered 421: "+want) {
		t.Errorf("HeldFix: %s", got)
	}
	onsite := Spec{URL: "https://crm.acme.example/SuperOffice", Ticket: NewSecret("7T:x"), Naming: names}
	if got := onsite.HeldFix(); got != onsite.AuthFix() {
		t.Errorf("on-site HeldFix: %s", got)
	}
}

// TestOneFollowedTenantIsOneEntry: two entries following one tenant (environment and
// context id) are refused like two entries of one URL.
func TestOneFollowedTenantIsOneEntry(t *testing.T) {
	t.Parallel()
	file := "tenants:\n  - id: a\n    environment: online\n    auth: {ticket_env: T, context_id: Cust1}\n" +
		"  - id: b\n    environment: https://online.superoffice.com\n    auth: {ticket_env: T, context_id: cust1}\n"
	_, err := Parse("tenants.yaml", []byte(file), testEnv(map[string]string{"T": "7T:x"}))
	if want := `tenants.yaml:7: tenant "b": auth.context_id is tenant "a"'s too (line 2)`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want %s…", err, want)
	}
}
