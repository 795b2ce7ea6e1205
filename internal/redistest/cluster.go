package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots in Redis Cluster.
const clusterSlots = 16384

// Cluster is a private Redis Cluster of real redis-server processes on loopback, masters
// only (no replicas), with the slots spread evenly. There is no miniredis fallback: a test
// that needs a cluster is skipped when no redis-server binary exists (or fails, with
// ERPRESYNC_REQUIRE_REDIS_SERVER=1).
//
//	c := redistest.StartCluster(t, 3)
//	srv := asynq.NewServer(c.Opt(), asynq.Config{...})
type Cluster struct {
	nodes []*clusterNode
	// Startup is how long StartCluster took, processes to cluster_state:ok everywhere.
	Startup time.Duration
}

type clusterNode struct {
	addr    string
	port    int
	busPort int
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	id      string        // cluster node ID
}

// StartCluster starts a cluster of masters redis-server processes (cluster-enabled, no
// persistence, config files in a temporary directory), assigns the 16384 slots evenly,
// joins the nodes with CLUSTER MEET and waits until every node reports cluster_state:ok
// and knows every slot and every node. The processes are killed when the test ends.
// Redis holds a fresh master in cluster_state:fail for about 2 s after its start
// (CLUSTER_WRITABLE_DELAY), so this takes a little over 2 s.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 1 {
		t.Fatalf("redistest: cluster of %d masters", masters)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, fmt.Sprintf("Redis Cluster test needs a redis-server binary on PATH: %v", err))
	}
	if v := version(bin); majorVersion(v) < 7 {
		unavailable(t, fmt.Sprintf("Redis Cluster test needs redis-server >= 7.0 (cluster-port, CLUSTER ADDSLOTSRANGE); have %q", v))
	}
	start := time.Now()
	dir := t.TempDir()
	c := &Cluster{nodes: make([]*clusterNode, masters)}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(c.stop)

	var wg sync.WaitGroup
	errs := make([]error, masters)
	for i := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = startClusterNode(bin, dir, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("redistest: start cluster: %v", err)
	}
	if err := c.form(10 * time.Second); err != nil {
		t.Fatalf("redistest: form cluster: %v%s", err, c.logTails())
	}
	if err := c.waitReady(15 * time.Second); err != nil {
		t.Fatalf("redistest: cluster not ready: %v%s", err, c.logTails())
	}
	c.Startup = time.Since(start)
	t.Logf("redistest: Redis Cluster of %d masters (%s) ready in %s at %s", masters, version(bin), c.Startup.Round(time.Millisecond), strings.Join(c.Addrs(), ","))
	return c
}

// unavailable skips the test, or fails it when RequireEnv is set.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("redistest: %s (and %s=1)", reason, RequireEnv)
	}
	t.Skip("redistest: " + reason)
}

var versionRE = regexp.MustCompile(`v=(\d+)\.`)

func majorVersion(v string) int {
	m := versionRE.FindStringSubmatch(v)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// startClusterNode starts one node and waits until it answers PING. A port taken between
// choosing and binding makes the process exit; then it tries other ports.
func startClusterNode(bin, dir string, i int) (*clusterNode, error) {
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		if bus == port {
			continue
		}
		n := &clusterNode{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, busPort: bus, dir: dir, exited: make(chan struct{})}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no", "--daemonize", "no",
			"--dir", dir, "--logfile", n.logFile(),
			"--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d-%d.conf", i, port)),
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-announce-ip", "127.0.0.1",
			"--cluster-node-timeout", "5000",
		}
		n.cmd = exec.Command(bin, args...)
		if err := n.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		go func() { n.cmd.Wait(); close(n.exited) }()
		if last = waitOwn(n.addr, "", n.cmd.Process.Pid, n.exited, 5*time.Second); last == nil {
			return n, nil
		}
		n.kill()
		last = fmt.Errorf("node %d at %s: %w%s", i, n.addr, last, n.logTail())
	}
	return nil, last
}

func (n *clusterNode) logFile() string {
	return filepath.Join(n.dir, fmt.Sprintf("redis-%d.log", n.port))
}

func (n *clusterNode) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
}

func (n *clusterNode) kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Kill()
		<-n.exited
	}
}

func (n *clusterNode) logTail() string {
	b, err := os.ReadFile(n.logFile())
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return fmt.Sprintf("\n--- %s log (tail) ---\n%s", n.addr, strings.Join(lines, "\n"))
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		if n != nil {
			b.WriteString(n.logTail())
		}
	}
	return b.String()
}

// form assigns each node its share of the slots, has every node MEET every other one and,
// once every node knows every other, tells each node who owns the other nodes' slots
// (CLUSTER SETSLOT ... NODE). Left to gossip, a node learns the others (and their slots)
// only on the next ping, which can take a second or more.
func (c *Cluster) form(timeout time.Duration) error {
	ctx := context.Background()
	per := clusterSlots / len(c.nodes)
	ranges := make([][2]int, len(c.nodes))
	for i, n := range c.nodes {
		lo := i * per
		hi := lo + per - 1
		if i == len(c.nodes)-1 {
			hi = clusterSlots - 1
		}
		ranges[i] = [2]int{lo, hi}
		rc := n.client()
		err := rc.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err()
		if err != nil {
			err = fmt.Errorf("slots %d-%d: %w", lo, hi, err)
		}
		if err == nil {
			if n.id, err = rc.Do(ctx, "CLUSTER", "MYID").Text(); err != nil {
				err = fmt.Errorf("CLUSTER MYID: %w", err)
			}
		}
		for _, m := range c.nodes[i+1:] {
			if err == nil {
				if err = rc.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", m.port, m.busPort).Err(); err != nil {
					err = fmt.Errorf("CLUSTER MEET %s: %w", m.addr, err)
				}
			}
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.addr, err)
		}
	}
	if err := c.waitHandshakes(timeout); err != nil {
		return err
	}
	for _, n := range c.nodes {
		rc := n.client()
		pipe := rc.Pipeline()
		for j, m := range c.nodes {
			if m == n {
				continue
			}
			for slot := ranges[j][0]; slot <= ranges[j][1]; slot++ {
				pipe.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", m.id)
			}
		}
		_, err := pipe.Exec(ctx)
		rc.Close()
		if err != nil {
			return fmt.Errorf("node %s: CLUSTER SETSLOT: %w", n.addr, err)
		}
	}
	return nil
}

// waitHandshakes polls until every node lists every other node by its ID, handshake done.
func (c *Cluster) waitHandshakes(timeout time.Duration) error {
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for i := 0; i < len(c.nodes); {
		n := c.nodes[i]
		rc := n.client()
		out, err := rc.ClusterNodes(ctx).Result()
		rc.Close()
		missing := ""
		if err != nil {
			missing = err.Error()
		} else {
			known := map[string]bool{}
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) > 2 && !strings.Contains(f[2], "handshake") && !strings.Contains(f[2], "noaddr") {
					known[f[0]] = true
				}
			}
			for _, m := range c.nodes {
				if !known[m.id] {
					missing = "does not know " + m.addr + " yet"
					break
				}
			}
		}
		if missing == "" {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s after %s: %s", n.addr, timeout, missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// waitReady polls every node until each says cluster_state:ok and sees all slots assigned
// and all nodes.
func (c *Cluster) waitReady(timeout time.Duration) error {
	ctx := context.Background()
	clients := make([]*redis.Client, len(c.nodes))
	for i, n := range c.nodes {
		clients[i] = n.client()
		defer clients[i].Close()
	}
	want := [][2]string{
		{"cluster_known_nodes", strconv.Itoa(len(c.nodes))},
		{"cluster_slots_assigned", strconv.Itoa(clusterSlots)},
		{"cluster_slots_ok", strconv.Itoa(clusterSlots)},
		{"cluster_size", strconv.Itoa(len(c.nodes))},
		{"cluster_state", "ok"},
	}
	deadline := time.Now().Add(timeout)
	for {
		missing := ""
		for i, rc := range clients {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				missing = fmt.Sprintf("%s: CLUSTER INFO: %v", c.nodes[i].addr, err)
				break
			}
			got := parseInfo(info)
			for _, w := range want {
				if got[w[0]] != w[1] {
					missing = fmt.Sprintf("%s: %s=%s, want %s", c.nodes[i].addr, w[0], got[w[0]], w[1])
					break
				}
			}
			if missing != "" {
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", timeout, missing)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func parseInfo(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

func (c *Cluster) stop() {
	for _, n := range c.nodes {
		if n != nil {
			n.kill()
		}
	}
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// Opt is the cluster as asynq connection options, as REDIS_CLUSTER_ADDRS gives them.
func (c *Cluster) Opt() asynq.RedisClusterClientOpt {
	return asynq.RedisClusterClientOpt{Addrs: c.Addrs()}
}

// Client opens a go-redis cluster client; the caller closes it.
func (c *Cluster) Client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
}

// NodeClient opens a plain client on node i (no redirects followed); the caller closes it.
func (c *Cluster) NodeClient(i int) *redis.Client { return c.nodes[i].client() }
