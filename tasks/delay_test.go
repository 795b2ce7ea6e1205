package tasks

import (
	"testing"

	"github.com/erpresync/erpresync/retry"
)

// TestDefaultPoliciesAreFresh: a caller that tunes a default policy changes its own copy,
// never the defaults every other importer gets.
func TestDefaultPoliciesAreFresh(t *testing.T) {
	t.Parallel()
	for name, def := range map[string]func() retry.Policy{
		"DefaultFastPolicy": DefaultFastPolicy, "DefaultAsynqPolicy": DefaultAsynqPolicy, "DefaultBusinessPolicy": DefaultBusinessPolicy,
	} {
		want := def()
		p := def()
		p.Initial, p.Max, p.MaxAttempts = 1, 1, 1
		if got := def(); got.Initial != want.Initial || got.Max != want.Max || got.MaxAttempts != want.MaxAttempts {
			t.Errorf("%s() after a caller changed its copy = %+v, want %+v", name, got, want)
		}
	}
}
