package nightly

import (
	"context"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
)

// TestTenantsEntries: two tenants' entries of the same name submit each tenant's own run with
// its own producer, and an entry of a tenant without a producer fails without enqueuing.
func TestTenantsEntries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	producers := map[string]*intake.Producer{}
	for _, id := range []string{"Cust1", "Cust2"} {
		p, err := intake.NewProducer(intake.ProducerConfig{Redis: f.rdb, Queue: f.queue, Tenant: id})
		if err != nil {
			t.Fatal(err)
		}
		producers[id] = p
	}
	h, err := NewHandler(HandlerConfig{Producers: func(id string) *intake.Producer { return producers[id] }, Redis: f.rdb, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{}
	for i, id := range []string{"Cust1", "Cust2"} {
		keys := []string{"A", "B", "C"}[:i+2]
		cfg.Entries = append(cfg.Entries, Entry{Tenant: id, Name: "customers", Cron: "@daily", ErpConnection: 3, ActorType: erpsync.ActorCustomer,
			Source: f.write(t, id+".txt", keys...)})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("two tenants' entries of one name: %v", err)
	}
	for i, e := range cfg.Entries {
		if err := h.ProcessTask(context.Background(), nightlyTask(t, e)); err != nil {
			t.Fatal(err)
		}
		st, err := ledger.NewLedger(f.rdb).Tenant(e.Tenant).Status(context.Background(), RunName("customers", f.clock.Now()))
		if err != nil || st.TotalKeys != int64(i+2) {
			t.Errorf("tenant %s: status %+v, %v", e.Tenant, st, err)
		}
	}
	if _, err := f.status(t, RunName("customers", f.clock.Now())); err == nil {
		t.Error("the implicit tenant has a nightly run; want none")
	}
	e := cfg.Entries[0]
	e.Tenant = "Gone"
	if err := h.ProcessTask(context.Background(), nightlyTask(t, e)); err == nil || !strings.Contains(err.Error(), `tenant "Gone" is not configured`) {
		t.Errorf("entry of an unconfigured tenant: %v", err)
	}
	dup := Config{Entries: []Entry{cfg.Entries[0], cfg.Entries[0]}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "used twice for tenant Cust1") {
		t.Errorf("duplicate entry of one tenant: %v", err)
	}
	bad := cfg.Entries[0]
	bad.Tenant = "no such/tenant"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "customers: tenant:") {
		t.Errorf("invalid tenant: %v", err)
	}
}
