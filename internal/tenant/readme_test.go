package tenant

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMETenantsFile: the README's tenants file reads as it says.
func TestREADMETenantsFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Many tenants: the tenants file.*?```yaml\n(.*?)```").FindSubmatch(raw)
	if m == nil {
		t.Fatal("README: no tenants file under ### Many tenants: the tenants file")
	}
	file := strings.ReplaceAll(string(m[1]), "/run/secrets/app.pem", keyFile(t))
	specs, err := Parse("README.md", []byte(file), testEnv(fileEnv))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 3 || specs[0].Mode() != ModeSystemUser || specs[1].Mode() != ModePassword || specs[2].Mode() != ModeTicket {
		t.Errorf("%+v", specs)
	}
}
