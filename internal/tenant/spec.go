package tenant

import (
	"reflect"
	"strings"
	"time"
)

// The transports a Spec's API chooses between.
const (
	APISOAP = "soap" // NetServer's ErpSync.svc (the default)
	APIREST = "rest" // the WebAPI's ErpSync agent
)

// The ways of logging in to SuperOffice (Spec.Mode, Tenant.Mode).
const (
	ModeTicket     = "ticket"      // a fixed ticket
	ModePassword   = "password"    // an on-site user name and password
	ModeSystemUser = "system-user" // an Online system user
)

// DefaultTimeout is the timeout of one SuperOffice request when Spec.Timeout is zero.
const DefaultTimeout = 60 * time.Second

// Spec is one tenant's configuration as plain values: where it is, how to log in and how
// hard it may be called. The zero value of every optional field means its default, as its
// comment says. Secrets are Secret values, so a Spec prints and logs redacted. Naming says
// how errors about the Spec name its fields; Equal ignores it.
type Spec struct {
	// ID names the tenant everywhere (tasks.ValidateTenantID); "" is the implicit tenant of
	// the SUPEROFFICE_* settings.
	ID string
	// URL is the tenant base URL, e.g. https://sod.superoffice.com/Cust12345. Required
	// without an Environment; with one it is optional (its path must hold the ContextID
	// segment) and only names the tenant: requests go where the state API says.
	URL string
	// Environment is the tenant's SuperOffice environment: online, sod or stage
	// (https://{name}.superoffice.com, EnvironmentURL) or a base URL such as
	// https://online.superoffice.com. Its state API says where the tenant lives and whether
	// it runs; Build then follows the tenant (Tenant.State). It needs ContextID.
	Environment string
	// API is APISOAP or APIREST, in any case; "": APISOAP.
	API string
	// SOAP12 sends SOAP 1.2 envelopes (APISOAP only).
	SOAP12 bool
	// Timeout bounds one request; zero: DefaultTimeout.
	Timeout time.Duration

	// Exactly one way to log in: Ticket; Username and Password; or SystemToken, PrivateKey,
	// ContextID, LoginURL (and AppToken): the Online system user.
	Ticket      Secret
	Username    string
	Password    Secret
	SystemToken Secret
	PrivateKey  Secret // the app's RSA private key: PEM, or .NET RSAKeyValue XML
	ContextID   string // the Online tenant id, e.g. Cust12345 (with an Environment, no sign of a login way)
	LoginURL    string // the PartnerSystemUser endpoint
	// AppToken is the application token (client secret); required by Online.
	AppToken Secret

	// Flow control, for all workers together (internal/flow): RateLimit requests per second
	// (0: none), RateBurst (0: 1), RateAdaptive (needs RateLimit), MaxConcurrency per ERP
	// connection (0: no cap), SlotLease (0: 30s), BreakerFailures (0: 5), BreakerProbe (0:
	// 5s) and BreakerProbeMax (0: 5m).
	RateLimit       float64
	RateBurst       int
	RateAdaptive    bool
	MaxConcurrency  int
	SlotLease       time.Duration
	BreakerFailures int
	BreakerProbe    time.Duration
	BreakerProbeMax time.Duration

	// IntakeTokens are the bearer tokens that may write to this tenant only.
	IntakeTokens []Secret

	// Naming names the fields in errors; nil: their keys in the tenants file (Field.String).
	Naming Naming
}

// Mode is the way of logging in the set credentials name: ModeTicket, ModePassword,
// ModeSystemUser, or "" when none is set. Validate checks that exactly one is.
func (s Spec) Mode() string {
	switch {
	case s.Ticket.IsSet():
		return ModeTicket
	case s.Username != "" || s.Password.IsSet():
		return ModePassword
	case s.systemUserSet():
		return ModeSystemUser
	}
	return ""
}

// systemUserSet reports whether a field of the system-user login is set. With an
// Environment the ContextID names the tenant to follow, so it does not count.
func (s Spec) systemUserSet() bool {
	return s.SystemToken.IsSet() || s.PrivateKey.IsSet() || (s.ContextID != "" && s.Environment == "") || s.LoginURL != ""
}

// EnvironmentNames are the SuperOffice environments known by name; EnvironmentURL makes a
// name https://{name}.superoffice.com.
var EnvironmentNames = []string{"online", "sod", "stage"}

// EnvironmentURL is the base URL of environment env: https://{env}.superoffice.com for a
// name of EnvironmentNames (in any case), env itself without a trailing slash otherwise.
func EnvironmentURL(env string) string {
	env = strings.TrimSpace(env)
	for _, n := range EnvironmentNames {
		if strings.EqualFold(env, n) {
			return "https://" + n + ".superoffice.com"
		}
	}
	return strings.TrimRight(env, "/")
}

// loginURL is LoginURL, or with an Environment its PartnerSystemUser endpoint.
func (s Spec) loginURL() string {
	if s.LoginURL == "" && s.Environment != "" {
		return EnvironmentURL(s.Environment) + "/Login/api/PartnerSystemUser/Authenticate"
	}
	return s.LoginURL
}

// api is API in lower case, APISOAP when empty.
func (s Spec) api() string {
	a := strings.ToLower(strings.TrimSpace(s.API))
	if a == "" {
		return APISOAP
	}
	return a
}

func (s Spec) timeout() time.Duration {
	if s.Timeout == 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

// Equal reports whether s and o configure the same tenant the same way: every field but
// Naming (so a tenant that only moved within the tenants file is unchanged).
func (s Spec) Equal(o Spec) bool {
	s.Naming, o.Naming = nil, nil
	if len(s.IntakeTokens) != len(o.IntakeTokens) {
		return false
	}
	for i := range s.IntakeTokens {
		if !s.IntakeTokens[i].Equal(o.IntakeTokens[i]) {
			return false
		}
	}
	s.IntakeTokens, o.IntakeTokens = nil, nil
	secrets := func(x *Spec) []*Secret {
		return []*Secret{&x.Ticket, &x.Password, &x.SystemToken, &x.PrivateKey, &x.AppToken}
	}
	ss, os := secrets(&s), secrets(&o)
	for i := range ss {
		if !ss[i].Equal(*os[i]) {
			return false
		}
		*ss[i], *os[i] = Secret{}, Secret{}
	}
	return reflect.DeepEqual(s, o)
}
