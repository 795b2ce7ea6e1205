package tasks

import (
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/hibiken/asynq"
)

func TestValidateTenantID(t *testing.T) {
	for _, ok := range []string{"Cust12345", "acme-onsite", "a", "x_y.z", strings.Repeat("a", MaxTenantID)} {
		if err := ValidateTenantID(ok); err != nil {
			t.Errorf("ValidateTenantID(%q) = %v", ok, err)
		}
	}
	for id, want := range map[string]string{
		"":                                 "empty",
		strings.Repeat("a", MaxTenantID+1): "at most 64",
		"-x":                               `character '-' at byte 0`,
		"a/b":                              `character '/' at byte 1`,
		"a b":                              `character ' '`,
		"{x}":                              `character '{'`,
	} {
		if err := ValidateTenantID(id); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateTenantID(%q) = %v, want an error containing %q", id, err, want)
		}
	}
}

func TestRunKeyAndGroups(t *testing.T) {
	if k := RunKey("", "nightly"); k != "nightly" {
		t.Errorf("implicit tenant's run key = %q", k)
	}
	if k := RunKey("Cust1", "nightly"); k != "Cust1/nightly" {
		t.Errorf("run key = %q", k)
	}
	if tn, run := SplitRunKey("Cust1/nightly"); tn != "Cust1" || run != "nightly" {
		t.Errorf("SplitRunKey = %q, %q", tn, run)
	}
	if g := TenantGroupName("Cust1", 3, erpsync.ActorCustomer); g != "erpresync:Cust1:3:Customer" || g == GroupName(3, erpsync.ActorCustomer) {
		t.Errorf("group = %q", g)
	}
	b := Batch{Tenant: "Cust1", Run: "nightly", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Keys: []string{"A"}}
	task, err := NewResyncTask(b)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := ParseBatch(task.Payload())
	if err != nil || pb.Tenant != "Cust1" {
		t.Errorf("ParseBatch = %+v, %v", pb, err)
	}
	b.Tenant = "bad/tenant"
	if _, err := NewResyncTask(b); err == nil {
		t.Error("a batch with an invalid tenant was accepted")
	}
	if _, err := NewTenantTrickleTask("bad tenant", 3, erpsync.ActorCustomer, "A"); err == nil {
		t.Error("a trickle key with an invalid tenant was accepted")
	}
}

func TestResyncSettingsOf(t *testing.T) {
	got := ResyncSettingsOf()
	if got != (ResyncSettings{Queue: DefaultQueue, MaxRetry: DefaultMaxRetry, Timeout: DefaultTimeout, Retention: DefaultRetention}) {
		t.Errorf("defaults = %+v", got)
	}
	got = ResyncSettingsOf(asynq.Queue("q"), asynq.MaxRetry(2), asynq.Timeout(time.Minute), asynq.Retention(time.Hour))
	if got != (ResyncSettings{Queue: "q", MaxRetry: 2, Timeout: time.Minute, Retention: time.Hour}) {
		t.Errorf("with options = %+v", got)
	}
}
