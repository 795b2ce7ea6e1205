package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a private Redis Sentinel setup: one master (a Server), optionally a replica,
// watched by one sentinel process under the master name "mymaster". Like StartCluster it
// needs the redis-server binary and has no miniredis fallback.
type Sentinel struct {
	Master *Server
	// Replica is the master's replica (StartSentinelWithReplica), which the sentinel
	// promotes when the master fails; nil for StartSentinel.
	Replica *Server
	// Addr is the sentinel's host:port.
	Addr string
	// MasterName is the name the sentinel knows the master by.
	MasterName string
	password   string
}

// StartSentinel starts a master and a sentinel monitoring it, waits until the sentinel
// reports the master's address, and stops both when the test ends. A non-empty password is
// required by both the master and the sentinel (the usual setup).
func StartSentinel(t testing.TB, password string) *Sentinel {
	t.Helper()
	return startSentinel(t, password, false)
}

// StartSentinelWithReplica is StartSentinel with a replica of the master that the
// sentinel knows about (it waits for that) and promotes about a second after the master
// stops answering: kill the master with Master.Kill and wait with WaitFailover.
func StartSentinelWithReplica(t testing.TB, password string) *Sentinel {
	t.Helper()
	return startSentinel(t, password, true)
}

func startSentinel(t testing.TB, password string, replica bool) *Sentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "no redis-server binary on PATH")
		return nil
	}
	master, err := Start(Options{Password: password})
	if err != nil {
		t.Fatalf("redistest: sentinel master: %v", err)
	}
	t.Cleanup(master.Stop)
	var rep *Server
	if replica {
		if rep, err = Start(Options{Password: password, ReplicaOf: master.Addr}); err != nil {
			t.Fatalf("redistest: sentinel replica: %v", err)
		}
		t.Cleanup(rep.Stop)
		if err := waitReplicaSynced(rep, password, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_, masterPort, _ := net.SplitHostPort(master.Addr)
	downAfter := 5000 // ms; with a replica to promote, a failover should not keep a test waiting
	if replica {
		downAfter = 1000
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor mymaster 127.0.0.1 %s 1\nsentinel down-after-milliseconds mymaster %d\nsentinel failover-timeout mymaster 10000\n",
		port, dir, filepath.Join(dir, "sentinel.log"), masterPort, downAfter)
	if password != "" {
		body += fmt.Sprintf("requirepass %s\nsentinel auth-pass mymaster %s\n", password, password)
	}
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start sentinel: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	s := &Sentinel{Master: master, Replica: rep, Addr: "127.0.0.1:" + strconv.Itoa(port), MasterName: "mymaster", password: password}
	// The sentinel, not another process that took the free port first, must answer.
	if err := waitOwn(s.Addr, password, cmd.Process.Pid, exited, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
		t.Fatalf("redistest: sentinel at %s: %v\n%s", s.Addr, err, log)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, Password: password})
	defer sc.Close()
	deadline := time.Now().Add(10 * time.Second)
	if rep != nil {
		// A sentinel learns of replicas from the master's INFO, which it asks for every 10 s.
		deadline = time.Now().Add(30 * time.Second)
	}
	for {
		addr, err := sc.GetMasterAddrByName(context.Background(), s.MasterName).Result()
		if err == nil && len(addr) == 2 && addr[1] == masterPort && (rep == nil || s.knowsReplica(sc, rep.Addr)) {
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
			t.Fatalf("redistest: sentinel did not report the master (and replica) within 10 s (%v, %v)\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the redis-sentinel:// URL for logical database db of the master, with the
// password when there is one.
func (s *Sentinel) URL(db int) string {
	auth := ""
	if s.password != "" {
		auth = ":" + s.password + "@"
	}
	return fmt.Sprintf("redis-sentinel://%s%s/%d?master=%s", auth, s.Addr, db, s.MasterName)
}

func (s *Sentinel) knowsReplica(sc *redis.SentinelClient, addr string) bool {
	reps, err := sc.Replicas(context.Background(), s.MasterName).Result()
	if err != nil {
		return false
	}
	_, port, _ := net.SplitHostPort(addr)
	for _, r := range reps {
		if r["port"] == port && !strings.Contains(r["flags"], "down") {
			return true
		}
	}
	return false
}

// WaitFailover waits until the sentinel reports the replica as the master (after the
// master was killed) and the replica answers as one.
func (s *Sentinel) WaitFailover(timeout time.Duration) error {
	if s.Replica == nil {
		return errors.New("redistest: no replica to fail over to")
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, Password: s.password})
	defer sc.Close()
	rc := redis.NewClient(&redis.Options{Addr: s.Replica.Addr, Password: s.password})
	defer rc.Close()
	_, port, _ := net.SplitHostPort(s.Replica.Addr)
	deadline := time.Now().Add(timeout)
	for {
		addr, err := sc.GetMasterAddrByName(context.Background(), s.MasterName).Result()
		if err == nil && len(addr) == 2 && addr[1] == port {
			if info, err := rc.Info(context.Background(), "replication").Result(); err == nil && strings.Contains(info, "role:master") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: no failover to %s within %s (sentinel says %v, %v)", s.Replica.Addr, timeout, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReplicaSynced waits until the replica has finished its first sync with the master.
func waitReplicaSynced(rep *Server, password string, timeout time.Duration) error {
	rc := redis.NewClient(&redis.Options{Addr: rep.Addr, Password: password})
	defer rc.Close()
	deadline := time.Now().Add(timeout)
	for {
		info, err := rc.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") && !strings.Contains(info, "master_sync_in_progress:1") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: replica %s not in sync within %s: %v\n%s", rep.Addr, timeout, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
