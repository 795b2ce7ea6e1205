// Package chaos is erpresync's chaos suite: scenarios over real processes — a redis-server
// with AOF, several worker processes built from cmd/worker, and the SuperOffice simulator —
// that kill, restart and break things in the middle of a run, then audit the run exactly:
// every key resynced or dead-lettered for a reason of its own, the ledger's totals and
// records equal to what the simulator delivered, and the keys SuperOffice saw more than
// once counted and reported.
//
// The scenarios that keep the CPU busy run one after another; the kill -9 scenario, which
// spends most of its time waiting for asynq's recoverer, and the tenant's move and
// maintenance window, which waits for the state's rechecks, run alongside them. The package
// holds tests only. `go test ./chaos` runs the short form (as CI does);
// `make chaos` sets ERPRESYNC_CHAOS=full for longer runs with more kills.
package chaos
