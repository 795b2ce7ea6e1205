package soap

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/sotest"
)

func TestNewValidation(t *testing.T) {
	t.Parallel()
	ok := Config{BaseURL: "https://sod.superoffice.com/Cust12345", Auth: auth.NewStaticTicket("t")}
	tests := []struct {
		name    string
		mut     func(*Config)
		wantErr string // "" means valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"trailing slash", func(c *Config) { c.BaseURL += "/" }, ""},
		{"no BaseURL", func(c *Config) { c.BaseURL = "" }, "tenant base URL is required"},
		{"not http", func(c *Config) { c.BaseURL = "ftp://x/Cust1" }, "https://"},
		{"no host", func(c *Config) { c.BaseURL = "https:///Cust1" }, "no host"},
		{"service URL", func(c *Config) { c.BaseURL = "https://sod.superoffice.com/Cust1/Remote/Services88/ErpSync.svc" }, "tenant base"},
		{"query", func(c *Config) { c.BaseURL += "?x=1" }, "query"},
		{"no Auth", func(c *Config) { c.Auth = nil }, "ticket source is required"},
		{"negative cap", func(c *Config) { c.MaxResponseBytes = -1 }, "reply size cap"},
		{"bad app token", func(c *Config) { c.AppToken = "a\x00b" }, "application token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tt.mut(&cfg)
			_, err := New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New error = %v, want one mentioning %q", err, tt.wantErr)
			}
			var ce *erpsync.ConfigError
			if tt.wantErr != "" && !errors.As(err, &ce) {
				t.Errorf("New error %v is no *erpsync.ConfigError: a program cannot tell the field", err)
			}
		})
	}
}

// TestCallValidation checks that invalid arguments fail before anything is sent.
func TestCallValidation(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	c := newTestClient(t, srv.URL, nil)
	long := strings.Repeat("é", erpsync.MaxKeyLength+1)
	tests := []struct {
		name  string
		call  func() error
		check func(error) bool
	}{
		{"nil keys", func() error { _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, nil); return err },
			func(err error) bool { return errors.Is(err, erpsync.ErrEmptyKeys) }},
		{"empty keys", func() error { _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{}); return err },
			func(err error) bool { return errors.Is(err, erpsync.ErrEmptyKeys) }},
		{"bad key index", func() error {
			_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"ok", "ok", long})
			return err
		},
			func(err error) bool {
				var ke *erpsync.KeyError
				return errors.As(err, &ke) && ke.Index == 2 && strings.Contains(err.Error(), "#2") && strings.Contains(ke.Reason, "longer than 254")
			}},
		{"invalid actor", func() error { _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorType(8), []string{"k"}); return err },
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "ErpActorType") }},
		{"negative connection", func() error { _, err := c.ForceResyncAll(bg, -1, erpsync.ActorCustomer); return err },
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "out of range") }},
		{"cancelled before", func() error {
			ctx, cancel := context.WithCancel(bg)
			cancel()
			_, err := c.ForceResyncExternal(ctx, 1, erpsync.ActorCustomer, []string{"k"})
			return err
		}, func(err error) bool { return errors.Is(err, context.Canceled) }},
	}
	for _, tt := range tests {
		if err := tt.call(); !tt.check(err) {
			t.Errorf("%s: unexpected error %v", tt.name, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}

func TestClientReplies(t *testing.T) {
	t.Parallel()
	fixedNow := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	html := []byte("<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head><body>" + strings.Repeat("maintenance ", 100) + "</body></html>")
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, resp *erpsync.Result, err error)
	}{
		{
			name:    "success",
			handler: sotest.CannedReply(200, "text/xml; charset=utf-8", sotest.ReadTestdata(t, "response_success.xml")),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				if err != nil || !resp.IsOk || resp.Changes.Updated[0].RecordID != 123 {
					t.Fatalf("got %+v, %v", resp, err)
				}
			},
		},
		{
			name:    "business failure is a result",
			handler: sotest.CannedReply(200, "text/xml; charset=utf-8", sotest.ReadTestdata(t, "response_business_failure.xml")),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				if err != nil || resp.IsOk || resp.Status != erpsync.StatusError || resp.ErrorCode != "ERP-404" {
					t.Fatalf("got %+v, %v", resp, err)
				}
			},
		},
		{
			name:    "seed SOAP 1.2 reply",
			handler: sotest.CannedReply(200, "application/soap+xml; charset=utf-8", sotest.ReadTestdata(t, "response_seed.xml")),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				if err != nil || resp.IsOk || resp.Status != erpsync.StatusOk {
					t.Fatalf("got %+v, %v", resp, err)
				}
			},
		},
		{
			name:    "HTML 503 page",
			handler: sotest.CannedReply(503, "text/html", html),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var he *erpsync.HTTPError
				if !errors.As(err, &he) {
					t.Fatalf("err = %v, want *erpsync.HTTPError", err)
				}
				if he.StatusCode != 503 || he.ContentType != "text/html" || len(he.Body) != erpsync.MaxErrorBody || !strings.HasPrefix(he.Body, "<!DOCTYPE html>") || he.RetryAfter != 0 {
					t.Errorf("HTTPError = %+v", he)
				}
				if strings.Contains(err.Error(), "maintenance") {
					t.Errorf("error text carries the body: %v", err)
				}
			},
		},
		{
			name: "429 Retry-After seconds",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "120")
				w.WriteHeader(http.StatusTooManyRequests)
			},
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var he *erpsync.HTTPError
				if !errors.As(err, &he) || he.StatusCode != 429 || he.RetryAfter != 2*time.Minute {
					t.Fatalf("err = %v (%+v), want 429 with RetryAfter 2m", err, he)
				}
			},
		},
		{
			name: "429 Retry-After HTTP-date",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", fixedNow.Add(90*time.Second).Format(http.TimeFormat))
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusTooManyRequests)
				w.Write([]byte("slow down"))
			},
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var he *erpsync.HTTPError
				if !errors.As(err, &he) || he.RetryAfter != 90*time.Second || he.Body != "slow down" {
					t.Fatalf("err = %v (%+v), want RetryAfter 90s", err, he)
				}
			},
		},
		{
			name:    "415 wrong content type",
			handler: sotest.CannedReply(415, "", []byte("Cannot process the message because the content type 'application/soap+xml' was not the expected type 'text/xml; charset=utf-8'.")),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var he *erpsync.HTTPError
				if !errors.As(err, &he) || he.StatusCode != 415 {
					t.Fatalf("err = %v, want 415 *erpsync.HTTPError", err)
				}
			},
		},
		{
			name:    "SOAP 1.1 fault with HTTP 500",
			handler: sotest.CannedReply(500, "text/xml; charset=utf-8", sotest.ReadTestdata(t, "response_fault11.xml")),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var f *erpsync.FaultError
				if !errors.As(err, &f) || f.HTTPStatus != 500 || f.Code != "a:ActionNotSupported" || !strings.Contains(f.Reason, "ContractFilter") {
					t.Fatalf("err = %v, want fault", err)
				}
			},
		},
		{
			name:    "NetServer exception",
			handler: sotest.CannedReply(200, "text/xml; charset=utf-8", sotest.ReadTestdata(t, "response_exception.xml")),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var ex *erpsync.ExceptionError
				if !errors.As(err, &ex) || ex.Type != "SoSecurityException" || !ex.TicketRejected || !erpsync.IsTicketError(err) {
					t.Fatalf("err = %v, want ticket exception", err)
				}
			},
		},
		{
			name:    "malformed XML with 200",
			handler: sotest.CannedReply(200, "text/xml", []byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><oops></s:Body>`)),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var pe *erpsync.ProtocolError
				if !errors.As(err, &pe) || pe.HTTPStatus != 200 || pe.Reason != "malformed XML" {
					t.Fatalf("err = %v, want *erpsync.ProtocolError", err)
				}
			},
		},
		{
			name:    "HTML with 200",
			handler: sotest.CannedReply(200, "text/html", html),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				var pe *erpsync.ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want *erpsync.ProtocolError", err)
				}
			},
		},
		{
			name:    "oversized reply with Content-Length",
			handler: sotest.CannedReply(200, "text/xml", []byte(strings.Repeat("x", 5000))),
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				if !errors.Is(err, erpsync.ErrResponseTooLarge) || !strings.Contains(err.Error(), "4096") {
					t.Fatalf("err = %v, want erpsync.ErrResponseTooLarge naming the cap", err)
				}
			},
		},
		{
			name: "oversized chunked reply",
			handler: func(w http.ResponseWriter, r *http.Request) {
				for range 10 {
					w.Write([]byte(strings.Repeat("y", 1000)))
					w.(http.Flusher).Flush()
				}
			},
			check: func(t *testing.T, resp *erpsync.Result, err error) {
				if !errors.Is(err, erpsync.ErrResponseTooLarge) {
					t.Fatalf("err = %v, want erpsync.ErrResponseTooLarge", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := sotest.NewServer(t, tt.handler)
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.MaxResponseBytes = 4096 })
			c.http.SetClock(func() time.Time { return fixedNow })
			resp, err := c.ForceResyncExternal(bg, 3, erpsync.ActorCustomer, []string{"10001"})
			if err != nil && resp != nil {
				t.Fatalf("got both a response and an error: %v", err)
			}
			tt.check(t, resp, err)
		})
	}
}

func TestClientTransportErrors(t *testing.T) {
	t.Parallel()

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := newTestClient(t, "http://"+addr, nil)
		_, err = c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
		var te *erpsync.TransportError
		if !errors.As(err, &te) || te.Timeout() {
			t.Fatalf("err = %v, want non-timeout *erpsync.TransportError", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Errorf("err = %v does not wrap the *net.OpError", err)
		}
	})

	hijack := func(write string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			if write != "" {
				buf.WriteString(write)
				buf.Flush()
			}
			conn.Close()
		}
	}
	drops := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"dropped before reply", hijack("")},
		{"dropped mid-body", hijack("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<s:Envelope")},
	}
	for _, tt := range drops {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int64
			srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				tt.handler(w, r)
			}))
			c := newTestClient(t, srv.URL, nil)
			_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
			var te *erpsync.TransportError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want *erpsync.TransportError", err)
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("server saw %d requests, want exactly 1 (no silent resend)", n)
			}
		})
	}

	// blocking serves requests that wait until the client goes away; arrived reports each.
	blocking := func(t *testing.T) (*Client, chan struct{}) {
		arrived := make(chan struct{}, 1)
		release := make(chan struct{})
		srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(func() { close(release) }) // runs before srv.Close
		return newTestClient(t, srv.URL, nil), arrived
	}

	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		c, _ := blocking(t)
		ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
		defer cancel()
		_, err := c.ForceResyncExternal(ctx, 1, erpsync.ActorCustomer, []string{"k"})
		var te *erpsync.TransportError
		if !errors.As(err, &te) || !te.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want timeout *erpsync.TransportError wrapping DeadlineExceeded", err)
		}
	})

	t.Run("cancellation", func(t *testing.T) {
		t.Parallel()
		c, arrived := blocking(t)
		ctx, cancel := context.WithCancel(bg)
		go func() {
			<-arrived
			cancel()
		}()
		_, err := c.ForceResyncExternal(ctx, 1, erpsync.ActorCustomer, []string{"k"})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		var te *erpsync.TransportError
		if errors.As(err, &te) {
			t.Errorf("a cancelled call is reported as a *TransportError: %v", err)
		}
	})
}

// TestStaticTicketRejected checks that a fixed ticket NetServer rejects is reported, not
// resent.
func TestStaticTicketRejected(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_exception.xml"))(w, r)
	}))
	c := newTestClient(t, srv.URL, nil)
	_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
	if !erpsync.IsTicketError(err) {
		t.Fatalf("err = %v, want a ticket error", err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

// TestTicketErrorPattern checks that Config.TicketErrorPattern decides what is a ticket error.
func TestTicketErrorPattern(t *testing.T) {
	t.Parallel()
	srv := sotest.NewServer(t, sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_exception.xml")))
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.TicketErrorPattern = regexp.MustCompile(`^NoSuchThing$`) })
	_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
	var ex *erpsync.ExceptionError
	if !errors.As(err, &ex) || erpsync.IsTicketError(err) {
		t.Fatalf("err = %v, want a non-ticket *erpsync.ExceptionError", err)
	}
}

// TestRedirectNotFollowed: the default HTTP client does not follow redirects. Following one
// would turn the SOAP POST into a GET (301, 302, 303) and report whatever page answers that,
// or resend the envelope with its ticket and application token to the new location (307,
// 308); the redirect itself is the reply.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			var elsewhere atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("/elsewhere/", func(w http.ResponseWriter, r *http.Request) {
				elsewhere.Add(1)
				sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_success.xml"))(w, r)
			})
			mux.HandleFunc(sotest.Tenant+pathErpSync, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere"+pathErpSync, status)
			})
			srv := sotest.NewServer(t, mux)
			// The package's own client, and a caller's client without a redirect policy.
			for _, hc := range []*http.Client{nil, {}} {
				c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.HTTPClient = hc })
				_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
				var he *erpsync.HTTPError
				if !errors.As(err, &he) || he.StatusCode != status {
					t.Errorf("HTTPClient %v: err = %v, want *erpsync.HTTPError with status %d", hc, err, status)
				}
			}
			if n := elsewhere.Load(); n != 0 {
				t.Errorf("the redirect target got %d requests, want 0", n)
			}
		})
	}
}

// TestReplyBodyDrained: every kind of reply within the size cap is read to its end and
// closed, so that the transport can reuse the keep-alive connection.
func TestReplyBodyDrained(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"success", sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_success.xml"))},
		{"business failure", sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_business_failure.xml"))},
		{"exception", sotest.CannedReply(200, "text/xml", sotest.ReadTestdata(t, "response_exception.xml"))},
		{"fault", sotest.CannedReply(500, "text/xml", sotest.ReadTestdata(t, "response_fault11.xml"))},
		{"HTML 503", sotest.CannedReply(503, "text/html", []byte("<!DOCTYPE html><html><body>down for maintenance</body></html>"))},
		{"429 without body", sotest.CannedReply(429, "", nil)},
		{"not SOAP with 200", sotest.CannedReply(200, "text/html", []byte("<html>not SOAP</html>"))},
		{"malformed XML", sotest.CannedReply(200, "text/xml", []byte("<s:Envelope><oops>"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := sotest.NewServer(t, tt.handler)
			spy := &bodySpy{}
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: spy} })
			_, _ = c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
			if !spy.eof.Load() || !spy.closed.Load() {
				t.Errorf("reply body read to EOF = %t, closed = %t; want both", spy.eof.Load(), spy.closed.Load())
			}
		})
	}
}

// bodySpy is a RoundTripper that records whether the reply body was read to io.EOF and closed.
type bodySpy struct{ eof, closed atomic.Bool }

func (s *bodySpy) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = &spiedBody{ReadCloser: resp.Body, spy: s}
	}
	return resp, err
}

type spiedBody struct {
	io.ReadCloser
	spy *bodySpy
}

func (b *spiedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.spy.eof.Store(true)
	}
	return n, err
}

func (b *spiedBody) Close() error {
	b.spy.closed.Store(true)
	return b.ReadCloser.Close()
}
