package flow

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the flow control's Prometheus series. The breaker state is read from Redis at
// scrape time, so every worker shows the same state.
type metrics struct {
	requests    prometheus.Counter
	waits       *prometheus.CounterVec
	transitions *prometheus.CounterVec
}

var breakerStateDesc = prometheus.NewDesc("erpresync_breaker_state",
	"Circuit breaker state per tenant and ERP connection (0 is the tenant's breaker): 0 closed, 1 open, 2 half-open.",
	[]string{"tenant", "erp_connection"}, nil)

func newMetrics(c *Control, reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpresync_flow_requests_total",
			Help: "HTTP requests to SuperOffice sent by this worker under flow control."}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpresync_flow_waits_total",
			Help: "Requests that had to wait, by reason: rate, slot, cooldown."}, []string{"reason"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpresync_breaker_transitions_total",
			Help: "Circuit breaker transitions made by this worker, by ERP connection (0: the tenant) and new state."},
			[]string{"erp_connection", "to"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.waits, m.transitions, stateCollector{c})
	}
	return m
}

func (m *metrics) request()           { m.requests.Inc() }
func (m *metrics) wait(reason string) { m.waits.WithLabelValues(reason).Inc() }
func (m *metrics) transition(conn int, to string) {
	m.transitions.WithLabelValues(strconv.Itoa(conn), to).Inc()
}

// stateCollector reports erpresync_breaker_state for the tenant's breaker and every
// connection breaker that ever opened.
type stateCollector struct{ c *Control }

func (s stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerStateDesc }

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bs, err := Breakers(ctx, s.c.rdb)
	if err != nil {
		return
	}
	seenTenant := false
	for _, b := range bs {
		if b.Tenant != s.c.cfg.Tenant {
			continue
		}
		seenTenant = seenTenant || b.ErpConnection == 0
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, stateValue(b.State), b.Tenant, strconv.Itoa(b.ErpConnection))
	}
	if !seenTenant {
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, 0, s.c.cfg.Tenant, "0")
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
