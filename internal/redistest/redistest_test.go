package redistest

import (
	"context"
	"os"
	"testing"
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
	s, err := Start(Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
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
