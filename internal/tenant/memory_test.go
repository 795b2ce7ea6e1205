package tenant

import (
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
)

// BenchmarkIdleTenantHeap: the live Go heap one idle tenant of the tenants file costs, as a
// worker holds it: 1,000 tenants parsed from one file (password logins, each at its own path
// of the simulator), built on one Redis with the process's shared flow metrics, their
// start-up logins done; the parsed file kept as the fleet keeps it. Reported: HeapAlloc
// after a garbage collection, less the same before parsing, over 1,000.
//
//	go test ./internal/tenant -run '^$' -bench IdleTenantHeap -benchtime 3x
func BenchmarkIdleTenantHeap(b *testing.B) {
	const n = 1000
	sim, err := netserversim.New(netserversim.Config{Users: map[string]string{"ERPSYNC": testPassword}, AnyTenant: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	b.Cleanup(srv.Close)
	var file strings.Builder
	file.WriteString("tenants:\n")
	for i := range n {
		fmt.Fprintf(&file, "  - id: idle%04d\n    url: %s/idle%04d\n    auth: {username: ERPSYNC, password_env: ACME_PASSWORD}\n", i, srv.URL, i)
	}
	data := []byte(file.String())
	db := redistest.New(b)
	opts := BuildOptions{Redis: db.Client(), FlowMetrics: flow.NewMetrics(prometheus.NewRegistry()), Logger: zerolog.Nop()}
	var perTenant float64
	for b.Loop() {
		before := liveHeap()
		specs, err := Parse("tenants.yaml", data, testEnv(fileEnv))
		if err != nil {
			b.Fatal(err)
		}
		ts := make([]*Tenant, len(specs))
		for i, s := range specs {
			if ts[i], err = Build(s, opts); err != nil {
				b.Fatal(err)
			}
		}
		stop := CheckLogins(ts, 8, 10*time.Second, zerolog.Nop())
		testwait.Until(b, "every tenant's login", time.Minute, func() bool {
			for _, t := range ts {
				if t.Refreshes() == 0 {
					return false
				}
			}
			return true
		})
		stop()
		perTenant = (liveHeap() - before) / n
		runtime.KeepAlive(specs)
		for _, t := range ts {
			t.Close()
		}
	}
	b.ReportMetric(perTenant/1024, "heap-KiB/tenant")
}

// liveHeap is HeapAlloc after a garbage collection.
func liveHeap() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc)
}
