package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/golden"
	"github.com/erpresync/erpresync/internal/sotest"
	"github.com/erpresync/erpresync/tasks"
)

// TestRequestGolden: the request line, headers and body, byte for byte.
func TestRequestGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		golden string
		call   func(c *Client) error
	}{
		{"two keys", "request.golden.txt", func(c *Client) error {
			_, err := c.ForceResyncExternal(bg, 3, erpsync.ActorCustomer, []string{"10001", "10002"})
			return err
		}},
		{"escaping", "request_escaping.golden.txt", func(c *Client) error {
			_, err := c.ForceResyncExternal(bg, 3, erpsync.ActorPerson, []string{`quote"back\slash`, "tab\tnew\nline\r", "æøå\u2028<&>"})
			return err
		}},
		{"all", "request_all.golden.txt", func(c *Client) error {
			_, err := c.ForceResyncAll(bg, 7, erpsync.ActorSale)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []byte
			srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				var b strings.Builder
				fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL.Path)
				for _, h := range []string{"Content-Type", "Accept", "Authorization", "SO-AppToken", "User-Agent"} {
					fmt.Fprintf(&b, "%s: %s\n", h, r.Header.Get(h))
				}
				b.WriteString("\n")
				b.Write(body)
				b.WriteString("\n")
				got = []byte(b.String())
				if !json.Valid(body) {
					t.Errorf("request body is not valid JSON: %s", body)
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.Write(sotest.ReadTestdata(t, "reply_success.json"))
			}))
			if err := tt.call(newTestClient(t, srv.URL, nil)); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tt.golden, got, *update)
		})
	}
}

// TestRequestEncodingMatchesEncodingJSON: the hand-written encoder writes what
// encoding/json reads back as the same keys.
func TestRequestEncodingMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	keys := []string{"plain", `q"b\`, "\x01\x1f", "\u2028\u2029", "\xff invalid", "ünïcødé 𝄞", "<html>&"}
	b := appendRequest(nil, 3, erpsync.ActorCustomer, keys)
	var got struct {
		ErpConnectionId int
		ErpActorType    string
		ExternalKeys    []string
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	want := slices.Clone(keys)
	want[4] = "\uFFFD invalid"
	if got.ErpConnectionId != 3 || got.ErpActorType != "Customer" || !slices.Equal(got.ExternalKeys, want) {
		t.Fatalf("round trip: %+v, want keys %q", got, want)
	}
}

// TestReplies runs every reply shape the WebAPI is documented (or expected) to send
// through the client, and compares what callers get — the Result or the error, and the
// class tasks.Classify gives it — with testdata/replies.golden.txt.
func TestReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		contentType string
		header      map[string]string
		file        string
		check       func(t *testing.T, r *erpsync.Result, err error)
	}{
		{"success", 200, "application/json; charset=utf-8", nil, "reply_success.json", func(t *testing.T, r *erpsync.Result, err error) {
			if err != nil || !r.IsOk || r.Status != erpsync.StatusOk || len(r.Changes.Added) != 1 || len(r.Changes.Updated) != 2 || r.Changes.Deleted == nil {
				t.Fatalf("got %+v, %v", r, err)
			}
			if r.Changes.Added[0] != (erpsync.ChangedItem{Table: "contact", RecordID: 12}) {
				t.Errorf("added = %+v", r.Changes.Added)
			}
		}},
		{"business failure, Changes null", 200, "application/json", nil, "reply_business_failure.json", func(t *testing.T, r *erpsync.Result, err error) {
			if err != nil || r.IsOk || r.Status != erpsync.StatusError || r.ErrorCode != "ERP_REJECTED" || r.Changes.Added != nil {
				t.Fatalf("got %+v, %v", r, err)
			}
		}},
		{"members reordered, other case, unknown members, Warn", 200, "application/json", nil, "reply_reordered.json", func(t *testing.T, r *erpsync.Result, err error) {
			if err != nil || !r.IsOk || r.Status != erpsync.StatusWarning || r.StatusName != "Warn" || len(r.Changes.Updated) != 1 || r.Changes.Updated[0].RecordID != 7 {
				t.Fatalf("got %+v, %v", r, err)
			}
		}},
		{"null body", 200, "application/json", nil, "reply_null.json", wantErr[*erpsync.ProtocolError]},
		{"PluginResponse without IsOk", 200, "application/json", nil, "reply_no_isok.json", wantErr[*erpsync.ProtocolError]},
		{"Message and MessageDetail with 200", 200, "application/json", nil, "reply_message.json", func(t *testing.T, _ *erpsync.Result, err error) {
			var ex *erpsync.ExceptionError
			if !errors.As(err, &ex) || ex.TicketRejected || !strings.Contains(err.Error(), "not valid") {
				t.Fatalf("err = %v, want an exception with the detail", err)
			}
		}},
		{"error object with 500", 500, "application/json", nil, "reply_error_object.json", func(t *testing.T, _ *erpsync.Result, err error) {
			var ex *erpsync.ExceptionError
			var he *erpsync.HTTPError
			if !errors.As(err, &ex) || !errors.As(err, &he) || he.StatusCode != 500 || ex.Type != "SoServerException" {
				t.Fatalf("err = %v, want HTTP 500 with the exception", err)
			}
		}},
		{"error object with 200", 200, "application/json", nil, "reply_error_object.json", wantErr[*erpsync.ExceptionError]},
		{"401 with a fixed ticket", 401, "application/json", nil, "reply_unauthorized.json", func(t *testing.T, _ *erpsync.Result, err error) {
			if !erpsync.IsTicketError(err) {
				t.Fatalf("err = %v, want a ticket error", err)
			}
		}},
		{"403 missing grant", 403, "application/json", nil, "reply_forbidden.json", func(t *testing.T, _ *erpsync.Result, err error) {
			var he *erpsync.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 403 || !strings.Contains(err.Error(), "not granted the ErpSync agent") {
				t.Fatalf("err = %v", err)
			}
		}},
		{"421 wrong host", 421, "text/plain", nil, "reply_misdirected.txt", func(t *testing.T, _ *erpsync.Result, err error) {
			var he *erpsync.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 421 || !strings.Contains(err.Error(), "Cust12345") || !strings.Contains(err.Error(), "moved to another host") {
				t.Fatalf("err = %v, want a 421 naming the tenant", err)
			}
		}},
		{"429 with Retry-After", 429, "application/json", map[string]string{"Retry-After": "30"}, "reply_null.json", func(t *testing.T, _ *erpsync.Result, err error) {
			var he *erpsync.HTTPError
			if !errors.As(err, &he) || he.RetryAfter != 30*time.Second {
				t.Fatalf("err = %v, want Retry-After 30s", err)
			}
		}},
		{"503 HTML page with Retry-After", 503, "text/html", map[string]string{"Retry-After": "120"}, "reply_maintenance.html", func(t *testing.T, _ *erpsync.Result, err error) {
			var he *erpsync.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 503 || he.RetryAfter != 2*time.Minute || !strings.Contains(he.Body, "maintenance") {
				t.Fatalf("err = %v", err)
			}
		}},
		{"503 HTML page", 503, "text/html", nil, "reply_maintenance.html", wantErr[*erpsync.HTTPError]},
		{"HTML page with 200", 200, "text/html", nil, "reply_maintenance.html", wantErr[*erpsync.ProtocolError]},
	}
	var replies strings.Builder
	for _, tt := range tests {
		srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tt.contentType)
			for k, v := range tt.header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(tt.status)
			w.Write(sotest.ReadTestdata(t, tt.file))
		}))
		c := newTestClient(t, srv.URL, nil)
		r, err := c.ForceResyncExternal(bg, 3, erpsync.ActorCustomer, []string{"10001"})
		if err != nil && r != nil {
			t.Errorf("%s: got both a result and an error", tt.name)
		}
		t.Run(tt.name, func(t *testing.T) { tt.check(t, r, err) })
		fmt.Fprintf(&replies, "## %s (HTTP %d, %s)\n", tt.name, tt.status, tt.file)
		if err != nil {
			text := strings.ReplaceAll(err.Error(), strings.TrimPrefix(srv.URL, "http://"), "HOST")
			fmt.Fprintf(&replies, "error: %s\nclass: %s\n\n", text, tasks.Classify(err))
		} else {
			b, _ := json.Marshal(r)
			fmt.Fprintf(&replies, "result: %s\n\n", b)
		}
	}
	golden.Check(t, "replies.golden.txt", []byte(replies.String()), *update)
}

func wantErr[E error](t *testing.T, _ *erpsync.Result, err error) {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want %T", err, e)
	}
}

// TestUnauthorizedRefreshOnce: a 401 invalidates the ticket; the call is repeated once with
// a fresh one. A second 401 with the fresh ticket is a ticket error, after two logins.
func TestUnauthorizedRefreshOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		goodTicket string // the ticket the server accepts
		wantErr    bool
		wantLogins int64
		wantCalls  int64
	}{
		{"success after one refresh", "7T:login-2", false, 2, 2},
		{"fresh ticket rejected too", "7T:never", true, 2, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls, logins atomic.Int64
			srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", "application/json")
				if r.Header.Get("Authorization") != "SOTicket "+tt.goodTicket {
					w.WriteHeader(http.StatusUnauthorized)
					w.Write(sotest.ReadTestdata(t, "reply_unauthorized.json"))
					return
				}
				w.Write(sotest.ReadTestdata(t, "reply_success.json"))
			}))
			cache := auth.NewTicketCache(func(context.Context) (string, error) {
				return fmt.Sprintf("7T:login-%d", logins.Add(1)), nil
			}, 0)
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Auth = cache })
			r, err := c.ForceResyncExternal(bg, 3, erpsync.ActorCustomer, []string{"10001"})
			if tt.wantErr != (err != nil) || (err == nil && !r.IsOk) {
				t.Fatalf("got %+v, %v", r, err)
			}
			if err != nil && !erpsync.IsTicketError(err) {
				t.Fatalf("err = %v, want a ticket error", err)
			}
			if logins.Load() != tt.wantLogins || calls.Load() != tt.wantCalls {
				t.Errorf("logins = %d, calls = %d; want %d and %d", logins.Load(), calls.Load(), tt.wantLogins, tt.wantCalls)
			}
		})
	}
}

// TestSecretsNotEchoed: a server that echoes the ticket and app token gets neither into
// error text, HTTPError bodies or exception fields.
func TestSecretsNotEchoed(t *testing.T) {
	t.Parallel()
	echo := "ticket " + sotest.Ticket + " for app " + sotest.AppToken
	for _, status := range []int{200, 401, 500, 503} {
		srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"Error": true, "ErrorType": "X", "ErrorMessage": echo, "ErrorSource": echo})
		}))
		_, err := newTestClient(t, srv.URL, nil).ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
		text := fmt.Sprintf("%v %+v", err, err)
		var he *erpsync.HTTPError
		if errors.As(err, &he) {
			text += he.Body
		}
		if strings.Contains(text, sotest.Ticket) || strings.Contains(text, sotest.AppToken) {
			t.Errorf("HTTP %d: error carries a secret: %s", status, text)
		}
	}
	cfg := Config{BaseURL: "https://sod.superoffice.com/Cust1", AppToken: sotest.AppToken, Auth: auth.NewStaticTicket(sotest.Ticket)}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{cfg, &cfg, c} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, sotest.Ticket) || strings.Contains(out, sotest.AppToken) {
				t.Errorf("fmt %s prints a secret: %s", verb, out)
			}
		}
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{Auth: auth.NewStaticTicket("t")}, "tenant base URL is required"},
		{"service URL", Config{BaseURL: "https://sod.superoffice.com/Cust1/api/v1/Agents/ErpSync/ForceResyncExternal", Auth: auth.NewStaticTicket("t")}, "tenant base"},
		{"no auth", Config{BaseURL: "https://sod.superoffice.com/Cust1"}, "ticket source is required"},
		{"negative cap", Config{BaseURL: "https://sod.superoffice.com/Cust1", Auth: auth.NewStaticTicket("t"), MaxResponseBytes: -1}, "reply size cap"},
	} {
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		if ce := (*erpsync.ConfigError)(nil); !errors.As(err, &ce) {
			t.Errorf("%s: err %v is no *erpsync.ConfigError", tt.name, err)
		}
	}
	var sent atomic.Int64
	srv := sotest.NewServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { sent.Add(1) }))
	c := newTestClient(t, srv.URL, nil)
	if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, nil); !errors.Is(err, erpsync.ErrEmptyKeys) {
		t.Errorf("empty keys: %v", err)
	}
	var ke *erpsync.KeyError
	if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"ok", "a\x01b"}); !errors.As(err, &ke) || ke.Index != 1 {
		t.Errorf("bad key: %v", err)
	}
	if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorUnknown, []string{"k"}); err == nil {
		t.Error("unknown actor accepted")
	}
	if sent.Load() != 0 {
		t.Errorf("%d requests sent for invalid calls", sent.Load())
	}
}

func TestResponseTooLarge(t *testing.T) {
	t.Parallel()
	srv := sotest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(sotest.ReadTestdata(t, "reply_success.json"))
	}))
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.MaxResponseBytes = 64 })
	if _, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"}); !errors.Is(err, erpsync.ErrResponseTooLarge) {
		t.Fatalf("err = %v", err)
	}
}
