package flow

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the flow control's Prometheus series, labelled by tenant, shared by every
// Control of a process: a worker serving many tenants registers them once (NewMetrics) and
// gives them to each tenant's Control (Config.Metrics). The breaker state is read from Redis
// at scrape time, once for all tenants, so every worker shows the same state.
type Metrics struct {
	requests    *prometheus.CounterVec
	waits       *prometheus.CounterVec
	transitions *prometheus.CounterVec

	mu       sync.Mutex
	controls map[*Control]struct{} // whose breaker state a scrape reports
}

var breakerStateDesc = prometheus.NewDesc("erpresync_breaker_state",
	"Circuit breaker state per tenant and ERP connection (0 is the tenant's breaker): 0 closed, 1 open, 2 half-open.",
	[]string{"tenant", "erp_connection"}, nil)

// NewMetrics creates the series and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpresync_flow_requests_total",
			Help: "HTTP requests to SuperOffice sent by this worker under flow control, by tenant."}, []string{"tenant"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpresync_flow_waits_total",
			Help: "Requests that had to wait, by tenant and reason: rate, slot, cooldown."}, []string{"tenant", "reason"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpresync_breaker_transitions_total",
			Help: "Circuit breaker transitions made by this worker, by tenant, ERP connection (0: the tenant) and new state."},
			[]string{"tenant", "erp_connection", "to"}),
		controls: map[*Control]struct{}{},
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.waits, m.transitions, stateCollector{m})
	}
	return m
}

func (m *Metrics) add(c *Control) {
	m.mu.Lock()
	m.controls[c] = struct{}{}
	m.mu.Unlock()
}

func (m *Metrics) remove(c *Control) {
	m.mu.Lock()
	delete(m.controls, c)
	m.mu.Unlock()
}

func (c *Control) countRequest() {
	c.metrics.requests.WithLabelValues(c.cfg.Tenant).Inc()
}

func (c *Control) countWait(reason string) {
	c.metrics.waits.WithLabelValues(c.cfg.Tenant, reason).Inc()
}

func (c *Control) countTransition(conn int, to string) {
	c.metrics.transitions.WithLabelValues(c.cfg.Tenant, strconv.Itoa(conn), to).Inc()
}

// stateCollector reports erpresync_breaker_state for each registered tenant's breaker and
// every connection breaker of theirs that ever opened, from one read of the breakers.
type stateCollector struct{ m *Metrics }

func (s stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerStateDesc }

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	s.m.mu.Lock()
	cs := make([]*Control, 0, len(s.m.controls))
	for c := range s.m.controls {
		cs = append(cs, c)
	}
	s.m.mu.Unlock()
	if len(cs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	tenants := map[string]bool{} // served tenant → its breaker reported
	for _, c := range cs {
		tenants[c.cfg.Tenant] = false
	}
	bs, err := breakers(ctx, cs[0].rdb, func(name string) bool { _, ours := tenants[name]; return ours })
	if err != nil {
		return
	}
	for _, b := range bs {
		tenants[b.Tenant] = tenants[b.Tenant] || b.ErpConnection == 0
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, stateValue(b.State), b.Tenant, strconv.Itoa(b.ErpConnection))
	}
	names := make([]string, 0, len(tenants))
	for t, seen := range tenants {
		if !seen {
			names = append(names, t)
		}
	}
	slices.Sort(names)
	for _, t := range names {
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, 0, t, "0")
	}
}

func stateValue(s string) float64 {
	switch s {
	case StateOpen:
		return 1
	case StateHalfOpen:
		return 2
	}
	return 0
}
