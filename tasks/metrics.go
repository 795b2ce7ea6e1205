package tasks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Call outcomes, the "outcome" label of erpresync_calls_total: "ok", or the Class name of
// the error ("business", "transient", "throttled", "auth", "permanent").
const OutcomeOK = "ok"

// Metrics are the handler's Prometheus collectors, all named erpresync_*. A nil *Metrics
// is valid and records nothing, so tests can leave it out. Safe for concurrent use.
//
// The series an operator alerts on per tenant carry a "tenant" label (empty for the implicit
// tenant): calls by outcome, keys resynced, keys dead by class, breaker holds and auth
// failures. NewMetrics returns the implicit tenant's view and Tenant another tenant's, over
// the same collectors. With T tenants that is at most 14·T series (6 outcomes, 5 classes and
// 3 counters each, only those that ever counted); latency, records, retries and splits are
// the fleet's, without the label, so 1,000 tenants stay near 3,000 series in practice.
type Metrics struct {
	reg    prometheus.Registerer
	tenant string
	vecs   *tenantVecs

	// Calls counts ForceResyncExternal calls by outcome.
	Calls *prometheus.CounterVec
	// CallDuration is the latency of ForceResyncExternal calls, in seconds.
	CallDuration prometheus.Histogram
	// KeysResynced counts keys whose batch succeeded (recorded once per batch).
	KeysResynced prometheus.Counter
	// KeysDead counts dead-lettered keys by class.
	KeysDead *prometheus.CounterVec
	// RecordsChanged counts CRM rows reported in Changes, by table and kind.
	RecordsChanged *prometheus.CounterVec
	// Retries counts retries by class and layer ("fast": in-process; "asynq": handed back
	// to asynq).
	Retries *prometheus.CounterVec
	// Splits counts batches split to isolate poison keys.
	Splits prometheus.Counter
	// BreakerHolds counts batches held back because a circuit breaker is open.
	BreakerHolds prometheus.Counter
	// AuthFailures counts calls that ended with an auth-class error (refused login,
	// rejected ticket after the client's refresh).
	AuthFailures prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered). It
// panics if they are already registered, like prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	v := &tenantVecs{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_calls_total",
			Help: "ForceResyncExternal calls by tenant and outcome (ok, business, transient, throttled, auth, permanent).",
		}, []string{"tenant", "outcome"}),
		resynced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_keys_resynced_total",
			Help: "External keys resynced, by tenant (counted once per successful batch).",
		}, []string{"tenant"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_keys_dead_total",
			Help: "External keys dead-lettered, by tenant and class.",
		}, []string{"tenant", "class"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_breaker_holds_total",
			Help: "Batches held back (no retry used), by tenant, because a circuit breaker is open, the tenant is paused, or it is not configured.",
		}, []string{"tenant"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_auth_failures_total",
			Help: "Calls refused for credentials (login refused, ticket rejected after refresh), by tenant. Check the tenant's credentials.",
		}, []string{"tenant"}),
	}
	m := &Metrics{
		reg:  reg,
		vecs: v,
		CallDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "erpresync_call_duration_seconds",
			Help:    "Latency of ForceResyncExternal calls.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		RecordsChanged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_records_changed_total",
			Help: "CRM rows reported in Changes, by table and kind (added, updated, deleted).",
		}, []string{"table", "kind"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "erpresync_retries_total",
			Help: "Retries by class and layer (fast: in-process; asynq: handed back to the queue).",
		}, []string{"class", "layer"}),
		Splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "erpresync_batch_splits_total",
			Help: "Batches split in halves after IsOk=false, to isolate poison keys.",
		}),
	}
	m.bind("")
	if reg != nil {
		reg.MustRegister(v.calls, m.CallDuration, v.resynced, v.dead, m.RecordsChanged,
			m.Retries, m.Splits, v.holds, v.auth)
	}
	return m
}

// tenantVecs are the collectors with a tenant label, shared by every tenant's view.
type tenantVecs struct {
	calls, resynced, dead, holds, auth *prometheus.CounterVec
}

// bind points m's per-tenant fields at tenant's series.
func (m *Metrics) bind(tenant string) {
	m.tenant = tenant
	l := prometheus.Labels{"tenant": tenant}
	m.Calls = m.vecs.calls.MustCurryWith(l)
	m.KeysResynced = m.vecs.resynced.With(l)
	m.KeysDead = m.vecs.dead.MustCurryWith(l)
	m.BreakerHolds = m.vecs.holds.With(l)
	m.AuthFailures = m.vecs.auth.With(l)
}

// Tenant returns the view of m that counts for tenant ("" the implicit tenant), over the same
// collectors; give it to that tenant's handler. A nil m gives nil.
func (m *Metrics) Tenant(tenant string) *Metrics {
	if m == nil {
		return nil
	}
	c := *m
	c.bind(tenant)
	return &c
}

// TicketRefreshes exports fn (for example a ticket cache's Refreshes method) as the counter
// erpresync_ticket_refreshes_total on the Registerer given to NewMetrics. Call it once.
func (m *Metrics) TicketRefreshes(fn func() int64) {
	if m == nil || m.reg == nil || fn == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "erpresync_ticket_refreshes_total",
		Help: "SuperOffice tickets obtained (logins), as counted by the ticket source.",
	}, func() float64 { return float64(fn()) }))
}

func (m *Metrics) call(outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.Calls.WithLabelValues(outcome).Inc()
	m.CallDuration.Observe(d.Seconds())
	if outcome == ClassAuth.String() {
		m.AuthFailures.Inc()
	}
}

func (m *Metrics) resynced(n int, items []ChangeItem) {
	if m == nil {
		return
	}
	m.KeysResynced.Add(float64(n))
	for _, it := range items {
		m.RecordsChanged.WithLabelValues(it.Table, it.Kind).Inc()
	}
}

func (m *Metrics) dead(c Class, n int) {
	if m == nil {
		return
	}
	m.KeysDead.WithLabelValues(c.String()).Add(float64(n))
}

func (m *Metrics) retry(c Class, layer string) {
	if m == nil {
		return
	}
	m.Retries.WithLabelValues(c.String(), layer).Inc()
}

func (m *Metrics) split() {
	if m != nil {
		m.Splits.Inc()
	}
}

func (m *Metrics) breakerHold() {
	if m != nil {
		m.BreakerHolds.Inc()
	}
}
