package ledger_test

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/ledger"
)

func ExampleParseRetention() {
	for _, s := range []string{"30d", "72h", "0", "a month"} {
		d, err := ledger.ParseRetention(s)
		fmt.Println(d, err)
	}
	// Output:
	// 720h0m0s <nil>
	// 72h0m0s <nil>
	// 0s <nil>
	// 0s retention "a month": want a period such as 30d, 72h or 90m, or 0 to keep runs for ever
}

// How the worker prunes the ledger (LEDGER_RETENTION), and `enqueue runs --prune --dry-run`.
func ExampleLedger_Prune() {
	var (
		ctx  context.Context
		rdb  redis.UniversalClient
		insp *asynq.Inspector // deletes the archived tasks of the removed runs' dead letters
	)
	res, err := ledger.NewLedger(rdb).Prune(ctx, ledger.PruneOptions{OlderThan: ledger.DefaultLedgerRetention, Inspector: insp, DryRun: true})
	if err != nil {
		return
	}
	for _, r := range res.Runs {
		fmt.Printf("would remove %s (%s, %d keys, finished %s)\n", r.Run, r.State, r.TotalKeys, r.FinishedAt)
	}
}
