package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/tenantstate"
	"github.com/erpresync/erpresync/internal/testwait"
)

// TestTenantMovesAndMaintenance: workers given the tenant by its environment and context id
// (no URL) run a bulk resync while SuperOffice moves the tenant to another host, a worker
// joins after the move, and the tenant then goes into OfflineMaintenance for a while. The workers follow the move, hold every batch during the
// maintenance (no calls, no retries spent) and finish with zero dead letters and every key
// resynced; the state API is asked a handful of times, not once per call.
//
// It spends most of its time waiting for the state's rechecks, so it runs alongside the
// scenarios that keep the CPU busy.
func TestTenantMovesAndMaintenance(t *testing.T) {
	t.Parallel()
	srv, rdb := startRedis(t)
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{e2etest.User: e2etest.Password},
		Hosts: 2, StateValidFor: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	sim.SetLatency(20 * time.Millisecond)
	keys := e2etest.Keys("T", size(4000, 30000))
	const run = "chaos-tenant-state"
	j := &job{sim: sim, run: run, actor: erpsync.ActorCustomer, keys: keys}
	j.submit(t, rdb, 50, asynq.MaxRetry(1))

	ws := newWorkers(t, "redis://"+srv.Addr+"/0", sim, map[string]string{
		"SUPEROFFICE_URL": "", "SUPEROFFICE_ENVIRONMENT": sim.EnvironmentURL(), "SUPEROFFICE_CONTEXT_ID": netserversim.DefaultTenant,
	})
	ws.start()
	ws.start()
	progressed(t, rdb, 0.2, 2*time.Minute, j)
	if err := sim.Move(1); err != nil {
		t.Fatal(err)
	}
	ws.start() // a worker that joins after the move reads the fleet's answer
	progressed(t, rdb, 0.5, 2*time.Minute, j)

	sim.SetTenantState(netserversim.StateOfflineMaintenance)
	testwait.For(t, "the maintenance seen by the fleet", time.Minute, func() (bool, error) {
		ps, err := tenantstate.Pauses(context.Background(), rdb)
		return len(ps) == 1 && ps[0].State == tenantstate.OfflineMaintenance, fmt.Errorf("pauses %+v, %v", ps, err)
	})
	before := sim.Counts().Calls
	askedBefore := sim.StateRequests()
	// The maintenance lasts until the fleet has asked the state API again (one ValidUntil).
	testwait.For(t, "a recheck during the maintenance", time.Minute, func() (bool, error) {
		return sim.StateRequests() > askedBefore, fmt.Errorf("%d state questions", sim.StateRequests())
	})
	during := sim.Counts().Calls
	sim.SetTenantState(netserversim.StateRunning)
	e2etest.WaitRunFinished(t, rdb, run, 4*time.Minute)
	audit(t, rdb, j)

	if n := during[netserversim.OutcomeOK] - before[netserversim.OutcomeOK]; n > 0 {
		t.Errorf("%d calls answered during the maintenance", n)
	}
	after := sim.Counts().Calls
	t.Logf("%d calls met the old host's 421, %d a 503 of the maintenance; the state API was asked %d times",
		after[netserversim.OutcomeMisdirected], after[netserversim.OutcomeUnavailable], sim.StateRequests())
	if n := after[netserversim.OutcomeMisdirected]; n > 30 {
		t.Errorf("%d calls met a 421, want a few per worker", n)
	}
}
