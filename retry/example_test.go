package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/erpresync/erpresync/retry"
)

// The long-horizon layer: the wait before each asynq retry, without jitter so that the
// output is stable.
func ExamplePolicy_Delay() {
	p := retry.Policy{Initial: 30 * time.Second, Max: 30 * time.Minute, Multiplier: 2, RandomizationFactor: -1}
	for n := range 8 {
		fmt.Printf("retry %d after %v\n", n+1, p.Delay(n, 0))
	}
	fmt.Println("with Retry-After 45m:", p.Delay(0, 45*time.Minute))
	fmt.Println("with Retry-After 3h: ", p.Delay(0, 3*time.Hour))
	// Output:
	// retry 1 after 30s
	// retry 2 after 1m0s
	// retry 3 after 2m0s
	// retry 4 after 4m0s
	// retry 5 after 8m0s
	// retry 6 after 16m0s
	// retry 7 after 30m0s
	// retry 8 after 30m0s
	// with Retry-After 45m: 45m0s
	// with Retry-After 3h:  1h0m0s
}

var errReset = errors.New("connection reset")

// The fast layer: retry what the classifier calls retryable, within the budget.
func ExamplePolicy_Do() {
	p := retry.Policy{Initial: time.Millisecond, MaxElapsed: time.Second}
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errReset
		}
		return nil
	}, func(err error) retry.Decision {
		return retry.Decision{Retry: errors.Is(err, errReset)}
	})
	fmt.Println(calls, err)
	// Output: 3 <nil>
}
