package tenantstate_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/tenantstate"
)

// A 503 that the tenant's maintenance explains is a hold, not a breaker failure: flow
// control, under the follower, asks the state API (through Explain) before it counts a
// systemic failure. Without Explain the same 503 opens a breaker of one failure.
func TestMaintenanceFoundByAFailureIsAHoldNotABreakerFailure(t *testing.T) {
	t.Parallel()
	for _, explain := range []bool{true, false} {
		r := newRig(t, netserversim.Config{StateValidFor: time.Hour})
		f := r.follower(t)
		cfg := flow.Config{Redis: r.rdb.Client(), Tenant: "@Cust12345", TenantFailures: 1, Now: r.clock.Now}
		if explain {
			cfg.Explain = f.Explain
		}
		fc, err := flow.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fc.Close)
		c := &http.Client{Transport: f.Transport(fc.Transport(nil)), Timeout: 10 * time.Second}
		if status, err := r.call(c, f, "K0"); status != http.StatusOK || err != nil {
			t.Fatalf("before: %d %v", status, err)
		}
		r.sim.SetTenantState(netserversim.StateOfflineMaintenance)
		_, err = r.call(c, f, "K1")
		pe := wantPaused(t, err)
		breaker := fc.Paused(context.Background(), 0)
		if !explain {
			if breaker == nil {
				t.Errorf("without Explain the 503 should have opened the breaker (the test's contrast)")
			}
			continue
		}
		if !strings.HasPrefix(pe.Reason, "SuperOffice: tenant Cust12345 in OfflineMaintenance since ") {
			t.Errorf("hold %q, want the tenant's state", pe.Reason)
		}
		if breaker != nil {
			t.Errorf("the breaker opened on a failure the maintenance explains: %v", breaker)
		}
		if n := r.sim.StateRequests(); n != 2 {
			t.Errorf("state API asked %d times, want 2 (first sight, after the 503)", n)
		}
		ps, err := tenantstate.Pauses(context.Background(), r.rdb.Client())
		if err != nil || len(ps) != 1 || ps[0].Reason != pe.Reason || ps[0].State != tenantstate.OfflineMaintenance {
			t.Errorf("Pauses: %+v %v, want the one hold %q", ps, err, pe.Reason)
		}
		// The rig's follower is the implicit tenant's: its reports show the hold, another
		// tenant's do not.
		if ps, err := tenantstate.TenantPauses(context.Background(), r.rdb.Client(), ""); err != nil || len(ps) != 1 || ps[0].Reason != pe.Reason {
			t.Errorf("TenantPauses of the implicit tenant: %+v %v, want the one hold", ps, err)
		}
		if ps, err := tenantstate.TenantPauses(context.Background(), r.rdb.Client(), "other"); err != nil || len(ps) != 0 {
			t.Errorf("TenantPauses of another tenant: %+v %v, want none", ps, err)
		}
	}
}

// Without an Environment of its own the endpoint verifies each notification against the
// environment of the tenant's Follower.
func TestNotificationsUseTheFollowersEnvironment(t *testing.T) {
	t.Parallel()
	r := newRig(t, netserversim.Config{StateValidFor: time.Hour})
	f := r.follower(t)
	h, err := tenantstate.NewNotifications(t.Context(), tenantstate.NotificationsConfig{Now: r.clock.Now,
		Logger: zerolog.New(zerolog.NewTestWriter(t)),
		Lookup: func(id string) *tenantstate.Follower {
			if strings.EqualFold(id, f.ContextID()) {
				return f
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	url := srv.URL + tenantstate.NotificationsPath
	r.sim.SetTenantState(netserversim.StateSuspended)
	if s := r.notify(t, url, netserversim.ChangeSuspend); s != http.StatusOK {
		t.Fatalf("Suspend answered %d", s)
	}
	_, err = r.call(client(f), f, "K1")
	wantPaused(t, err)
	genuine, _ := r.sim.Notification(netserversim.ChangeResume)
	genuine.Token = forge(t, genuine.Token)
	if s, err := netserversim.PostNotification(t.Context(), url, genuine); s != http.StatusUnauthorized || err != nil {
		t.Errorf("forged Resume: %d %v, want 401", s, err)
	}
}
