package tenant

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testEnv is a getenv of m.
func testEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const (
	testPassword = "pw-Secret-7f3a9c!"
	testToken    = "sys-Token-91b2e"
	testIntake   = "intake-token-0123456789abcdef"
)

var fileEnv = map[string]string{
	"ACME_PASSWORD": testPassword, "CUST12345_SYSTEM_TOKEN": testToken, "SUPEROFFICE_APP_TOKEN": "app-Token-55aa",
	"CUST12345_INTAKE": testIntake + ", " + testIntake + "-2", "CUST67890_TICKET": "7T:ticket-77",
}

// exampleFile is the README's tenants file, with keyFile as the private key.
func exampleFile(keyFile string) string {
	return `tenants:
  - id: Cust12345
    url: https://sod2.superoffice.com/Cust12345
    environment: https://online.superoffice.com
    api: rest
    auth:
      system_token_env: CUST12345_SYSTEM_TOKEN
      private_key_file: ` + keyFile + `
      login_url: https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate
      context_id: Cust12345
    app_token_env: SUPEROFFICE_APP_TOKEN
    rate_limit: 10
    max_concurrency: 4
    intake_tokens_env: CUST12345_INTAKE
  - id: acme-onsite
    url: https://crm.acme.example/SuperOffice
    api: soap
    timeout: 30s
    auth: {username: ERPSYNC, password_env: ACME_PASSWORD}
  - id: Cust67890
    url: https://online3.superoffice.com/Cust67890
    auth: {ticket_env: CUST67890_TICKET}
`
}

func keyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\nMII...\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseExample(t *testing.T) {
	t.Parallel()
	specs, err := Parse("tenants.yaml", []byte(exampleFile(keyFile(t))), testEnv(fileEnv))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 3 {
		t.Fatalf("%d tenants, want 3", len(specs))
	}
	c, a, o := specs[0], specs[1], specs[2]
	if c.ID != "Cust12345" || c.API != "rest" || c.Mode() != ModeSystemUser || c.SystemToken.Reveal() != testToken || c.ContextID != "Cust12345" ||
		!strings.HasPrefix(c.PrivateKey.Reveal(), "-----BEGIN PRIVATE KEY-----") || c.RateLimit != 10 || c.MaxConcurrency != 4 ||
		len(c.IntakeTokens) != 2 || c.IntakeTokens[1].Reveal() != testIntake+"-2" || c.Environment != "https://online.superoffice.com" {
		t.Errorf("Cust12345: %+v", c)
	}
	if a.ID != "acme-onsite" || a.Mode() != ModePassword || a.Username != "ERPSYNC" || a.Password.Reveal() != testPassword || a.Timeout != 30*time.Second {
		t.Errorf("acme-onsite: %+v", a)
	}
	if o.Mode() != ModeTicket || o.api() != APISOAP || o.Ticket.Reveal() != "7T:ticket-77" {
		t.Errorf("Cust67890: %+v", o)
	}
	// The file's names, at their lines.
	if err := a.errorf(FieldPassword, "%s is set", a.name(FieldPassword)); err.Error() != `tenants.yaml:19: tenant "acme-onsite": auth.password_env is set` {
		t.Errorf("naming: %v", err)
	}
}

// TestParseJSON: the same file written as JSON reads the same.
func TestParseJSON(t *testing.T) {
	t.Parallel()
	js := `{"tenants": [{"id": "acme", "url": "https://crm.acme.example/SuperOffice", "auth": {"username": "ERPSYNC", "password_env": "ACME_PASSWORD"}, "rate_limit": 2.5}]}`
	specs, err := Parse("tenants.json", []byte(js), testEnv(fileEnv))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Password.Reveal() != testPassword || specs[0].RateLimit != 2.5 {
		t.Errorf("%+v", specs)
	}
}

// TestParseErrors: every problem names file:line, the tenant and the key, and what would be
// valid; none shows a secret.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	const head = "tenants:\n  - id: acme\n    url: https://crm.acme.example/SuperOffice\n"
	const pw = "    auth: {username: ERPSYNC, password_env: ACME_PASSWORD}\n"
	tests := []struct {
		name, file, want string
	}{
		{"empty file", "", "tenants.yaml: no tenants: want a list under tenants: (tenants: [] for none)"},
		{"tenants empty", "tenants:\n", "tenants.yaml:1: tenants: want a list of tenants (tenants: [] for none)"},
		{"not yaml", "tenants: [", "tenants.yaml: yaml: line 1: did not find expected node content"},
		{"unknown top key", "tenant:\n  - id: x\n", `tenants.yaml:1: unknown key "tenant": the file has one key, tenants`},
		{"password in the file", head + "    auth:\n      username: ERPSYNC\n      password: hunter2-secret\n",
			`tenants.yaml:6: tenant "acme": auth.password: a secret is not written in the tenants file: give auth.password_env (an environment variable's name) or auth.password_file (a file's path) instead`},
		{"app token in the file", head + pw + "    app_token: abc-secret\n", `tenants.yaml:5: tenant "acme": app_token: a secret is not written in the tenants file: give app_token_env`},
		{"password without user", head + "    auth:\n      password_env: ACME_PASSWORD\n", `tenants.yaml:5: tenant "acme": auth.password_env is set but auth.username is not`},
		{"user without password", head + "    auth:\n      username: ERPSYNC\n", `tenants.yaml:5: tenant "acme": auth.username is set but auth.password_env is not`},
		{"unset variable", head + "    auth: {username: ERPSYNC, password_env: NOPE_PASSWORD}\n", `tenants.yaml:4: tenant "acme": auth.password_env: environment variable NOPE_PASSWORD is not set`},
		{"missing file", head + "    auth: {username: ERPSYNC, password_file: /nonexistent/pw}\n", `tenants.yaml:4: tenant "acme": auth.password_file: open /nonexistent/pw: no such file or directory`},
		{"env and file", head + "    auth: {username: ERPSYNC, password_env: ACME_PASSWORD, password_file: /x}\n", `tenants.yaml:4: tenant "acme": auth.password_file: auth.password_env is set too (line 4): set one of them`},
		{"no credentials", head, `tenants.yaml:2: tenant "acme": no SuperOffice credentials: set auth.ticket_env, or auth.username and auth.password_env (on-site), or auth.system_token_env, auth.private_key_file, auth.context_id and auth.login_url (Online system user)`},
		{"two ways", head + "    auth: {username: ERPSYNC, password_env: ACME_PASSWORD, ticket_env: ACME_PASSWORD}\n",
			`tenants.yaml:4: tenant "acme": contradictory SuperOffice credentials: auth.ticket_env and auth.username/auth.password_env are all set`},
		{"system user incomplete", head + "    auth: {system_token_env: ACME_PASSWORD, context_id: Cust1, login_url: https://sod.superoffice.com/Login}\n",
			`tenants.yaml:2: tenant "acme": auth.private_key_file is not set; the Online system-user login needs auth.system_token_env, auth.private_key_file, auth.context_id, auth.login_url and app_token_env`},
		{"unknown key", head + pw + "    rate: 5\n", `tenants.yaml:5: tenant "acme": rate: unknown key: want id or one of api, app_token_env,`},
		{"key twice", head + pw + "    url: https://x.example/y\n", `tenants.yaml:5: tenant "acme": url: given twice (also at line 3)`},
		{"bad api", head + pw + "    api: grpc\n", `tenants.yaml:5: tenant "acme": api="grpc": want soap or rest`},
		{"soap12 over rest", head + pw + "    api: rest\n    soap12: true\n", `tenants.yaml:6: tenant "acme": soap12 is set but api=rest: SOAP 1.2 applies to the SOAP transport only`},
		{"negative rate", head + pw + "    rate_limit: -1\n", `tenants.yaml:5: tenant "acme": rate_limit="-1": want requests per second >= 0`},
		{"rate not a number", head + pw + "    rate_limit: fast\n", `tenants.yaml:5: tenant "acme": rate_limit: "fast": want requests per second >= 0`},
		{"adaptive without rate", head + pw + "    rate_adaptive: true\n", `tenants.yaml:5: tenant "acme": rate_adaptive=true needs rate_limit, the rate to adapt`},
		{"probe max below probe", head + pw + "    breaker_probe: 10s\n    breaker_probe_max: 5s\n", `tenants.yaml:6: tenant "acme": breaker_probe_max=5s is shorter than breaker_probe=10s`},
		{"fractional probe", head + pw + "    breaker_probe: 1500ms\n", `tenants.yaml:5: tenant "acme": breaker_probe=1.5s: asynq keeps whole seconds; use e.g. 2s`},
		{"bad duration", head + pw + "    timeout: soon\n", `tenants.yaml:5: tenant "acme": timeout: "soon": want a duration such as 30s or 5m`},
		{"short intake token", head + pw + "    intake_tokens_env: SHORT\n", `tenants.yaml:5: tenant "acme": intake_tokens_env: token 1 is 5 characters long: want at least 16`},
		{"environment without context id", head + pw + "    environment: https://online.superoffice.com\n", `tenants.yaml:5: tenant "acme": environment is set but auth.context_id is not`},
		{"environment with a path", head + pw + "    environment: https://online.superoffice.com/Cust1\n", `tenants.yaml:5: tenant "acme": environment="https://online.superoffice.com/Cust1": want the environment's base URL`},
		{"no url", "tenants:\n  - id: acme\n" + pw, `tenants.yaml:2: tenant "acme": url is not set: the tenant base URL, such as https://sod.superoffice.com/Cust12345`},
		{"no id", "tenants:\n  - url: https://crm.acme.example/SuperOffice\n" + pw, `tenants.yaml:2: tenant 1: id is not set: every tenant of the file needs one`},
		{"bad id", "tenants:\n  - id: a/b\n    url: https://crm.acme.example/SuperOffice\n" + pw, `tenants.yaml:2: tenant "a/b": id: tenant id "a/b": character '/' at byte 1`},
		{"entry not a mapping", "tenants:\n  - acme\n", `tenants.yaml:2: tenant 1: want a mapping of keys such as id: and url:`},
		{"duplicate id", head + pw + "  - id: ACME\n    url: https://other.example/SuperOffice\n" + pw,
			`tenants.yaml:5: tenant "ACME": id "ACME" is taken by the tenant at line 2: every tenant's id is unique, regardless of case`},
		{"duplicate url", head + pw + "  - id: acme2\n    url: https://CRM.acme.example/SuperOffice/\n" + pw,
			`tenants.yaml:6: tenant "acme2": url is tenant "acme"'s too (line 2): one SuperOffice tenant is one entry`},
	}
	env := testEnv(map[string]string{"ACME_PASSWORD": testPassword, "SHORT": "short"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("tenants.yaml", []byte(tt.file), env)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error\n  %v\nwant it to start\n  %s", err, tt.want)
			}
			for _, secret := range []string{testPassword, "hunter2-secret", "abc-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

// TestParseReportsEveryTenant: the errors of several tenants come together, each naming its
// own, and are capped.
func TestParseReportsEveryTenant(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("tenants:\n")
	for i := range 30 {
		fmt.Fprintf(&b, "  - {id: t%d, url: https://x.example/t%d, api: grpc, auth: {ticket_env: T}}\n", i, i)
	}
	_, err := Parse("tenants.yaml", []byte(b.String()), testEnv(map[string]string{"T": "7T:x"}))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || !strings.HasPrefix(lines[3], `tenants.yaml:5: tenant "t3": api="grpc"`) || lines[maxErrors] != "tenants.yaml: and 10 more errors" {
		t.Errorf("%d lines:\n%v", len(lines), err)
	}
}

// TestParseManyTenants: a file of 2,000 tenants reads whole, in order.
func TestParseManyTenants(t *testing.T) {
	t.Parallel()
	specs, err := Parse("tenants.yaml", manyTenants(2000), testEnv(map[string]string{"T": "7T:x"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2000 || specs[1999].ID != "Cust1999" {
		t.Errorf("%d tenants", len(specs))
	}
}

func manyTenants(n int) []byte {
	var b strings.Builder
	b.WriteString("tenants:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: Cust%d\n    url: https://online3.superoffice.com/Cust%d\n    auth: {ticket_env: T}\n    rate_limit: 5\n", i, i)
	}
	return []byte(b.String())
}

// BenchmarkParse: the time per tenant stays flat as the file grows (linear).
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		data := manyTenants(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse("tenants.yaml", data, testEnv(map[string]string{"T": "7T:x"})); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/tenant")
		})
	}
}
