package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/redistest"
)

// TestLoginCheckedAtStart: the worker tries its login once at start, without holding up the
// start: a wrong password is logged as refused, naming the settings to fix, and a batch held
// for it says the same (not "client secret"); a right one logs "login ok".
func TestLoginCheckedAtStart(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	for _, tt := range []struct {
		name, password string
		want           []string // log lines that must appear, in any order
	}{
		{name: "wrong password", password: "not-the-password", want: []string{
			`"login refused: check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD`,
			`"AUTH FAILURE: SuperOffice refused our credentials; check SUPEROFFICE_USERNAME and SUPEROFFICE_PASSWORD`,
		}},
		{name: "right password", password: testPassword, want: []string{`"message":"login ok"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := redistest.New(t)
			env := workerEnv(db, sim)
			env["SUPEROFFICE_PASSWORD"] = tt.password
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			logw := lockedWriter{&mu, &bytes.Buffer{}}
			done := make(chan int, 1)
			go func() { done <- run(ctx, nil, &bytes.Buffer{}, logw, envFunc(env)) }()
			if tt.password != testPassword {
				// A batch for the worker: held for the auth failure, never dead-lettered.
				waitFor(t, 30*time.Second, func() (bool, string) {
					return strings.Contains(logw.String(), "worker started"), "worker not started:\n" + logw.String()
				})
				submit(t, db, "login-run", erpsync.ActorCustomer, testKeys("L", 2), 2)
			}
			waitFor(t, 30*time.Second, func() (bool, string) {
				out := logw.String()
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						return false, "log lacks " + w + ":\n" + out
					}
				}
				return true, ""
			})
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("exit %d, want 0:\n%s", code, logw.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatal("worker did not stop")
			}
			out := logw.String()
			for _, never := range []string{"client secret", tt.password} {
				if strings.Contains(out, never) {
					t.Errorf("log shows %q:\n%s", never, out)
				}
			}
		})
	}
}
