package runspage_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/erpresync/erpresync/internal/runspage"
)

// breaker stands in for flow control's circuit breaker: open since a time, or closed.
type breaker struct{ openSince time.Time }

// Pauses makes the breaker a runspage.Pauser.
func (b breaker) Pauses(context.Context) ([]runspage.Pause, error) {
	if b.openSince.IsZero() {
		return nil, nil
	}
	return []runspage.Pause{{Reason: "SuperOffice unavailable", Since: b.openSince}}, nil
}

// The worker mounts the page at runspage.Path next to the dashboard, behind its login;
// Ledger is a *ledger.Ledger there, and Pauses flow control's breaker.
func ExampleNew() {
	h, err := runspage.New(runspage.Config{
		Ledger: sample(),
		Pauses: breaker{openSince: time.Date(2026, 11, 27, 2, 31, 5, 0, time.UTC)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle(runspage.Path, h)

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/runs/", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.Contains(line, "data-pause") {
			fmt.Print(line)
		}
	}
	// Output:
	// 200 text/html; charset=utf-8
	// <div class="banner" role="status" data-pause>Paused: SuperOffice unavailable since 2026-11-27 02:31:05 UTC: batches wait to be retried.</div>
}
