package soap

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/sotest"
	"github.com/erpresync/erpresync/tasks"
)

// TestHostileReplies sends replies meant to hurt through the real Client: each must come
// back as an error of its own kind, classified so that it is not retried for ever, having
// read no more than the reply cap and allocated memory bounded by it (runtime.MemStats:
// bytes allocated during the call, server and client together, an upper bound of the
// peak). The test runs alone (not parallel) so that the allocation count is its own.
func TestHostileReplies(t *testing.T) {
	const (
		replyCap   = 1 << 20 // the client's MaxResponseBytes
		hundredMB  = 100 << 20
		allocBound = 16 * replyCap // a growing read buffer, the server side and -race overhead: far below 100 MB
	)
	envOpen := `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>`
	envClose := `</s:Body></s:Envelope>`
	deep := envOpen + strings.Repeat("<a>", 100_000) + strings.Repeat("</a>", 100_000) + envClose
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
		`<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
		`<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">` +
		`<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">` +
		`<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>` +
		envOpen + `<ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><TechExplanation>&lol9;</TechExplanation></Response></ForceResyncExternalResponse>` + envClose
	laughsInside := envOpen + `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;">]>` +
		`<ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><TechExplanation>&lol1;</TechExplanation></Response></ForceResyncExternalResponse>` + envClose
	badUTF8 := envOpen + `<ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><IsOk>true</IsOk><TechExplanation>caf` + "\xe9\xff" + `</TechExplanation></Response></ForceResyncExternalResponse>` + envClose

	tests := []struct {
		name      string
		handler   func(sent *atomic.Int64) http.HandlerFunc
		timeout   time.Duration // the client's call timeout (Config.HTTPClient.Timeout)
		wantClass tasks.Class
		check     func(t *testing.T, err error)
	}{
		{
			name:      "100 MB body with Content-Length",
			handler:   func(sent *atomic.Int64) http.HandlerFunc { return endless(sent, hundredMB, true) },
			wantClass: tasks.ClassPermanent,
			check:     wantIs(erpsync.ErrResponseTooLarge),
		},
		{
			name:      "100 MB body, chunked",
			handler:   func(sent *atomic.Int64) http.HandlerFunc { return endless(sent, hundredMB, false) },
			wantClass: tasks.ClassPermanent,
			check:     wantIs(erpsync.ErrResponseTooLarge),
		},
		{
			name:      "100,000-deep nesting",
			handler:   canned(deep),
			wantClass: tasks.ClassTransient,
			check:     wantProtocol("reply nested too deep"),
		},
		{
			name:      "billion laughs before the envelope",
			handler:   canned(laughs),
			wantClass: tasks.ClassTransient,
			check:     wantProtocol("reply is not a SOAP envelope"),
		},
		{
			name:      "billion laughs inside the envelope",
			handler:   canned(laughsInside),
			wantClass: tasks.ClassTransient,
			check:     wantProtocol("malformed XML"),
		},
		{
			name:      "invalid UTF-8",
			handler:   canned(badUTF8),
			wantClass: tasks.ClassTransient,
			check:     wantProtocol("malformed XML"),
		},
		{
			name:      "slowloris: headers, then a body trickling for ever",
			handler:   trickle,
			timeout:   2 * time.Second,
			wantClass: tasks.ClassTransient,
			check: func(t *testing.T, err error) {
				var te *erpsync.TransportError
				if !errors.As(err, &te) || !te.Timeout() {
					t.Errorf("err = %v, want a *erpsync.TransportError that is a timeout", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int64
			srv := sotest.NewServer(t, tt.handler(&sent))
			timeout := tt.timeout
			if timeout == 0 {
				timeout = time.Minute // a safety net; none of these should come near it
			}
			c := newTestClient(t, srv.URL, func(cfg *Config) {
				cfg.MaxResponseBytes = replyCap
				cfg.HTTPClient = &http.Client{Timeout: timeout}
			})
			ctx, cancel := context.WithTimeout(bg, 2*timeout)
			defer cancel()

			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := c.ForceResyncExternal(ctx, 3, erpsync.ActorCustomer, []string{"K1"})
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc

			if resp != nil || err == nil {
				t.Fatalf("ForceResyncExternal = %v, %v; want an error", resp, err)
			}
			tt.check(t, err)
			if got := tasks.Classify(err); got != tt.wantClass {
				t.Errorf("Classify = %v, want %v (err %v)", got, tt.wantClass, err)
			}
			if tt.wantClass == tasks.ClassTransient && !tasks.IsFailure(err) {
				t.Errorf("IsFailure = false: a transient error must use up the task's bounded retries")
			}
			if errors.Is(err, context.DeadlineExceeded) && tt.timeout == 0 {
				t.Errorf("err = %v: the reply was not rejected before the safety timeout", err)
			}
			if allocated > allocBound {
				t.Errorf("the call allocated %d bytes, want at most %d (the reply cap is %d)", allocated, allocBound, replyCap)
			}
			t.Logf("allocated %d bytes during the call; the server wrote %d bytes; %v", allocated, sent.Load(), err)
		})
	}
}

// TestDecoderDeepNestingBounded: the parser alone, on replies nested 100,000 deep inside
// elements it skips, inside a value and behind a DOCTYPE, allocates little and says what
// is wrong.
func TestDecoderDeepNestingBounded(t *testing.T) {
	envOpen := `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>`
	nest := strings.Repeat("<a>", 100_000) + strings.Repeat("</a>", 100_000)
	bodies := map[string]string{
		"skipped":           envOpen + nest + `</s:Body></s:Envelope>`,
		"in a value":        envOpen + `<ForceResyncExternalResponse xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Response><TechExplanation>` + nest + `</TechExplanation></Response></ForceResyncExternalResponse></s:Body></s:Envelope>`,
		"behind a DOCTYPE":  envOpen + `<!DOCTYPE x>` + nest + `</s:Body></s:Envelope>`,
		"unclosed, 1M deep": envOpen + strings.Repeat("<a>", 1_000_000),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			data := []byte(body)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ParseResponse(data)
			runtime.ReadMemStats(&after)
			var pe *erpsync.ProtocolError
			if !errors.As(err, &pe) || pe.Reason != "reply nested too deep" {
				t.Fatalf("err = %v, want a protocol error for the nesting", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
				t.Errorf("parsing allocated %d bytes, want at most 256 KiB", n)
			}
		})
	}
}

func wantIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("err = %v, want %v", err, target)
		}
	}
}

func wantProtocol(reason string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var pe *erpsync.ProtocolError
		if !errors.As(err, &pe) || pe.Reason != reason {
			t.Errorf("err = %v, want a *erpsync.ProtocolError %q", err, reason)
		}
	}
}

func canned(body string) func(*atomic.Int64) http.HandlerFunc {
	return func(sent *atomic.Int64) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/xml; charset=utf-8")
			n, _ := w.Write([]byte(body))
			sent.Add(int64(n))
		}
	}
}

// endless writes size bytes of an envelope that never closes, announcing the length or
// not, and stops when the client goes away.
func endless(sent *atomic.Int64, size int64, withLength bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		if withLength {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		chunk := bytes.Repeat([]byte("<a>x</a>"), 4096)
		for written := int64(0); written < size; {
			n, err := w.Write(chunk[:min(int64(len(chunk)), size-written)])
			written += int64(n)
			sent.Add(int64(n))
			if err != nil || r.Context().Err() != nil {
				return
			}
		}
	}
}

// trickle sends the headers and the start of an envelope, then one byte every 50 ms until
// the client goes away.
func trickle(sent *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>`))
		w.(http.Flusher).Flush()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := w.Write([]byte(" ")); err != nil {
					return
				}
				sent.Add(1)
				w.(http.Flusher).Flush()
			}
		}
	}
}
