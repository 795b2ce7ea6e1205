package redistest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/testwait"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestDatabasesArePrivate(t *testing.T) {
	t.Parallel()
	a, b := New(t), New(t)
	if a.Index == b.Index {
		t.Fatalf("two tests got database %d", a.Index)
	}
	ctx := context.Background()
	ca, cb := a.Client(), b.Client()
	defer ca.Close()
	defer cb.Close()
	if err := ca.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := cb.Exists(ctx, "k").Result(); n != 0 {
		t.Fatalf("key written to db %d is visible in db %d", a.Index, b.Index)
	}
}

func TestRealServerWhenRequired(t *testing.T) {
	if os.Getenv(RequireEnv) != "1" {
		t.Skip(RequireEnv + " not set")
	}
	if !pkgServer.Real {
		t.Fatal("tests ran against miniredis although a real redis-server was required")
	}
}

func TestRestartKeepsAOFData(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{AppendOnly: true})
	if !s.Real {
		t.Skip("restart needs a real redis-server")
	}
	db := s.NewDB(t)
	c := db.Client()
	ctx := context.Background()
	if err := c.Set(ctx, "survivor", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c = db.Client()
	defer c.Close()
	if v, err := c.Get(ctx, "survivor").Result(); err != nil || v != "1" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
}

// TestPortTakenByAnotherServer: a server whose port another redis-server holds must not
// pass that one off as its own (two test packages would then share databases).
func TestPortTakenByAnotherServer(t *testing.T) {
	t.Parallel()
	first := NewServer(t, Options{})
	if !first.Real {
		t.Skip("needs a real redis-server")
	}
	_, port, _ := net.SplitHostPort(first.Addr)
	n, _ := strconv.Atoi(port)
	second, err := Start(Options{Port: n})
	if err == nil {
		second.Stop()
		t.Fatalf("Start on %s, held by another redis-server, succeeded", first.Addr)
	}
}

// TestStopRemovesItsDirectory: a server's temporary directory (logs, AOF) goes with it.
func TestStopRemovesItsDirectory(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Real {
		s.Stop()
		t.Skip("needs a real redis-server")
	}
	s.Stop()
	if _, err := os.Stat(s.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s still there after Stop (%v)", s.Dir, err)
	}
}

// TestPassword: a server started with a password refuses clients without it, and the
// database's URL, Opt and Client carry it.
func TestPassword(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Password: "s3cret"})
	db := s.NewDB(t)
	ctx := context.Background()
	c := db.Client()
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	if !strings.Contains(db.URL(), ":s3cret@") || db.Opt().Password != "s3cret" {
		t.Fatalf("URL %s, Opt %+v: no password", db.URL(), db.Opt())
	}
	bare := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer bare.Close()
	if err := bare.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("without the password: err = %v, want NOAUTH", err)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := StartSentinelWithReplica(t, "pw-7c1")
	ctx := context.Background()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: []string{s.Addr}, Password: "pw-7c1", SentinelPassword: "pw-7c1"})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT: %d replicas, %v", n, err)
	}
	if err := s.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFailover(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the key readable after the failover", 10*time.Second, func() (bool, error) {
		v, err := rdb.Get(ctx, "k").Result()
		if err != nil {
			return false, err
		}
		return v == "v", fmt.Errorf("k = %q", v)
	})
}
