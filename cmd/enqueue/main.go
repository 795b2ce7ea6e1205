// Command enqueue is the producers' and operators' CLI of erpresync: it submits ERP
// external keys for resync (from a file, stdin or the command line) and shows and manages
// runs, dead letters and the Changes SuperOffice reported. Run `enqueue -h` for the usage.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// quiet drops go-redis's own log lines; enqueue reports Redis errors itself, once.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func main() {
	redis.SetLogger(quiet{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal cancels ctx, and enqueue finishes cleanly; but it may be waiting for
		// something ctx cannot interrupt (standard input from a terminal). Restoring the
		// default handling lets a second signal end the process at once.
		<-ctx.Done()
		stop()
		if context.Cause(ctx) != context.Canceled { // a signal, not stop
			fmt.Fprintln(os.Stderr, "enqueue: interrupted; stopping (interrupt again to quit at once)")
		}
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
