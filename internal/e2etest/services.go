package e2etest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
)

// StartRedis starts a private redis-server with o for one test and stops it at the test's
// cleanup. A test of processes needs the real server: without redis-server on PATH the
// test is skipped, or fails where redistest.RequireEnv is set.
func StartRedis(t testing.TB, o redistest.Options) *redistest.Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(redistest.RequireEnv) != "" {
			t.Fatalf("%s is set but redis-server is not on PATH", redistest.RequireEnv)
		}
		t.Skip("this test needs redis-server on PATH")
	}
	return redistest.NewServer(t, o)
}

// StartSim starts the SuperOffice simulator in this process, with User as its one on-site
// user, and closes it at the test's cleanup. Its counters are what a test checks the
// workers against.
func StartSim(t testing.TB) *netserversim.Running {
	t.Helper()
	sim, err := netserversim.Start(netserversim.Config{Users: map[string]string{User: Password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// WorkerEnv is the environment of a worker process on the Redis at redisURL against sim:
// JSON logs on stderr, no HTTP server, four handlers, two business retries a second apart.
// Tests change or add entries before StartWorker.
func WorkerEnv(redisURL string, sim *netserversim.Running) map[string]string {
	return map[string]string{
		"REDIS_URL":                   redisURL,
		"SUPEROFFICE_URL":             sim.URL,
		"SUPEROFFICE_USERNAME":        User,
		"SUPEROFFICE_PASSWORD":        Password,
		"WORKER_HTTP_ADDR":            "off",
		"WORKER_CONCURRENCY":          "4",
		"WORKER_BUSINESS_RETRIES":     "2",
		"WORKER_BUSINESS_RETRY_DELAY": "1s",
		"WORKER_SHUTDOWN_TIMEOUT":     "20s",
		"LOG_FORMAT":                  "json",
		"LOG_LEVEL":                   "info",
	}
}
