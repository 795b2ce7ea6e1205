package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

// TestTwoTenantsOnCluster serves two tenants (two simulator hosts, one tenants file) from
// one fleet of two worker processes on a three-master Redis Cluster. Both tenants have a
// run called nightly with a poison key. Each run is exact in its tenant's ledger: every key
// resynced once at its own host and never at the other, the poison key dead-lettered with
// the connector's ErrorCode. The tenants' lanes and ledger keys are on slots of their own
// (each tenant's hash tag), and no secret is in Redis or the workers' logs.
func TestTwoTenantsOnCluster(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t, 3)
	rdb := cluster.Client()
	defer rdb.Close()
	tt := e2etest.StartTwoTenants(t)
	const run = "nightly"
	type job struct {
		tn     *e2etest.Tenant
		keys   []string
		poison string
	}
	jobs := []job{{tn: tt.A, keys: e2etest.Keys("CA", 500)}, {tn: tt.B, keys: e2etest.Keys("CB", 500)}}
	for i := range jobs {
		j := &jobs[i]
		j.poison = j.keys[137]
		j.tn.Sim.SetPoison(j.poison)
		e2etest.SubmitTenant(t, rdb, j.tn.ID, run, erpsync.ActorCustomer, j.keys, 25)
	}
	// Submitted, the batches wait in the tenants' lanes: their keys are all there now.
	submitted := e2etest.RedisValues(t, rdb)
	env := tt.WorkerEnv("")
	delete(env, "REDIS_URL")
	env["REDIS_CLUSTER_ADDRS"] = strings.Join(cluster.Addrs(), ",")
	env["WORKER_BUSINESS_RETRIES"] = "1"
	workers := []*e2etest.Process{e2etest.StartWorker(t, env), e2etest.StartWorker(t, env)}

	for _, j := range jobs {
		st := waitTenantRun(t, rdb, j.tn.ID, run, 2*time.Minute)
		if st.TotalKeys != int64(len(j.keys)) || st.ResyncedKeys != int64(len(j.keys)-1) || st.DeadKeys != 1 {
			t.Errorf("%s: %+v, want %d resynced and the poison key dead", j.tn.ID, st, len(j.keys)-1)
		}
		var good []string
		for _, k := range j.keys {
			if k == j.poison {
				continue
			}
			good = append(good, k)
			if n := j.tn.Sim.ResyncCount(k); n != 1 {
				t.Errorf("%s's key %s resynced %d times, want 1", j.tn.ID, k, n)
			}
			for _, o := range jobs {
				if o.tn != j.tn && o.tn.Sim.Seen(k) != 0 {
					t.Errorf("%s's key %s reached %s's host", j.tn.ID, k, o.tn.ID)
				}
			}
		}
		if !sameRecords(st.Records, expectedRecords(erpsync.ActorCustomer, good)) {
			t.Errorf("%s: records %v, want one change per resynced key", j.tn.ID, st.Records)
		}
		dead, err := ledger.NewLedger(rdb).Tenant(j.tn.ID).DeadLetters(context.Background(), run)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || dead[0].Key != j.poison || dead[0].ErrorCode != netserversim.DefaultErrorCode {
			t.Errorf("%s's dead letters %+v, want the poison key %s alone", j.tn.ID, dead, j.poison)
		}
	}

	// Each tenant's lane and ledger keys are in Redis, and on a slot of their own.
	slots := func(tag string) map[int64]bool {
		out := map[int64]bool{}
		for k := range submitted {
			if strings.Contains(k, "{"+tag+"}") {
				out[rdb.ClusterKeySlot(context.Background(), k).Val()] = true
			}
		}
		if len(out) != 1 {
			t.Errorf("keys tagged {%s} on slots %v, want one slot", tag, out)
		}
		return out
	}
	for name, tag := range map[string]func(id string) string{
		"lane":   func(id string) string { return "t:" + id },
		"ledger": func(id string) string { return tasks.RunKey(id, run) },
	} {
		sa, sb := slots(tag(tt.A.ID)), slots(tag(tt.B.ID))
		for s := range sa {
			if sb[s] {
				t.Errorf("the tenants' %s keys share slot %d", name, s)
			}
		}
		t.Logf("%s keys: A on slots %v (node %s), B on %v (node %s)", name, sa, nodeOf(t, rdb, sa), sb, nodeOf(t, rdb, sb))
	}

	values := e2etest.RedisValues(t, rdb)
	var logs strings.Builder
	for _, w := range workers {
		logs.WriteString(w.Log.String())
	}
	for k, v := range values {
		if leaks := e2etest.Leaks(k+" "+v, tt.Secrets()); len(leaks) > 0 {
			t.Errorf("%v in Redis key %s", leaks, k)
		}
	}
	if leaks := e2etest.Leaks(logs.String(), tt.Secrets()); len(leaks) > 0 {
		t.Errorf("%v in the workers' logs", leaks)
	}
	if strings.Contains(logs.String(), "CROSSSLOT") {
		t.Error("a worker logged a CROSSSLOT error")
	}
}

// nodeOf names the cluster master that serves the slots (the first of them).
func nodeOf(t *testing.T, rdb *redis.ClusterClient, slots map[int64]bool) string {
	t.Helper()
	ranges, err := rdb.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for s := range slots {
		for _, r := range ranges {
			if int64(r.Start) <= s && s <= int64(r.End) && len(r.Nodes) > 0 {
				return r.Nodes[0].Addr
			}
		}
	}
	return fmt.Sprint("none of ", len(ranges), " ranges")
}
