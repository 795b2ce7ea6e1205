// Package testwait is how tests wait for something to happen: poll a condition until it
// holds, and fail the test at a deadline (a sleep is never the synchronisation). It imports
// nothing of the project's, so the tests of every package, e2etest's harness included, can
// share it.
//
//	testwait.Until(t, "the breaker open", 10*time.Second, func() bool { return b.Open() })
package testwait

import (
	"testing"
	"time"
)

// Poll is how often For and Until look at their condition.
const Poll = 10 * time.Millisecond

// For polls cond every Poll until it holds, and fails the test if it does not within
// timeout. A non-nil error from cond says why it does not hold yet (a status, or Redis
// being down); For keeps polling and reports the last one with what.
func For(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
			}
			t.Fatalf("%s: not reached within %s", what, timeout)
		}
		time.Sleep(Poll)
	}
}

// Until is For for a condition that has no reason to give.
func Until(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	For(t, what, timeout, func() (bool, error) { return cond(), nil })
}
