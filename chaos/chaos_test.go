package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
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

// TestKillWorkers: kill -9 of a random worker every few seconds while calls are in flight
// (the simulator answers slowly, so every kill lands on work), a replacement started each
// time. asynq hands a killed worker's tasks to another after their lease and its recoverer's
// next look (up to about 90 s); nothing is lost and the ledger counts every key once.
func TestKillWorkers(t *testing.T) {
	t.Parallel()
	srv, rdb := startRedis(t)
	sim := e2etest.StartSim(t)
	sim.SetLatency(300 * time.Millisecond)
	keys := e2etest.Keys("K", size(12000, 60000))
	const run = "chaos-kill9"
	e2etest.Submit(t, rdb, run, erpsync.ActorCustomer, keys, 50)

	ws := newWorkers(t, "redis://"+srv.Addr+"/0", sim, nil)
	for range 3 {
		ws.start()
	}
	rng := rand.New(rand.NewPCG(9, 9))
	kills := size(3, 12)
	for i := range kills {
		// Each kill waits for progress, so it lands on a run with work in flight.
		progressed(t, rdb, run, float64(i+1)/float64(kills+2), 2*time.Minute)
		ws.killOne(rng.IntN(3))
		ws.start()
	}
	e2etest.WaitRunFinished(t, rdb, run, 4*time.Minute)
	audit(t, rdb, sim, run, erpsync.ActorCustomer, keys, nil)
	t.Logf("%d workers started, %d killed", ws.started, ws.killed)
}

// TestRedisCrashAndShutdown: Redis is killed with kill -9 once and shut down cleanly once in
// the middle of a run, each time restarted on the same data (AOF); the workers reconnect
// by themselves and the run ends exact.
func TestRedisCrashAndShutdown(t *testing.T) {
	srv := e2etest.StartRedis(t, redistest.Options{AppendOnly: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer rdb.Close()
	sim := e2etest.StartSim(t)
	sim.SetLatency(200 * time.Millisecond)
	keys := e2etest.Keys("R", size(8000, 40000))
	const run = "chaos-redis"
	e2etest.Submit(t, rdb, run, erpsync.ActorPerson, keys, 50)

	ws := newWorkers(t, "redis://"+srv.Addr+"/0", sim, nil)
	ws.start()
	ws.start()
	progressed(t, rdb, run, 0.2, 2*time.Minute)
	if err := srv.Restart(); err != nil { // SIGKILL, then start on the same AOF
		t.Fatal(err)
	}
	progressed(t, rdb, run, 0.5, 2*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	rdb.Shutdown(ctx) // a clean shutdown: the reply is the connection closing
	cancel()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitRunFinished(t, rdb, run, 4*time.Minute)
	audit(t, rdb, sim, run, erpsync.ActorPerson, keys, nil)
}

// TestTicketExpiryAndPoisonKeys: the simulator expires every ticket each few hundred calls
// while 0.1% of the keys, spread through the input, are poison (the connector refuses any
// batch holding one). Exactly the poison keys are dead-lettered, each alone with the
// connector's ErrorCode as its reason; every other key is resynced once in the ledger.
func TestTicketExpiryAndPoisonKeys(t *testing.T) {
	srv, rdb := startRedis(t)
	sim := e2etest.StartSim(t)
	keys := e2etest.Keys("T", size(20000, 200000))
	rng := rand.New(rand.NewPCG(1, 2))
	poison := map[string]string{}
	for len(poison) < len(keys)/1000 {
		poison[keys[rng.IntN(len(keys))]] = netserversim.DefaultErrorCode
	}
	var poisonKeys []string
	for k := range poison {
		poisonKeys = append(poisonKeys, k)
	}
	sim.SetPoison(poisonKeys...)
	const every = 200
	sim.SetLatencyFunc(func(ci netserversim.CallInfo) time.Duration {
		if ci.Seq%every == 0 {
			sim.ExpireTickets()
		}
		return 0
	})
	const run = "chaos-tickets-poison"
	e2etest.Submit(t, rdb, run, erpsync.ActorSale, keys, 50)

	ws := newWorkers(t, "redis://"+srv.Addr+"/0", sim, nil)
	ws.start()
	ws.start()
	e2etest.WaitRunFinished(t, rdb, run, 4*time.Minute)
	audit(t, rdb, sim, run, erpsync.ActorSale, keys, poison)
	counts := sim.Counts()
	if logins := counts.Logins.PasswordOK; logins < counts.TotalCalls()/every {
		t.Errorf("%d logins for %d calls: the tickets did not expire as planned", logins, counts.TotalCalls())
	}
	t.Logf("%d poison keys, %d logins", len(poison), counts.Logins.PasswordOK)
}

// TestSentinelFailover: the workers reach Redis through Sentinel; the master is killed with
// kill -9 in the middle of a run and Sentinel promotes its replica. A failover can drop the
// writes the replica had not received yet, so once asynq holds nothing of the run any more
// the operator's repair step runs (`enqueue status RUN --repair`: Ledger.Repair), and the
// batches it reports lost are restored by submitting the run's source again. The run then
// ends exact.
func TestSentinelFailover(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("the chaos suite needs redis-server on PATH")
	}
	const password = "failover-pw-51d"
	s := redistest.StartSentinelWithReplica(t, password)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: []string{s.Addr},
		Password: password, SentinelPassword: password})
	defer rdb.Close()
	sim := e2etest.StartSim(t)
	sim.SetLatency(300 * time.Millisecond)
	keys := e2etest.Keys("F", size(12000, 60000))
	const run = "chaos-failover"
	e2etest.Submit(t, rdb, run, erpsync.ActorProject, keys, 50)
	if n, err := rdb.Wait(context.Background(), 1, 10*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT: %d replicas, %v", n, err)
	}

	ws := newWorkers(t, s.URL(0), sim, nil)
	ws.start()
	ws.start()
	progressed(t, rdb, run, 0.3, 2*time.Minute)
	if err := s.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFailover(time.Minute); err != nil {
		t.Fatal(err)
	}
	// Repair once nothing of the run is left in asynq but what the failover lost.
	lg := ledger.NewLedger(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var res ledger.RepairResult
	testwait.For(t, "asynq done with the run", 4*time.Minute, func() (bool, error) {
		queues, err := insp.Queues()
		if err != nil {
			return false, err
		}
		res, err = lg.Repair(context.Background(), insp, run, queues...)
		if err != nil {
			return false, err
		}
		return res.Queued == 0, fmt.Errorf("%+v", res)
	})
	t.Logf("repair after the failover: %d unfinished batches, %d halves enqueued again, %d lost", res.Unfinished, len(res.Requeued), len(res.Lost))
	if len(res.Lost) > 0 {
		e2etest.Submit(t, rdb, run, erpsync.ActorProject, keys, 50) // the operator submits the source again
	}
	e2etest.WaitRunFinished(t, rdb, run, 4*time.Minute)
	audit(t, rdb, sim, run, erpsync.ActorProject, keys, nil)
}

// TestOutageAndMaintenance: SuperOffice goes down (503 maintenance pages) for longer than
// the batches' whole retry budget (one retry here), comes back, then answers a maintenance
// window of 503s with Retry-After. The circuit breaker stops every worker's calls while it
// is open and probes; held batches use no retries, so the run ends with zero dead letters
// and every key resynced.
func TestOutageAndMaintenance(t *testing.T) {
	srv, rdb := startRedis(t)
	sim := e2etest.StartSim(t)
	sim.SetLatency(50 * time.Millisecond)
	keys := e2etest.Keys("O", size(6000, 30000))
	const run = "chaos-outage"
	e2etest.Submit(t, rdb, run, erpsync.ActorSupplier, keys, 50, asynq.MaxRetry(1))

	ws := newWorkers(t, "redis://"+srv.Addr+"/0", sim, map[string]string{
		"SUPEROFFICE_BREAKER_FAILURES":  "3",
		"SUPEROFFICE_BREAKER_PROBE":     "1s",
		"SUPEROFFICE_BREAKER_PROBE_MAX": "2s",
	})
	ws.start()
	ws.start()
	progressed(t, rdb, run, 0.2, 2*time.Minute)
	sim.SetOutage(true)
	unavailable := func() int { return sim.Counts().Calls[netserversim.OutcomeUnavailable] }
	testwait.For(t, "the breaker open", time.Minute, func() (bool, error) {
		bs, err := flow.Breakers(context.Background(), rdb)
		for _, b := range bs {
			if b.State != flow.StateClosed {
				return true, nil
			}
		}
		return false, fmt.Errorf("%+v, %v", bs, err)
	})
	// The outage outlasts the retry budget many times over: the probes fail again and again.
	from := unavailable()
	testwait.For(t, "failed probes", time.Minute, func() (bool, error) {
		return unavailable() >= from+4, fmt.Errorf("%d failed calls since the breaker opened", unavailable()-from)
	})
	sim.SetOutage(false)
	progressed(t, rdb, run, 0.5, 2*time.Minute)
	sim.SetMaintenanceRetryAfter(2 * time.Second)
	sim.Fail503(20)
	e2etest.WaitRunFinished(t, rdb, run, 4*time.Minute)
	audit(t, rdb, sim, run, erpsync.ActorSupplier, keys, nil)
	t.Logf("%d calls answered 503 during the outage and the maintenance window", unavailable())
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
