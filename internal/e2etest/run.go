package e2etest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/testwait"
)

// Submit enqueues keys as run through intake, as `enqueue` does: batches of batch keys for
// ErpConnection, with opts on every task. It fails the test unless every key was taken.
func Submit(t testing.TB, rdb redis.UniversalClient, run string, actor erpsync.ActorType, keys []string, batch int, opts ...asynq.Option) {
	t.Helper()
	SubmitTenant(t, rdb, "", run, actor, keys, batch, opts...)
}

// SubmitTenant is Submit for a run of tenant ("" the implicit tenant).
func SubmitTenant(t testing.TB, rdb redis.UniversalClient, tenant, run string, actor erpsync.ActorType, keys []string, batch int, opts ...asynq.Option) {
	t.Helper()
	p, err := intake.NewProducer(intake.ProducerConfig{Redis: rdb, Tenant: tenant, TaskOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := p.Submit(context.Background(), intake.RunSpec{Run: run, ErpConnectionID: ErpConnection, ActorType: actor, BatchSize: batch},
		intake.Source{Name: run, R: strings.NewReader(strings.Join(keys, "\n") + "\n")})
	if err != nil {
		t.Fatalf("submit %s: %v", run, err)
	}
	if sum.Valid != int64(len(keys)) {
		t.Fatalf("submitted %d of %d keys: %+v", sum.Valid, len(keys), sum)
	}
}

// RunStatus reads run from the ledger, giving up after two seconds (Redis may be down).
func RunStatus(rdb redis.UniversalClient, run string) (ledger.RunStatus, error) {
	return TenantRunStatus(rdb, "", run)
}

// TenantRunStatus is RunStatus for a run of tenant.
func TenantRunStatus(rdb redis.UniversalClient, tenant, run string) (ledger.RunStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return ledger.NewLedger(rdb).Tenant(tenant).Status(ctx, run)
}

// RunFinished is a WaitFor condition: run has keys and none of them pending.
func RunFinished(rdb redis.UniversalClient, run string) func() (bool, error) {
	return func() (bool, error) {
		_, done, err := runFinished(rdb, run)
		return done, err
	}
}

func runFinished(rdb redis.UniversalClient, run string) (ledger.RunStatus, bool, error) {
	st, err := RunStatus(rdb, run)
	if err != nil {
		return st, false, err
	}
	return st, st.TotalKeys > 0 && st.PendingKeys == 0, fmt.Errorf("run %s: %+v", run, st)
}

// WaitRunFinished waits up to timeout until run has nothing pending and returns its status.
func WaitRunFinished(t testing.TB, rdb redis.UniversalClient, run string, timeout time.Duration) ledger.RunStatus {
	t.Helper()
	var st ledger.RunStatus
	testwait.For(t, "run "+run+" finished", timeout, func() (bool, error) {
		var done bool
		var err error
		st, done, err = runFinished(rdb, run)
		return done, err
	})
	return st
}

// ExpectedRecords is what the ledger's records must be once keys of actor were each
// resynced exactly once at the simulator: counts of changes by kind and table.
func ExpectedRecords(actor erpsync.ActorType, keys []string) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for _, c := range netserversim.ExpectedChanges(netserversim.ActorType(actor), keys) {
		kind := string(c.Kind)
		if out[kind] == nil {
			out[kind] = map[string]int64{}
		}
		out[kind][c.Table]++
	}
	return out
}
