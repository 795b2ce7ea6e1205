// Package e2etest is the harness of the tests that run erpresync as its users do: the
// project's own binaries built once per test process, the SuperOffice simulator, worker
// processes with an environment of the test's choosing, runs submitted through intake (as
// `enqueue` does), and waits for a run to finish (with internal/testwait). Everything it starts is stopped
// by the test's cleanup; Redis comes from internal/redistest.
//
// Use it from TestMain, so that the built binaries are removed when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(e2etest.Main(m)) }
//
// and in a test:
//
//	sim := e2etest.StartSim(t)
//	w := e2etest.StartWorker(t, e2etest.WorkerEnv(db.URL(), sim))
//	e2etest.Submit(t, rdb, "run-1", erpsync.ActorCustomer, e2etest.Keys("K", 300), 50)
//	e2etest.WaitRunFinished(t, rdb, "run-1", time.Minute)
//
// The package is imported by tests only.
package e2etest

import "fmt"

// The simulator's one on-site user, and the ERP connection runs are submitted for.
const (
	User          = "ERPSYNC"
	Password      = "correct horse"
	ErpConnection = 3
)

// Keys returns n distinct keys: prefix and a six-digit number from 000000.
func Keys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%06d", prefix, i)
	}
	return keys
}
