package tasks

import (
	"testing"
	"time"
)

func TestMetricsNilSafe(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.call("ok", time.Second)
	m.resynced(1, []ChangeItem{{Table: "contact", Kind: KindAdded}})
	m.dead(ClassBusiness, 1)
	m.retry(ClassTransient, "fast")
	m.split()
	m.breakerHold()
	m.TicketRefreshes(func() int64 { return 1 })
	NewMetrics(nil).TicketRefreshes(func() int64 { return 1 })
}
