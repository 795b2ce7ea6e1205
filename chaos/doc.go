// Package chaos is erpresync's chaos suite: scenarios over real processes — a redis-server
// with AOF, several worker processes built from cmd/worker, and the SuperOffice simulator —
// that kill, restart and break things in the middle of a run, then audit the run exactly:
// every key resynced or dead-lettered for a reason of its own, the ledger's totals and
// records equal to what the simulator delivered, and the keys SuperOffice saw more than
// once counted and reported.
//
// The scenarios serve two tenants from a tenants file (e2etest.StartTwoTenants), each on a
// simulator host of its own, with runs of the same name: each tenant's run is audited in its
// own ledger, no key reaches the other tenant's host, and no secret of either tenant is in
// the workers' logs, in Redis or in the enqueue command's output. TestOutageAndMaintenance
// runs one tenant's whole run while the other's SuperOffice is down;
// TestRedisCrashAndShutdown serves the implicit tenant of the SUPEROFFICE_* settings too.
//
// The scenarios that keep the CPU busy run one after another; the kill -9 scenario, which
// spends most of its time waiting for asynq's recoverer, and the tenant's move and
// maintenance window, which waits for the state's rechecks, run alongside them. The package
// holds tests only. `go test ./chaos` runs the short form (as CI does);
// `make chaos` sets ERPRESYNC_CHAOS=full for longer runs with more kills.
package chaos
