package tenant_test

import (
	"fmt"

	"github.com/erpresync/erpresync/internal/tenant"
)

// A tenants file names its secrets by environment variable (or file); its errors name the
// file, line, tenant and key.
func ExampleParse() {
	getenv := func(name string) string {
		return map[string]string{"ACME_PASSWORD": "correct horse"}[name]
	}
	specs, err := tenant.Parse("tenants.yaml", []byte(`
tenants:
  - id: acme
    url: https://crm.acme.example/SuperOffice
    auth: {username: ERPSYNC, password_env: ACME_PASSWORD}
`), getenv)
	fmt.Println(specs[0].ID, specs[0].Mode(), specs[0].Password, err)

	_, err = tenant.Parse("tenants.yaml", []byte(`
tenants:
  - id: acme
    url: https://crm.acme.example/SuperOffice
    auth:
      password_env: ACME_PASSWORD
`), getenv)
	fmt.Println(err)
	// Output:
	// acme password [REDACTED] <nil>
	// tenants.yaml:6: tenant "acme": auth.password_env is set but auth.username is not
}

// The implicit tenant's errors name the settings it was read from.
func ExampleSpec_Validate() {
	s := tenant.Spec{
		URL:      "https://crm.acme.example/SuperOffice",
		Password: tenant.NewSecret("correct horse"),
		Naming:   tenant.EnvNames{tenant.FieldUsername: "SUPEROFFICE_USERNAME", tenant.FieldPassword: "SUPEROFFICE_PASSWORD"},
	}
	fmt.Println(s.Validate())
	// Output:
	// SUPEROFFICE_PASSWORD is set but SUPEROFFICE_USERNAME is not
}
