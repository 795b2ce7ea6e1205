// Package redistest gives tests a private Redis: a real redis-server started on a free
// loopback port, one per test package, with a fresh logical database per test. Where no
// redis-server binary exists it falls back to miniredis and says so in the test log; with
// ERPRESYNC_REQUIRE_REDIS_SERVER=1 (set by .ci/run) a missing binary fails the test instead.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// and in each test:
//
//	db := redistest.New(t) // a private, flushed database
//	client := asynq.NewClient(db.Opt())
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RequireEnv names the environment variable that forbids the miniredis fallback.
const RequireEnv = "ERPRESYNC_REQUIRE_REDIS_SERVER"

// databases is how many logical databases each private server has; tests get one each.
const databases = 4096

// Server is a private Redis: a redis-server child process, or a miniredis fallback.
type Server struct {
	Addr   string // host:port on loopback
	Real   bool   // true for a redis-server process
	Dir    string // working directory of a real server (AOF lives here)
	mr     *miniredis.Miniredis
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	args   []string
	pass   string // requirepass
	ownDir bool   // Dir was made by Start and goes with Stop
	mu     sync.Mutex
	nextDB int
}

var (
	pkgServer *Server
	pkgErr    error
)

// Main starts the package's server, runs the tests and stops the server. It returns the
// exit code for os.Exit.
func Main(m *testing.M) int {
	pkgServer, pkgErr = Start(Options{})
	if pkgErr != nil && os.Getenv(RequireEnv) == "1" {
		fmt.Fprintf(os.Stderr, "redistest: %v\n", pkgErr)
		return 1
	}
	code := m.Run()
	if pkgServer != nil {
		pkgServer.Stop()
	}
	return code
}

// Options tune a server started with Start.
type Options struct {
	// AppendOnly turns on AOF persistence (appendfsync always), so a restart keeps data.
	AppendOnly bool
	// Dir is the working directory; empty makes a temporary one, removed by Stop.
	Dir string
	// Port is the port to listen on; 0 picks a free one.
	Port int
	// Password, when set, is required of clients (requirepass); DB's URL, Opt and Client
	// carry it.
	Password string
	// ReplicaOf, when set to a master's host:port, starts the server as that master's
	// replica (authenticating with Password).
	ReplicaOf string
}

// Start runs a private server. Without a redis-server binary it returns a miniredis
// fallback unless RequireEnv is set.
func Start(o Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			return nil, fmt.Errorf("no redis-server binary on PATH and %s=1", RequireEnv)
		}
		mr, err := miniredis.Run()
		if err != nil {
			return nil, err
		}
		if o.Password != "" {
			mr.RequireAuth(o.Password)
		}
		fmt.Fprintf(os.Stderr, "redistest: no redis-server binary; FALLING BACK to miniredis at %s\n", mr.Addr())
		return &Server{Addr: mr.Addr(), mr: mr, pass: o.Password, nextDB: 1}, nil
	}
	dir, ownDir := o.Dir, o.Dir == ""
	if ownDir {
		if dir, err = os.MkdirTemp("", "redistest-"); err != nil {
			return nil, err
		}
	}
	// A free port can be taken by another process (another test package's server) between
	// choosing and binding; then redis-server exits and another port is tried.
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		port := o.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				break
			}
		}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir,
			"--databases", strconv.Itoa(databases), "--protected-mode", "no", "--daemonize", "no",
			"--logfile", filepath.Join(dir, "redis.log"),
		}
		if o.AppendOnly {
			args = append(args, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			args = append(args, "--appendonly", "no")
		}
		if o.Password != "" {
			args = append(args, "--requirepass", o.Password)
		}
		if o.ReplicaOf != "" {
			host, port, _ := net.SplitHostPort(o.ReplicaOf)
			args = append(args, "--replicaof", host, port)
			if o.Password != "" {
				args = append(args, "--masterauth", o.Password)
			}
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Real: true, Dir: dir, ownDir: ownDir, args: append([]string{bin}, args...), pass: o.Password, nextDB: 1}
		if last = s.start(); last == nil {
			fmt.Fprintf(os.Stderr, "redistest: using real redis-server (%s) at %s\n", version(bin), s.Addr)
			return s, nil
		}
		if o.Port != 0 {
			break // the port asked for is not to be had
		}
	}
	if ownDir {
		os.RemoveAll(dir)
	}
	if last == nil {
		last = err
	}
	return nil, last
}

func (s *Server) start() error {
	cmd := exec.Command(s.args[0], s.args[1:]...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	if err := waitOwn(s.Addr, s.pass, cmd.Process.Pid, exited, 10*time.Second); err != nil {
		s.kill()
		return fmt.Errorf("redis-server at %s: %w", s.Addr, err)
	}
	return nil
}

// waitOwn waits until the redis-server process pid answers on addr. An answer from another
// process (which holds the port, so pid's bind failed) is an error, not a success.
func waitOwn(addr, password string, pid int, exited <-chan struct{}, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errors.New("redis-server exited (port taken?)")
		default:
		}
		info, err := c.Info(context.Background(), "server").Result()
		if err == nil {
			got := parseInfo(info)["process_id"]
			if got == strconv.Itoa(pid) {
				return nil
			}
			return fmt.Errorf("another redis-server (process %s) holds the port", got)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %s: %w", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// Stop ends the server (SIGKILL for a real one) and removes the temporary directory Start
// made for it.
func (s *Server) Stop() {
	if s.mr != nil {
		s.mr.Close()
		return
	}
	s.kill()
	if s.ownDir {
		os.RemoveAll(s.Dir)
	}
}

// Kill ends a real server with SIGKILL, as a crash would, and keeps its directory (Stop
// still removes it). It is not supported on the miniredis fallback.
func (s *Server) Kill() error {
	if !s.Real {
		return errors.New("redistest: Kill needs a real redis-server")
	}
	s.kill()
	return nil
}

// Restart kills a real server and starts it again on the same port and directory, as a
// crash and restart would. It is not supported on the miniredis fallback.
func (s *Server) Restart() error {
	if !s.Real {
		return errors.New("redistest: Restart needs a real redis-server")
	}
	s.kill()
	return s.start()
}

// NewServer is Start for a test: a failure to start fails the test, and the server stops
// when the test ends, after the cleanups of databases opened on it later (they need it).
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// DB is one logical database of a server, private to a test.
type DB struct {
	Server *Server
	Index  int
}

// New returns a fresh database on the package's server (see Main), flushed when the test ends.
func New(t testing.TB) *DB {
	t.Helper()
	if pkgServer == nil {
		if pkgErr != nil {
			t.Fatalf("redistest: %v", pkgErr)
		}
		t.Fatal("redistest: no server; call redistest.Main from TestMain")
	}
	return pkgServer.NewDB(t)
}

// NewDB returns a fresh database on s, flushed when the test ends.
func (s *Server) NewDB(t testing.TB) *DB {
	t.Helper()
	s.mu.Lock()
	idx := s.nextDB
	s.nextDB++
	s.mu.Unlock()
	if s.Real && idx >= databases {
		t.Fatalf("redistest: out of databases (%d)", databases)
	}
	if !s.Real {
		t.Logf("redistest: no redis-server binary; this test runs on miniredis")
	}
	db := &DB{Server: s, Index: idx}
	c := db.Client()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("redistest: flush db %d: %v", idx, err)
	}
	c.Close()
	t.Cleanup(func() {
		c := db.Client()
		defer c.Close()
		c.FlushDB(context.Background())
	})
	return db
}

// URL is the database's redis:// URL, with the server's password if it has one.
func (d *DB) URL() string {
	u := url.URL{Scheme: "redis", Host: d.Server.Addr, Path: "/" + strconv.Itoa(d.Index)}
	if d.Server.pass != "" {
		u.User = url.UserPassword("", d.Server.pass)
	}
	return u.String()
}

// Opt is the database as asynq connection options.
func (d *DB) Opt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: d.Server.Addr, Password: d.Server.pass, DB: d.Index}
}

// Client opens a go-redis client on the database; the caller closes it.
func (d *DB) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: d.Server.Addr, Password: d.Server.pass, DB: d.Index})
}

// TestClient opens a go-redis client on the database, closed when the test ends.
func (d *DB) TestClient(t testing.TB) *redis.Client {
	c := d.Client()
	t.Cleanup(func() { c.Close() })
	return c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func version(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown version"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
