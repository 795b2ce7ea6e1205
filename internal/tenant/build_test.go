package tenant

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestBuildCallsUnderFlowControl: a tenant of the file, built on Redis, calls the simulator
// over either API through its login, under its own flow control (named "@" + its id) and
// under Wrap.
func TestBuildCallsUnderFlowControl(t *testing.T) {
	t.Parallel()
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{"ERPSYNC": testPassword}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	db := redistest.New(t)
	for _, api := range []string{APISOAP, APIREST} {
		t.Run(api, func(t *testing.T) {
			file := "tenants:\n  - id: acme-" + api + "\n    url: " + sim.URL + "\n    api: " + api +
				"\n    rate_limit: 1000\n    auth: {username: ERPSYNC, password_env: ACME_PASSWORD}\n"
			specs, err := Parse("tenants.yaml", []byte(file), testEnv(fileEnv))
			if err != nil {
				t.Fatal(err)
			}
			var sent atomic.Int64
			wrap := func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) { sent.Add(1); return rt.RoundTrip(r) })
			}
			ten, err := Build(specs[0], BuildOptions{Redis: db.Client(), Wrap: wrap})
			if err != nil {
				t.Fatal(err)
			}
			defer ten.Close()
			if ten.Name != "@acme-"+api || ten.API != api || ten.Mode != ModePassword || ten.Flow == nil || ten.Login == nil {
				t.Fatalf("%+v", ten)
			}
			resp, err := ten.Resyncer.ForceResyncExternal(context.Background(), 3, erpsync.ActorCustomer, []string{"K1"})
			if err != nil || !resp.IsOk {
				t.Fatalf("%+v, %v", resp, err)
			}
			if sent.Load() < 2 || ten.Refreshes() != 1 { // the login and the call
				t.Errorf("%d requests, %d logins", sent.Load(), ten.Refreshes())
			}
			keys, err := db.Client().Keys(context.Background(), "*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(keys, " "), "{erpresync:flow:@acme-"+api+"}") {
				t.Errorf("no flow-control key of the tenant among %v", keys)
			}
		})
	}
}

// TestBuildNamesTheField: a library's refusal names the field as the Spec's Naming does.
func TestBuildNamesTheField(t *testing.T) {
	t.Parallel()
	file := "tenants:\n  - id: acme\n    url: ftp://crm.acme.example/SuperOffice\n    auth: {ticket_env: T}\n"
	specs, err := Parse("tenants.yaml", []byte(file), testEnv(map[string]string{"T": "7T:x"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(specs[0], BuildOptions{})
	if want := `tenants.yaml:3: tenant "acme": url must start with https:// or http://`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	implicit := Spec{URL: "ftp://sod.superoffice.com/Cust1", Ticket: NewSecret("7T:x"), Naming: EnvNames{FieldURL: "SUPEROFFICE_URL"}}
	if _, err := Build(implicit, BuildOptions{}); err == nil || err.Error() != "SUPEROFFICE_URL must start with https:// or http://" {
		t.Errorf("implicit: %v", err)
	}
}

// TestFlowName: the implicit tenant keeps the name of its URL (its Redis keys do not change);
// a tenant of the file is named by its id, and the two kinds never meet.
func TestFlowName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		spec Spec
		want string
	}{
		{Spec{URL: "https://SOD.superoffice.com/Cust12345/"}, "sod.superoffice.com/cust12345"},
		{Spec{URL: " https://crm.acme.example "}, "crm.acme.example"},
		{Spec{ID: "crm.acme.example", URL: "https://crm.acme.example"}, "@crm.acme.example"},
	} {
		if got := FlowName(tt.spec); got != tt.want {
			t.Errorf("FlowName(%q, %q) = %q, want %q", tt.spec.ID, tt.spec.URL, got, tt.want)
		}
	}
}
