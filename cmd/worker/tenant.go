package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/erpresync/erpresync/internal/tenant"
)

// implicitNames names the implicit tenant's fields in errors by the settings that feed them
// (the settings table's Spec column).
var implicitNames = func() tenant.EnvNames {
	n := tenant.EnvNames{}
	for _, s := range settings {
		if s.Spec != 0 {
			n[s.Spec] = s.Env
		}
	}
	return n
}()

// specFromSettings is the implicit tenant of the SUPEROFFICE_* settings. It parses them
// (a value that is no number, duration or boolean is refused here, by name); the checks of
// what they say together are the tenant's (tenant.Spec.Validate, run by tenant.Build).
// withFlow reads the flow-control settings too: `worker call` and the demo take none.
func specFromSettings(v values, withFlow bool) (tenant.Spec, error) {
	s := tenant.Spec{
		URL: v.str("SUPEROFFICE_URL"), Environment: v.str("SUPEROFFICE_ENVIRONMENT"), API: v.str("SUPEROFFICE_API"),
		Ticket: tenant.NewSecret(v.str("SUPEROFFICE_TICKET")), AppToken: tenant.NewSecret(v.str("SUPEROFFICE_APP_TOKEN")),
		Username: v.str("SUPEROFFICE_USERNAME"), Password: tenant.NewSecret(v.str("SUPEROFFICE_PASSWORD")),
		SystemToken: tenant.NewSecret(v.str("SUPEROFFICE_SYSTEM_TOKEN")),
		ContextID:   v.str("SUPEROFFICE_CONTEXT_ID"), LoginURL: v.str("SUPEROFFICE_LOGIN_URL"),
		Naming: implicitNames,
	}
	var err error
	if s.SOAP12, err = v.bool("SUPEROFFICE_SOAP12"); err != nil {
		return s, err
	}
	if s.Timeout, err = v.duration("SUPEROFFICE_TIMEOUT", time.Second, false); err != nil {
		return s, err
	}
	if f := v.str("SUPEROFFICE_PRIVATE_KEY_FILE"); f != "" {
		pem, err := os.ReadFile(f)
		if err == nil && len(pem) == 0 {
			err = fmt.Errorf("%s is empty", f)
		}
		if err != nil {
			return s, fmt.Errorf("SUPEROFFICE_PRIVATE_KEY_FILE: %v", err)
		}
		s.PrivateKey = tenant.NewSecret(string(pem))
	}
	if withFlow {
		err = flowFromSettings(v, &s)
	}
	return s, err
}

// flowFromSettings parses the flow-control settings into s.
func flowFromSettings(v values, s *tenant.Spec) error {
	var err error
	r := v.str("SUPEROFFICE_RATE_LIMIT")
	if s.RateLimit, err = strconv.ParseFloat(r, 64); err != nil {
		return fmt.Errorf("SUPEROFFICE_RATE_LIMIT=%q: %s", r, tenant.RateLimitWant)
	}
	if s.RateBurst, err = v.int("SUPEROFFICE_RATE_BURST", 1); err != nil {
		return err
	}
	if s.RateAdaptive, err = v.bool("SUPEROFFICE_RATE_ADAPTIVE"); err != nil {
		return err
	}
	if s.MaxConcurrency, err = v.int("SUPEROFFICE_MAX_CONCURRENCY", 0); err != nil {
		return err
	}
	if s.SlotLease, err = v.duration("SUPEROFFICE_SLOT_LEASE", time.Second, false); err != nil {
		return err
	}
	if s.BreakerFailures, err = v.int("SUPEROFFICE_BREAKER_FAILURES", 1); err != nil {
		return err
	}
	if s.BreakerProbe, err = v.duration("SUPEROFFICE_BREAKER_PROBE", time.Second, true); err != nil {
		return err
	}
	s.BreakerProbeMax, err = v.duration("SUPEROFFICE_BREAKER_PROBE_MAX", time.Second, true)
	return err
}

// implicitTenant builds the implicit tenant of the settings (tenant.Build with opts); see
// specFromSettings for withFlow.
func implicitTenant(v values, withFlow bool, opts tenant.BuildOptions) (*tenant.Tenant, error) {
	s, err := specFromSettings(v, withFlow)
	if err != nil {
		return nil, err
	}
	return tenant.Build(s, opts)
}
