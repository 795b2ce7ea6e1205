package e2etest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/internal/netserversim"
)

// Tenant is one tenant of a tenants file that StartTwoTenants writes: its ID, its own
// simulator host, its intake token and every secret it has.
type Tenant struct {
	ID     string
	Sim    *netserversim.Running
	Intake string // its intake API token (intake_tokens_env)
	// Extra is YAML added to the tenant's entry when the file is written (WriteFile), each
	// line indented as a key of the entry: "breaker_probe: 1s\nmax_concurrency: 4".
	Extra string

	secrets map[string]string // name → value
	entry   string
}

// Secrets are the tenant's secrets by name: its password or system-user token, its
// application token, its intake token. None may reach a log, Redis or a command's output.
func (tn *Tenant) Secrets() map[string]string { return tn.secrets }

// TwoTenants are two tenants on two simulator hosts, served from one tenants file: A logs
// in over SOAP with a password (an on-site installation), B over REST with an Online system
// user and an application token. Each has secrets of its own, none shared with the other.
type TwoTenants struct {
	A, B *Tenant
	// File is the tenants file's path; WriteFile writes it.
	File string
	env  map[string]string
}

// StartTwoTenants starts the simulators of two tenants, "acme-onsite" (A) and "Cust67890"
// (B), and writes a tenants file serving both. The simulators are closed at the test's
// cleanup.
func StartTwoTenants(t testing.TB) *TwoTenants {
	t.Helper()
	const (
		passwordA = "pw-of-acme-7c1e"
		sysTokenB = "sys-token-of-B-93d0"
		appTokenB = "app-token-of-B-4b2a"
		intakeA   = "intake-token-of-A-e81f"
		intakeB   = "intake-token-of-B-06c7"
	)
	simA, err := netserversim.Start(netserversim.Config{Users: map[string]string{User: passwordA}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simA.Close)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	simB, err := netserversim.Start(netserversim.Config{Tenant: "Cust67890", Online: true, AppToken: appTokenB,
		SystemUserPublicKey: &key.PublicKey, SystemUserToken: sysTokenB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simB.Close)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tt := &TwoTenants{File: filepath.Join(dir, "tenants.yaml"), env: map[string]string{
		"ACME_PASSWORD": passwordA, "ACME_INTAKE": intakeA,
		"B_SYSTEM_TOKEN": sysTokenB, "B_APP_TOKEN": appTokenB, "B_INTAKE": intakeB,
	}}
	tt.A = &Tenant{ID: "acme-onsite", Sim: simA, Intake: intakeA,
		secrets: map[string]string{"A's password": passwordA, "A's intake token": intakeA},
		entry: fmt.Sprintf(`  - id: acme-onsite
    url: %s
    api: soap
    auth: {username: %s, password_env: ACME_PASSWORD}
    intake_tokens_env: ACME_INTAKE
`, simA.URL, User)}
	tt.B = &Tenant{ID: "Cust67890", Sim: simB, Intake: intakeB,
		secrets: map[string]string{"B's system-user token": sysTokenB, "B's application token": appTokenB, "B's intake token": intakeB},
		entry: fmt.Sprintf(`  - id: Cust67890
    url: %s
    api: rest
    auth:
      system_token_env: B_SYSTEM_TOKEN
      private_key_file: %s
      login_url: %s/Login/api/PartnerSystemUser/Authenticate
      context_id: Cust67890
    app_token_env: B_APP_TOKEN
    intake_tokens_env: B_INTAKE
`, simB.URL, keyFile, simB.RootURL)}
	tt.WriteFile(t, tt.A, tt.B)
	return tt
}

// WriteFile writes the tenants file with tenants (none: an empty list), each entry with its
// Extra. A worker that follows the file picks the change up by itself.
func (tt *TwoTenants) WriteFile(t testing.TB, tenants ...*Tenant) {
	t.Helper()
	var b strings.Builder
	if len(tenants) == 0 {
		b.WriteString("tenants: []\n")
	} else {
		b.WriteString("tenants:\n")
	}
	for _, tn := range tenants {
		b.WriteString(tn.entry)
		for line := range strings.Lines(tn.Extra) {
			if line = strings.TrimSpace(line); line != "" {
				b.WriteString("    " + line + "\n")
			}
		}
	}
	// Written next to the file and renamed over it, as an editor saves: a worker watching
	// the file never reads half of it.
	tmp := tt.File + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tt.File); err != nil {
		t.Fatal(err)
	}
}

// Tenants are A and B.
func (tt *TwoTenants) Tenants() []*Tenant { return []*Tenant{tt.A, tt.B} }

// Secrets are both tenants' secrets by name.
func (tt *TwoTenants) Secrets() map[string]string {
	out := map[string]string{}
	for _, tn := range tt.Tenants() {
		for k, v := range tn.secrets {
			out[k] = v
		}
	}
	return out
}

// WorkerEnv is the environment of a worker process on the Redis at redisURL serving the
// tenants file and no implicit tenant (WorkerEnv without its SUPEROFFICE_* settings, with
// TENANTS_CONFIG and the environment variables the file names for its secrets).
func (tt *TwoTenants) WorkerEnv(redisURL string) map[string]string {
	env := WorkerEnv(redisURL, tt.A.Sim)
	for _, k := range []string{"SUPEROFFICE_URL", "SUPEROFFICE_USERNAME", "SUPEROFFICE_PASSWORD"} {
		delete(env, k)
	}
	env["TENANTS_CONFIG"] = tt.File
	for k, v := range tt.env {
		env[k] = v
	}
	return env
}
