package tenant

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/tenantstate"
	"github.com/erpresync/erpresync/rest"
	"github.com/erpresync/erpresync/soap"
)

// goName matches what an operator must never read: a Go type or field of ours ("Config.Tenant",
// "PasswordAuthConfig", "auth.NewStaticTicket"). SuperOffice's own operation names
// (ErpSync.ForceResyncExternal) are fine.
var goName = regexp.MustCompile(`[A-Za-z]*Config\b|\b(soap|rest|auth|flow|tasks|intake|nightly|retry|erpsync)\.[A-Z]`)

// TestConfigErrorsNameNoGoNames: every refusal of the libraries Build configures is an
// *erpsync.ConfigError that speaks of the value in words; a tenant reports a field one of
// its fields feeds under its name for that field; and every library field it maps exists.
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
	ts := tenantstate.Config{ContextID: "Cust1", Environment: "https://sod.superoffice.com", Redis: rdb}
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
		func() error { c := ts; c.ContextID = ""; _, err := tenantstate.New(c); return err },
		func() error { c := ts; c.Environment = "ftp://x"; _, err := tenantstate.New(c); return err },
		func() error {
			c := ts
			c.FixedURL = "https://sod2.superoffice.com/Cust2"
			_, err := tenantstate.New(c)
			return err
		},
	}
	names := EnvNames{}
	for _, f := range Fields() {
		names[f] = "SETTING_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(f.String()))
	}
	spec := Spec{Naming: names}
	for i, refuse := range refusals {
		err := refuse()
		var ce *erpsync.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("refusal %d: %v is no *erpsync.ConfigError", i, err)
			continue
		}
		shown := spec.configError(err).Error()
		for _, msg := range []string{err.Error(), shown} {
			if m := goName.FindString(msg); m != "" {
				t.Errorf("refusal %d (%s): %q names %q", i, ce.Field, msg, m)
			}
		}
		if f, ok := libraryFields[ce.Field]; ok && !strings.HasPrefix(shown, names[f]+" ") {
			t.Errorf("refusal %d (%s): the tenant says %q, want it to start with %s", i, ce.Field, shown, names[f])
		}
	}
	// The mapped fields exist, so a renamed field cannot fall out of the mapping.
	types := map[string]reflect.Type{
		"soap.Config": reflect.TypeFor[soap.Config](), "rest.Config": reflect.TypeFor[rest.Config](), "flow.Config": reflect.TypeFor[flow.Config](),
		"tenantstate.Config":      reflect.TypeFor[tenantstate.Config](),
		"auth.PasswordAuthConfig": reflect.TypeFor[auth.PasswordAuthConfig](), "auth.SystemUserAuthConfig": reflect.TypeFor[auth.SystemUserAuthConfig](),
	}
	for field := range libraryFields {
		i := strings.LastIndexByte(field, '.')
		typ, ok := types[field[:i]]
		if !ok {
			t.Errorf("libraryFields lists %s, of a type this test does not know", field)
			continue
		}
		if _, ok := typ.FieldByName(field[i+1:]); !ok {
			t.Errorf("libraryFields lists %s, which does not exist", field)
		}
	}
}
