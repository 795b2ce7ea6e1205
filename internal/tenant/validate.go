package tenant

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/intakeapi"
	"github.com/erpresync/erpresync/tasks"
)

// RateLimitWant is what a rate limit must be; an error about one reads NAME="VALUE": then
// this.
const RateLimitWant = "want requests per second >= 0, e.g. 20 or 2.5 (0: no limit)"

// Validate checks s before anything is built, and reports the first problem naming the field
// at fault (and, for a tenant of the tenants file, its line) and what would be valid. Build
// calls it; the libraries Build configures check the rest (the URL's form, the private key).
func (s Spec) Validate() error {
	if s.ID != "" {
		if err := tasks.ValidateTenantID(s.ID); err != nil {
			return s.errorf(FieldID, "%s: %v", s.name(FieldID), err)
		}
	}
	if s.URL == "" && s.Environment == "" {
		return s.errorf(FieldURL, "%s is not set: the tenant base URL, such as https://sod.superoffice.com/Cust12345 (or %s and %s, to follow the tenant wherever it lives)",
			s.name(FieldURL), s.name(FieldEnvironment), s.name(FieldContextID))
	}
	for _, check := range []func() error{s.validateFlow, s.validateTransport, s.validateEnvironment, s.validateCredentials} {
		if err := check(); err != nil {
			return err
		}
	}
	tokens := make([]string, len(s.IntakeTokens))
	for i, t := range s.IntakeTokens {
		tokens[i] = t.Reveal()
	}
	if err := CheckIntakeTokens(s.name(FieldIntakeTokens), tokens); err != nil {
		return s.errorf(FieldIntakeTokens, "%v", err)
	}
	return nil
}

// CheckIntakeTokens is the one check of intake tokens: each at least
// intakeapi.MinTokenLength long. name is the tokens' setting, for the message.
func CheckIntakeTokens(name string, tokens []string) error {
	for i, t := range tokens {
		if len(t) < intakeapi.MinTokenLength {
			return fmt.Errorf("%s: token %d is %d characters long: want at least %d (e.g. `openssl rand -hex 32`)", name, i+1, len(t), intakeapi.MinTokenLength)
		}
	}
	return nil
}

// validateFlow checks the flow-control fields.
func (s Spec) validateFlow() error {
	if r := s.RateLimit; r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return s.errorf(FieldRateLimit, "%s=%q: %s", s.name(FieldRateLimit), strconv.FormatFloat(r, 'f', -1, 64), RateLimitWant)
	}
	for _, c := range []struct {
		f Field
		n int
	}{{FieldRateBurst, s.RateBurst}, {FieldMaxConcurrency, s.MaxConcurrency}, {FieldBreakerFailures, s.BreakerFailures}} {
		if c.n < 0 {
			return s.errorf(c.f, "%s=%d: want a whole number >= 0", s.name(c.f), c.n)
		}
	}
	if s.RateAdaptive && s.RateLimit == 0 {
		return s.errorf(FieldRateAdaptive, "%s=true needs %s, the rate to adapt", s.name(FieldRateAdaptive), s.name(FieldRateLimit))
	}
	for _, c := range []struct {
		f     Field
		d     time.Duration
		whole bool
	}{{FieldSlotLease, s.SlotLease, false}, {FieldBreakerProbe, s.BreakerProbe, true}, {FieldBreakerProbeMax, s.BreakerProbeMax, true}} {
		if err := s.checkDuration(c.f, c.d, c.whole); err != nil {
			return err
		}
	}
	probe, probeMax := or(s.BreakerProbe, flow.DefaultProbeInitial), or(s.BreakerProbeMax, flow.DefaultProbeMax)
	if probeMax < probe {
		return s.errorf(FieldBreakerProbeMax, "%s=%s is shorter than %s=%s", s.name(FieldBreakerProbeMax), probeMax, s.name(FieldBreakerProbe), probe)
	}
	return nil
}

// checkDuration checks a duration that is zero (its default) or at least a second; asynq
// keeps whole seconds, so whole rejects anything finer, which it would round down.
func (s Spec) checkDuration(f Field, d time.Duration, whole bool) error {
	switch {
	case d != 0 && d < time.Second:
		return s.errorf(f, "%s=%s: want a duration such as 30s or 5m, at least 1s", s.name(f), d)
	case whole && d%time.Second != 0:
		return s.errorf(f, "%s=%s: asynq keeps whole seconds; use e.g. %s", s.name(f), d, d.Round(time.Second))
	}
	return nil
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// validateTransport checks the API, SOAP 1.2 and the timeout.
func (s Spec) validateTransport() error {
	api := s.api()
	if api != APISOAP && api != APIREST {
		return s.errorf(FieldAPI, "%s=%q: want soap or rest", s.name(FieldAPI), s.API)
	}
	if s.SOAP12 && api == APIREST {
		return s.errorf(FieldSOAP12, "%s is set but %s=rest: SOAP 1.2 applies to the SOAP transport only", s.name(FieldSOAP12), s.name(FieldAPI))
	}
	return s.checkDuration(FieldTimeout, s.Timeout, false)
}

// validateEnvironment checks the environment's base URL and that the context id goes with it.
func (s Spec) validateEnvironment() error {
	if s.Environment == "" {
		return nil
	}
	u, err := url.Parse(EnvironmentURL(s.Environment))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return s.errorf(FieldEnvironment, "%s=%q: want the environment's base URL, such as https://online.superoffice.com (no path), or one of %s",
			s.name(FieldEnvironment), s.Environment, strings.Join(EnvironmentNames, ", "))
	}
	if s.ContextID == "" {
		return s.errorf(FieldEnvironment, "%s is set but %s is not: the environment knows the tenant by its context id, e.g. Cust12345", s.name(FieldEnvironment), s.name(FieldContextID))
	}
	return nil
}

// validateCredentials checks that exactly one way to log in is set, and set whole.
func (s Spec) validateCredentials() error {
	type way struct {
		set    bool
		fields []Field
	}
	ways := []way{
		{s.Ticket.IsSet(), []Field{FieldTicket}},
		{s.Username != "" || s.Password.IsSet(), []Field{FieldUsername, FieldPassword}},
		{s.systemUserSet(), []Field{FieldSystemToken, FieldPrivateKey, FieldContextID, FieldLoginURL}},
	}
	var set []string
	var first Field
	for _, w := range ways {
		if w.set {
			if set == nil {
				first = w.fields[0]
			}
			set = append(set, s.names("/", w.fields...))
		}
	}
	switch len(set) {
	case 0:
		return s.errorf(FieldID, "no SuperOffice credentials: set %s, or %s (on-site), or %s (Online system user)",
			s.name(FieldTicket), s.names(" and ", FieldUsername, FieldPassword), s.namesList(FieldSystemToken, FieldPrivateKey, FieldContextID, FieldLoginURL))
	case 1:
	default:
		return s.errorf(first, "contradictory SuperOffice credentials: %s are all set; set exactly one way to authenticate", strings.Join(set, " and "))
	}
	switch s.Mode() {
	case ModePassword:
		if s.Username == "" {
			return s.errorf(FieldPassword, "%s is set but %s is not", s.name(FieldPassword), s.name(FieldUsername))
		}
		if !s.Password.IsSet() {
			return s.errorf(FieldUsername, "%s is set but %s is not", s.name(FieldUsername), s.name(FieldPassword))
		}
	case ModeSystemUser:
		need := []Field{FieldSystemToken, FieldPrivateKey, FieldContextID, FieldLoginURL, FieldAppToken}
		for i, set := range []bool{s.SystemToken.IsSet(), s.PrivateKey.IsSet(), s.ContextID != "", s.loginURL() != "", s.AppToken.IsSet()} {
			if !set {
				return s.errorf(need[i], "%s is not set; the Online system-user login needs %s", s.name(need[i]), s.namesList(need...))
			}
		}
	}
	return nil
}

// namesList is "a, b, c and d".
func (s Spec) namesList(fs ...Field) string {
	if len(fs) == 1 {
		return s.name(fs[0])
	}
	return s.names(", ", fs[:len(fs)-1]...) + " and " + s.name(fs[len(fs)-1])
}
