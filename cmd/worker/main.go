// Command worker runs erpresync's workers: it takes batches of ERP external keys from Redis
// (asynq), calls SuperOffice's ErpSync.ForceResyncExternal for each, retries what
// SuperOffice or the network refused for a while, records the Changes, and dead-letters
// what cannot succeed. One HTTP listener serves /metrics, /healthz, /readyz and the
// asynqmon dashboard at /monitoring/.
//
// Sub-commands:
//
//	worker                 run the worker (the default)
//	worker call ...        one synchronous ForceResyncExternal call, printed as JSON
//	worker demo [--once] [--api soap|rest]   the whole pipeline on embedded defaults (miniredis + simulator)
//	worker dashboard       only the dashboard, /metrics and the health endpoints
//	worker healthcheck     asks the local /readyz (the container health check)
//	worker --version       module version and VCS revision of this build
//
// Exit status: 0 success; 1 ran, but the answer is bad (IsOk=false, or a demo whose summary
// does not match); 2 usage, configuration or transport errors.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/erpresync/erpresync/internal/buildinfo"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run dispatches a sub-command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	stderr = &syncWriter{w: stderr}
	if len(args) > 0 && buildinfo.IsFlag(args[0]) {
		fmt.Fprintln(stdout, buildinfo.Version("worker"))
		return 0
	}
	cmd := ""
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "", "serve":
		return cmdServe(ctx, args, stderr, getenv)
	case "call":
		return cmdCall(ctx, args, stdout, stderr, getenv)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr, getenv)
	case "dashboard":
		return cmdDashboard(ctx, args, stderr, getenv)
	case "healthcheck":
		return cmdHealthcheck(ctx, args, stdout, stderr, getenv)
	case "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "worker: unknown command %q (want call, demo, dashboard, healthcheck, or none to run the worker)\n", cmd)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  worker [flags]                 run the worker
  worker call --erp-connection N --actor-type TYPE KEY...
                                 one ForceResyncExternal call; prints the response as JSON
  worker demo [--once] [--api soap|rest]
                                 the whole pipeline on embedded defaults
  worker dashboard [flags]       only the dashboard (/monitoring/), the queue metrics
                                 (/metrics) and the health endpoints
  worker healthcheck [flags]     asks /readyz on WORKER_HTTP_ADDR: exit 0 ready, 1 not
                                 ready, 2 configuration error (the container health check)
  worker --version               module version and VCS revision of this build

Exit status: 0 success; 1 SuperOffice answered IsOk=false (call) or the demo summary did not
match the simulator; 2 usage, configuration or transport error.
`)
	printSettings(w)
}
