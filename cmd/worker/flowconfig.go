package main

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
)

// flowConfig reads the flow-control settings (without Redis, registry and logger). Every
// error names the setting at fault.
func flowConfig(v values) (flow.Config, error) {
	var c flow.Config
	base, err := tenantURL(v)
	if err != nil {
		return c, err
	}
	c.Tenant = tenantName(base)
	s := v.str("SUPEROFFICE_RATE_LIMIT")
	if c.Rate, err = strconv.ParseFloat(s, 64); err != nil || c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate) {
		return c, fmt.Errorf("SUPEROFFICE_RATE_LIMIT=%q: want requests per second >= 0, e.g. 20 or 2.5 (0: no limit)", s)
	}
	if c.Burst, err = v.int("SUPEROFFICE_RATE_BURST", 1); err != nil {
		return c, err
	}
	if c.Adaptive, err = v.bool("SUPEROFFICE_RATE_ADAPTIVE"); err != nil {
		return c, err
	}
	if c.Adaptive && c.Rate == 0 {
		return c, errors.New("SUPEROFFICE_RATE_ADAPTIVE=true needs SUPEROFFICE_RATE_LIMIT, the rate to adapt")
	}
	if c.MaxConcurrency, err = v.int("SUPEROFFICE_MAX_CONCURRENCY", 0); err != nil {
		return c, err
	}
	if c.Lease, err = v.duration("SUPEROFFICE_SLOT_LEASE", time.Second, false); err != nil {
		return c, err
	}
	if c.TenantFailures, err = v.int("SUPEROFFICE_BREAKER_FAILURES", 1); err != nil {
		return c, err
	}
	if c.ProbeInitial, err = v.duration("SUPEROFFICE_BREAKER_PROBE", time.Second, true); err != nil {
		return c, err
	}
	if c.ProbeMax, err = v.duration("SUPEROFFICE_BREAKER_PROBE_MAX", time.Second, true); err != nil {
		return c, err
	}
	if c.ProbeMax < c.ProbeInitial {
		return c, fmt.Errorf("SUPEROFFICE_BREAKER_PROBE_MAX=%s is shorter than SUPEROFFICE_BREAKER_PROBE=%s", c.ProbeMax, c.ProbeInitial)
	}
	return c, nil
}

// newFlow starts the tenant's flow control on rdb.
func newFlow(c flow.Config, rdb redis.UniversalClient, reg prometheus.Registerer, log zerolog.Logger) (*flow.Control, error) {
	c.Redis, c.Registerer, c.Logger = rdb, reg, log
	fc, err := flow.New(c)
	return fc, settingError(err)
}

// tenantName names a tenant by its base URL's host and path, lower case: every worker
// configured for the same tenant shares its limits, whatever the spelling of the URL.
func tenantName(base string) string {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || u.Host == "" {
		return strings.ToLower(strings.TrimSpace(base))
	}
	return strings.ToLower(u.Host + strings.TrimRight(u.Path, "/"))
}

// wrapTransport is how newTenant puts flow control under every SuperOffice request; nil
// leaves the transport as it is.
type wrapTransport func(http.RoundTripper) http.RoundTripper
