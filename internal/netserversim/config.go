package netserversim

import (
	"cmp"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config configures a Server. The zero value is a valid on-site simulator for tenant
// "Cust12345" with no users.
type Config struct {
	// Addr is the listen address used by Start; default "127.0.0.1:0" (a free port).
	// New ignores it.
	Addr string

	// Tenant is the path segment(s) before /Remote/Services88/, e.g. "Cust12345" (Online) or
	// "SuperOffice" (an on-site virtual directory); matched case-insensitively.
	// Default "Cust12345". "/" serves the services at the site root (on-site without a
	// virtual directory). It is also the ContextIdentifier the Online login accepts.
	Tenant string

	// AnyTenant also serves the tenant's service paths under any other one path segment
	// (/{any}/Remote/Services88/..., /{any}/api/v1/...): one simulator stands in for many
	// tenants of a tenants file, which refuses two tenants of one URL. They share everything
	// else (users, tickets, counters, faults, state); the login reply and the state API
	// still name Tenant. Needs a Tenant other than "/". Default false: only Tenant's paths.
	AnyTenant bool

	// Users maps user name → password for SoPrincipal AuthenticateUsernamePassword. Names
	// match case-insensitively (as SuperOffice user names do [I]), passwords exactly.
	// Nil means nobody can log in with a password.
	Users map[string]string

	// Online switches Online mode: every SOAP call must carry the ApplicationToken header
	// equal to AppToken, else it answers an ExceptionInfo reply. False (on-site) ignores the
	// header (§3.3).
	Online bool

	// AppToken is the application's client secret. Required when Online; when set, the
	// PartnerSystemUser login also requires it, in either mode.
	AppToken string

	// TicketTTL is how long an issued ticket stays valid; default 6h (the Online system-user
	// ticket lifetime, §4.5).
	TicketTTL time.Duration

	// SlidingTickets makes each successful use extend a ticket by TicketTTL (on-site tickets
	// slide, §4.5); false is a fixed lifetime from issue.
	SlidingTickets bool

	// OmitStatus leaves PluginResponse.Status out of replies, as servers older than
	// NetServer 10.1.9 do (§1.6). False emits Status after Changes.
	OmitStatus bool

	// ExceptionType and ExceptionMessage fill ExceptionInfo for a missing, invalid or expired
	// ticket. Defaults "SoSecurityException" and "Ticket expired or invalid". OUR ASSUMPTION:
	// the real strings are undocumented (§4.5 [U]).
	ExceptionType    string
	ExceptionMessage string

	// ErrorCode is PluginResponse.ErrorCode for batches holding a poison key; default
	// "ERP_REJECTED" (ours: NetServer publishes no code list, §4.2 [U]).
	ErrorCode string

	// ErpSyncNotGranted simulates an Online app that was not granted the ErpSync agent
	// (§6.1): every ForceResyncExternal with a valid ticket answers an ExceptionInfo reply
	// of type ExceptionType (message ours). Default false.
	ErpSyncNotGranted bool

	// SystemUserPublicKey verifies the RSA-SHA256 (PKCS#1 v1.5) signature of SignedSystemToken
	// in PartnerSystemUser logins (§7.2). Nil refuses every system-user login.
	SystemUserPublicKey *rsa.PublicKey

	// SystemUserToken, when set, is the only system user token (the part before the
	// timestamp) accepted. Empty accepts any token with a valid signature.
	SystemUserToken string

	// SystemTokenMaxAge bounds how old the signed token's timestamp may be; default 10m. A
	// timestamp more than 5 minutes in the future is also refused. OUR ASSUMPTION: the
	// service's window is undocumented.
	SystemTokenMaxAge time.Duration

	// JWTKey signs the JWT (RS256) returned by the system-user login. Nil generates a
	// 2048-bit key on first use. Tests may pass a key to skip that cost.
	JWTKey *rsa.PrivateKey

	// MaxRequestBytes caps SOAP request bodies; larger ones answer HTTP 413. Default 4 MiB.
	// OUR ASSUMPTION: WCF's default maxReceivedMessageSize is 64 KiB, but NetServer's
	// configured value is unknown.
	MaxRequestBytes int64

	// Hosts is how many tenant hosts Start listens on besides the environment's (the role of
	// sod2, sod3… beside sod.superoffice.com). Zero: the tenant lives on the one listener,
	// as before. With Hosts > 0 the tenant starts on host 0, Move moves it, and its paths
	// on any other host (the environment's included) answer 421 "Wrong subdomain used to
	// access tenant".
	Hosts int

	// StateValidFor is how far ahead of now the state API puts ValidUntil; default 1 min
	// (OUR ASSUMPTION: SuperOffice documents no interval).
	StateValidFor time.Duration

	// Admin serves the JSON admin API under /_sim/ (see the package doc). Default false.
	Admin bool

	// Now is the clock for ticket expiry, outage windows and the system-token timestamp
	// check; default time.Now. Latency and slow bodies use real time.
	Now func() time.Time
}

// Defaults, as documented on Config.
const (
	DefaultTenant           = "Cust12345"
	DefaultTicketTTL        = 6 * time.Hour
	DefaultExceptionType    = "SoSecurityException"
	DefaultExceptionMessage = "Ticket expired or invalid"
	DefaultErrorCode        = "ERP_REJECTED"
	DefaultSystemTokenAge   = 10 * time.Minute
	DefaultMaxRequestBytes  = 4 << 20
)

// withDefaults fills zero fields and validates; the result is what the Server uses.
func (c Config) withDefaults() (Config, error) {
	c.Tenant = cmp.Or(c.Tenant, DefaultTenant)
	c.TicketTTL = cmp.Or(c.TicketTTL, DefaultTicketTTL)
	c.ExceptionType = cmp.Or(c.ExceptionType, DefaultExceptionType)
	c.ExceptionMessage = cmp.Or(c.ExceptionMessage, DefaultExceptionMessage)
	c.ErrorCode = cmp.Or(c.ErrorCode, DefaultErrorCode)
	c.SystemTokenMaxAge = cmp.Or(c.SystemTokenMaxAge, DefaultSystemTokenAge)
	c.MaxRequestBytes = cmp.Or(c.MaxRequestBytes, DefaultMaxRequestBytes)
	c.StateValidFor = cmp.Or(c.StateValidFor, DefaultStateValidFor)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	if c.Tenant != "/" {
		t := strings.Trim(c.Tenant, "/")
		if t == "" || strings.ContainsAny(t, " ?#%\\") || strings.Contains(t, "//") {
			errs = append(errs, fmt.Errorf("tenant %q (-tenant / NETSERVER_SIM_TENANT) must be path segments without spaces, '?', '#', '%%' or '\\', or \"/\" for the site root", c.Tenant))
		}
	}
	if c.AnyTenant && c.Tenant == "/" {
		errs = append(errs, errors.New("any tenant needs a tenant path: the site root (tenant \"/\") has no segment to vary"))
	}
	if c.Online && c.AppToken == "" {
		errs = append(errs, errors.New("online mode needs an application token (-app-token / NETSERVER_SIM_APP_TOKEN)"))
	}
	if c.TicketTTL < 0 {
		errs = append(errs, errors.New("ticket TTL (-ticket-ttl / NETSERVER_SIM_TICKET_TTL) must not be negative"))
	}
	if c.SystemTokenMaxAge < 0 {
		errs = append(errs, errors.New("system token max age must not be negative"))
	}
	if c.Hosts < 0 || c.Hosts > 16 {
		errs = append(errs, fmt.Errorf("hosts (-hosts / NETSERVER_SIM_HOSTS) is %d; want 0 to 16", c.Hosts))
	}
	if c.StateValidFor < 0 {
		errs = append(errs, errors.New("state valid-for (-state-valid-for / NETSERVER_SIM_STATE_VALID_FOR) must not be negative"))
	}
	if c.MaxRequestBytes < 0 {
		errs = append(errs, errors.New("max request bytes must not be negative"))
	}
	return errors.Join(errs...)
}

// tenantPath is "/cust12345" (lower-cased, no trailing slash) or "" for the site root.
func (c Config) tenantPath() string {
	if c.Tenant == "/" {
		return ""
	}
	return "/" + strings.ToLower(strings.Trim(c.Tenant, "/"))
}

// servicePath is p, a lower-cased request path, with its first segment made Tenant's when
// AnyTenant is set and p is a tenant's service path under another segment; else p.
func (c Config) servicePath(p string) string {
	if !c.AnyTenant {
		return p
	}
	seg, rest, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if !ok || seg == "" || !(strings.HasPrefix(rest, "remote/services88/") || strings.HasPrefix(rest, "api/v1/")) {
		return p
	}
	return c.tenantPath() + "/" + rest
}

// tenantName is the tenant as configured, without slashes ("" for the site root).
func (c Config) tenantName() string {
	if c.Tenant == "/" {
		return ""
	}
	return strings.Trim(c.Tenant, "/")
}
