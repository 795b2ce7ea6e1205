// Package tenant is one SuperOffice tenant as a value: its configuration (Spec), read from
// the SUPEROFFICE_* settings (the implicit tenant, ID "") or from the tenants file (Load,
// Watch), and the live parts built from it (Build): the transport of its API, its login, its
// flow control and the one HTTP client under them.
//
// Every check of a Spec is written once, and its message names the fields the way the Spec's
// Naming does: the environment variables of the implicit tenant ("SUPEROFFICE_PASSWORD is set
// but SUPEROFFICE_USERNAME is not"), or the keys of the tenants file at their lines
// ("tenants.yaml:14: tenant "acme": auth.password_env is set but auth.username is not").
//
// Secrets are Secret values: they print, marshal and log redacted. The package reads no
// environment of its own: Load and Watch take a getenv function.
package tenant
