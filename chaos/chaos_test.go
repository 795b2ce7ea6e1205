package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/testwait"
)

// TestKillWorkers: two tenants on two SuperOffice hosts, one run each; kill -9 of a random
// worker every few seconds while calls are in flight (the simulators answer slowly, so every
// kill lands on work), a replacement started each time. asynq hands a killed worker's tasks
// to another after their lease and its recoverer's next look (up to about 90 s), and the
// tenants' lanes hand a killed dispatcher's jobs on after theirs; nothing is lost, the
// ledger counts every key once in its tenant's run, and no key reaches the other tenant.
func TestKillWorkers(t *testing.T) {
	t.Parallel()
	srv, rdb := startRedis(t)
	tt := e2etest.StartTwoTenants(t)
	n := size(12000, 60000) / 2
	const run = "chaos-kill9" // both tenants' runs have this name
	a := tenantJob(tt.A, run, erpsync.ActorCustomer, e2etest.Keys("KA", n))
	b := tenantJob(tt.B, run, erpsync.ActorCustomer, e2etest.Keys("KB", n))
	for _, j := range []*job{a, b} {
		j.sim.SetLatency(300 * time.Millisecond)
		j.submit(t, rdb, 50)
	}

	ws := newTenantWorkers(t, "redis://"+srv.Addr+"/0", tt, nil)
	for range 3 {
		ws.start()
	}
	rng := rand.New(rand.NewPCG(9, 9))
	kills := size(3, 12)
	for i := range kills {
		// Each kill waits for progress, so it lands on a run with work in flight.
		progressed(t, rdb, float64(i+1)/float64(kills+2), 2*time.Minute, a, b)
		ws.killOne(rng.IntN(3))
		ws.start()
	}
	finished(t, rdb, 4*time.Minute, a, b)
	auditAll(t, rdb, a, b)
	secretsAbsent(t, rdb, []string{"REDIS_URL=redis://" + srv.Addr + "/0"}, tt, ws.logs(), a, b)
	t.Logf("%d workers started, %d killed", ws.started, ws.killed)
}

// TestRedisCrashAndShutdown: two file tenants and the implicit tenant of the SUPEROFFICE_*
// settings, one run each, in one fleet; Redis is killed with kill -9 once and shut down
// cleanly once in the middle of the runs, each time restarted on the same data (AOF); the
// workers reconnect by themselves (their lanes too) and the three runs end exact.
func TestRedisCrashAndShutdown(t *testing.T) {
	srv := e2etest.StartRedis(t, redistest.Options{AppendOnly: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer rdb.Close()
	tt := e2etest.StartTwoTenants(t)
	simI := e2etest.StartSim(t)
	n := size(8000, 40000) / 3
	const run = "chaos-redis"
	a := tenantJob(tt.A, run, erpsync.ActorPerson, e2etest.Keys("RA", n))
	b := tenantJob(tt.B, run, erpsync.ActorPerson, e2etest.Keys("RB", n))
	implicit := &job{sim: simI, run: run, actor: erpsync.ActorPerson, keys: e2etest.Keys("RI", n)}
	for _, j := range []*job{a, b, implicit} {
		j.sim.SetLatency(200 * time.Millisecond)
		j.submit(t, rdb, 50)
	}

	ws := newTenantWorkers(t, "redis://"+srv.Addr+"/0", tt, map[string]string{ // and the implicit tenant
		"SUPEROFFICE_URL": simI.URL, "SUPEROFFICE_USERNAME": e2etest.User, "SUPEROFFICE_PASSWORD": e2etest.Password})
	ws.start()
	ws.start()
	progressed(t, rdb, 0.2, 2*time.Minute, a, b, implicit)
	if err := srv.Restart(); err != nil { // SIGKILL, then start on the same AOF
		t.Fatal(err)
	}
	progressed(t, rdb, 0.5, 2*time.Minute, a, b, implicit)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	rdb.Shutdown(ctx) // a clean shutdown: the reply is the connection closing
	cancel()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	finished(t, rdb, 4*time.Minute, a, b, implicit)
	auditAll(t, rdb, a, b, implicit)
}

// TestTicketExpiryAndPoisonKeys: two tenants, one logging in with a password over SOAP, the
// other with a system user over REST; each simulator expires every ticket each few hundred
// calls while 0.1% of each tenant's keys, spread through the input, are poison (the
// connector refuses any batch holding one). Exactly the poison keys are dead-lettered, each
// alone with the connector's ErrorCode as its reason, in its own tenant's run; every other
// key is resynced once in the ledger. No secret of either tenant is in the workers' logs,
// in Redis or in the output of the enqueue command.
func TestTicketExpiryAndPoisonKeys(t *testing.T) {
	srv, rdb := startRedis(t)
	tt := e2etest.StartTwoTenants(t)
	n := size(20000, 200000) / 2
	rng := rand.New(rand.NewPCG(1, 2))
	const run = "chaos-tickets-poison"
	const every = 200
	a := tenantJob(tt.A, run, erpsync.ActorSale, e2etest.Keys("TA", n))
	b := tenantJob(tt.B, run, erpsync.ActorSale, e2etest.Keys("TB", n))
	for _, j := range []*job{a, b} {
		j.dead = map[string]string{}
		for len(j.dead) < n/1000 {
			j.dead[j.keys[rng.IntN(n)]] = netserversim.DefaultErrorCode
		}
		j.sim.SetPoison(slices.Collect(maps.Keys(j.dead))...)
		sim := j.sim
		sim.SetLatencyFunc(func(ci netserversim.CallInfo) time.Duration {
			if ci.Seq%every == 0 {
				sim.ExpireTickets()
			}
			return 0
		})
		j.submit(t, rdb, 50)
	}

	ws := newTenantWorkers(t, "redis://"+srv.Addr+"/0", tt, nil)
	ws.start()
	ws.start()
	finished(t, rdb, 4*time.Minute, a, b)
	auditAll(t, rdb, a, b)
	for _, j := range []*job{a, b} {
		counts := j.sim.Counts()
		logins := counts.Logins.PasswordOK + counts.Logins.SystemUserOK
		if logins < counts.TotalCalls()/every {
			t.Errorf("%v: %d logins for %d calls: the tickets did not expire as planned", j, logins, counts.TotalCalls())
		}
		t.Logf("%v: %d poison keys, %d logins", j, len(j.dead), logins)
	}
	secretsAbsent(t, rdb, []string{"REDIS_URL=redis://" + srv.Addr + "/0"}, tt, ws.logs(), a, b)
}

// TestSentinelFailover: two tenants reach Redis through Sentinel; the master is killed with
// kill -9 in the middle of their runs and Sentinel promotes its replica. A failover can drop
// the writes the replica had not received yet (asynq's tasks, the tenants' lanes), so once
// asynq and the lanes hold nothing of a run any more the operator's repair step runs
// (`enqueue status RUN --tenant ID --repair`: Ledger.Repair, which counts a batch still in
// its tenant's lane as queued), and the batches it reports lost are restored by submitting
// the run's source again. Both runs then end exact.
func TestSentinelFailover(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("the chaos suite needs redis-server on PATH")
	}
	const password = "failover-pw-51d"
	s := redistest.StartSentinelWithReplica(t, password)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: []string{s.Addr},
		Password: password, SentinelPassword: password})
	defer rdb.Close()
	tt := e2etest.StartTwoTenants(t)
	n := size(12000, 60000) / 2
	const run = "chaos-failover"
	a := tenantJob(tt.A, run, erpsync.ActorProject, e2etest.Keys("FA", n))
	b := tenantJob(tt.B, run, erpsync.ActorProject, e2etest.Keys("FB", n))
	for _, j := range []*job{a, b} {
		j.sim.SetLatency(300 * time.Millisecond)
		j.submit(t, rdb, 50)
	}
	if n, err := rdb.Wait(context.Background(), 1, 10*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT: %d replicas, %v", n, err)
	}

	ws := newTenantWorkers(t, s.URL(0), tt, nil)
	ws.start()
	ws.start()
	progressed(t, rdb, 0.3, 2*time.Minute, a, b)
	if err := s.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFailover(time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, j := range []*job{a, b} {
		// Repair once nothing of the run is left in asynq or the lane but what the failover lost.
		var res ledger.RepairResult
		testwait.For(t, "asynq and the lanes done with "+j.String(), 4*time.Minute, func() (bool, error) {
			var err error
			res, err = repair(t, s.URL(0), j)
			return err == nil && res.Queued == 0, fmt.Errorf("%+v, %v", res, err)
		})
		t.Logf("repair of %v after the failover: %d unfinished batches, %d halves enqueued again, %d lost", j, res.Unfinished, len(res.Requeued), len(res.Lost))
		if len(res.Lost) > 0 {
			j.submit(t, rdb, 50) // the operator submits the source again
		}
	}
	finished(t, rdb, 4*time.Minute, a, b)
	auditAll(t, rdb, a, b)
}

// repair is the operator's repair step for j's run: `enqueue status RUN --tenant ID
// --repair --json` on the Redis at redisURL. An error is a failed command (Redis in the
// middle of a failover, say); lost batches (exit 1) are not an error.
func repair(t *testing.T, redisURL string, j *job) (ledger.RepairResult, error) {
	cmd := exec.Command(e2etest.Binary(t, "cmd/enqueue"), "status", "--tenant", j.tenant, "--repair", "--json", j.run)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "REDIS_URL=" + redisURL}
	out, err := cmd.Output()
	if cmd.ProcessState == nil {
		return ledger.RepairResult{}, err
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 && code != 1 {
		return ledger.RepairResult{}, fmt.Errorf("enqueue status --repair: exit %d, %v: %s", code, err, out)
	}
	var st struct {
		Repair *ledger.RepairResult `json:"repair"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Repair == nil {
		return ledger.RepairResult{}, fmt.Errorf("enqueue status --repair: %v: %s", err, out)
	}
	return *st.Repair, nil
}

// TestOutageAndMaintenance: two tenants. Tenant A's SuperOffice goes down (503 maintenance
// pages) for longer than the batches' whole retry budget (one retry here). While it is
// down, tenant B submits a run, and it runs to its end: A's open breaker and held batches
// take none of B's calls or slots. A comes back, then answers a maintenance window of 503s
// with Retry-After. A's breaker stops every worker's calls to A while it is open and
// probes; held batches use no retries, so both runs end with zero dead letters and every
// key resynced.
func TestOutageAndMaintenance(t *testing.T) {
	srv, rdb := startRedis(t)
	tt := e2etest.StartTwoTenants(t)
	for _, tn := range tt.Tenants() {
		tn.Extra = "breaker_failures: 3\nbreaker_probe: 1s\nbreaker_probe_max: 2s"
		tn.Sim.SetLatency(50 * time.Millisecond)
	}
	tt.WriteFile(t, tt.A, tt.B)
	n := size(6000, 30000) / 2
	const run = "chaos-outage"
	a := tenantJob(tt.A, run, erpsync.ActorSupplier, e2etest.Keys("OA", n))
	b := tenantJob(tt.B, run, erpsync.ActorSupplier, e2etest.Keys("OB", n))
	a.submit(t, rdb, 50, asynq.MaxRetry(1))

	ws := newTenantWorkers(t, "redis://"+srv.Addr+"/0", tt, nil)
	ws.start()
	ws.start()
	progressed(t, rdb, 0.2, 2*time.Minute, a)
	simA := tt.A.Sim
	simA.SetOutage(true)
	unavailable := func() int { return simA.Counts().Calls[netserversim.OutcomeUnavailable] }
	breakers := func() map[string]string {
		bs, err := flow.Breakers(context.Background(), rdb)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, br := range bs { // a tenant's breakers: open if any is not closed
			if br.State != flow.StateClosed || out[br.Tenant] == "" {
				out[br.Tenant] = br.State
			}
		}
		return out
	}
	testwait.For(t, "A's breaker open", time.Minute, func() (bool, error) {
		bs := breakers()
		st, ok := bs[flow.TenantName(tt.A.ID)]
		return ok && st != flow.StateClosed, fmt.Errorf("%v", bs)
	})
	// B's whole run happens while A is down.
	b.submit(t, rdb, 50, asynq.MaxRetry(1))
	from, bStart := unavailable(), time.Now()
	finished(t, rdb, 2*time.Minute, b)
	t.Logf("B's run of %d keys took %s, all of it while A was down", n, time.Since(bStart).Round(time.Millisecond))
	if st, err := a.status(rdb); err != nil || st.PendingKeys == 0 || st.DeadKeys != 0 {
		t.Errorf("A while B ran: %+v, %v; want keys pending and none dead", st, err)
	}
	if st := breakers()[flow.TenantName(tt.B.ID)]; st != flow.StateClosed && st != "" {
		t.Errorf("B's breaker %s during A's outage", st)
	}
	// The outage outlasts the retry budget many times over: the probes fail again and again.
	testwait.For(t, "failed probes", time.Minute, func() (bool, error) {
		return unavailable() >= from+4, fmt.Errorf("%d failed calls since B's run started", unavailable()-from)
	})
	simA.SetOutage(false)
	progressed(t, rdb, 0.5, 2*time.Minute, a)
	simA.SetMaintenanceRetryAfter(2 * time.Second)
	simA.Fail503(20)
	finished(t, rdb, 4*time.Minute, a, b)
	auditAll(t, rdb, a, b)
	secretsAbsent(t, rdb, []string{"REDIS_URL=redis://" + srv.Addr + "/0"}, tt, ws.logs(), a, b)
	t.Logf("%d calls to A answered 503 during the outage and the maintenance window", unavailable())
}

// startRedis starts a private Redis that keeps its data across a restart (append-only
// file) and returns it with a client, closed when the test ends.
func startRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := e2etest.StartRedis(t, redistest.Options{AppendOnly: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	return srv, rdb
}
