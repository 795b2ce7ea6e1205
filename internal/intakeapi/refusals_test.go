package intakeapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

// TestNoKeysIs400: a body without a single valid key is the client's fault, answered 400
// (a client that retries 5xx would loop for ever), naming what was wrong; the run is
// recorded empty and nothing is queued.
func TestNoKeysIs400(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, tt := range []struct{ name, query, ctype, body, want string }{
		{"empty", q, "text/plain", "", "is empty"},
		{"blank lines", q, "text/plain", "\n \n\r\n", "only blank lines"},
		{"csv header only", q + "&csv_column=id", "text/csv", "id,name\n", "only blank lines or a CSV header"},
		{"empty ndjson key", q, "application/x-ndjson", "{\"key\":\"\"}\n", "only blank lines"},
		{"every key invalid", q + "&strict=false", "text/plain", "A\x01\nB\x02\n", "2 invalid"},
	} {
		run := "nokeys-" + strings.ReplaceAll(tt.name, " ", "-")
		r := e.put("/v1/runs/"+run+"/keys"+tt.query, tt.ctype, tt.body)
		if r.code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400\n%s", tt.name, r.code, r.body)
			continue
		}
		if ae := r.apiErr(t); !strings.Contains(ae.Message, tt.want) || !strings.Contains(ae.Message, "nothing was enqueued") {
			t.Errorf("%s: %q; want it to say %q", tt.name, ae.Message, tt.want)
		}
		st, err := ledger.NewLedger(e.rdb).Status(context.Background(), run)
		if err != nil || st.State != ledger.RunEmpty {
			t.Errorf("%s: ledger %+v %v; want the run recorded empty", tt.name, st, err)
		}
		if n := len(e.queued(run)); n != 0 {
			t.Errorf("%s: %d keys queued", tt.name, n)
		}
	}
	e.noSpool()
}

// TestTrickleRunNamesReserved: a PUT may not write into a trickle run (its batches would
// mix with the day's trickle keys of another ERP connection); reading one is fine.
func TestTrickleRunNamesReserved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	run := tasks.TrickleRun(time.Now(), 4, 2)
	r := e.put("/v1/runs/"+run+"/keys"+q, "text/plain", "A\n")
	if ae := r.apiErr(t); r.code != http.StatusBadRequest || ae.Field != "run" || !strings.Contains(ae.Message, `reserved for trickle intake`) {
		t.Fatalf("PUT into %s: %d %s", run, r.code, r.body)
	}
	e.noRun(run)
	if r := e.do(http.MethodGet, "/v1/runs/"+run, "", token, nil); r.code != http.StatusNotFound {
		t.Errorf("GET %s: %d, want 404 (a trickle run can be read)", run, r.code)
	}
	e.summary(e.put("/v1/runs/trickles/keys"+q, "text/plain", "A\n")) // only the prefix is reserved
}

// TestStrictJSON: JSON that encoding/json would read as something else than was sent is
// refused, naming the line: a member given twice, a member name in another case, a lone
// surrogate escape (U+FFFD would be resynced), invalid UTF-8. Nothing is enqueued.
func TestStrictJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, tt := range []struct {
		name, body string
		line       int
		want       string
	}{
		{"duplicate key", "{\"key\":\"A\"}\n{\"key\":\"A\",\"key\":\"B\"}\n", 2, `member "key": given twice`},
		{"upper-case name", "{\"key\":\"A\"}\n\n{\"KEY\":\"B\"}\n", 3, `write "key"`},
		{"mixed-case beside the name", "{\"key\":\"A\",\"Key\":\"B\"}\n", 1, `write "key"`},
		{"lone surrogate", "{\"key\":\"A\"}\n{\"key\":\"B\\ud800\"}\n", 2, "surrogate"},
		{"invalid UTF-8", "{\"key\":\"A\"}\n{\"key\":\"B\xff\", \"x\": 1}\n", 2, "UTF-8"},
	} {
		run := "strict-" + strings.ReplaceAll(tt.name, " ", "-")
		r := e.put("/v1/runs/"+run+"/keys"+q, "application/x-ndjson", tt.body)
		if ae := r.apiErr(t); r.code != http.StatusBadRequest || ae.Line != tt.line || !strings.Contains(ae.Message, tt.want) {
			t.Errorf("ndjson %s: %d line %d %q; want 400 line %d and %q", tt.name, r.code, ae.Line, ae.Message, tt.line, tt.want)
		}
		e.noRun(run)
	}
	for _, tt := range []struct {
		name, body, field string
		line              int
		want              string
	}{
		{"keys twice", "{\"erp_connection\": 3, \"actor_type\": \"Customer\",\n \"keys\": [\"A\"],\n \"keys\": [\"B\"]}", "", 3, `member "keys": given twice`},
		{"Keys", "{\"erp_connection\": 3, \"actor_type\": \"Customer\", \"Keys\": [\"A\"]}", "Keys", 1, `write "keys"`},
		{"lone surrogate", "{\"erp_connection\": 3, \"actor_type\": \"Customer\",\n\"keys\": [\"A\", \"\\udc00\"]}", "", 2, "surrogate"},
		{"number for a key", "{\"erp_connection\": 3, \"actor_type\": \"Customer\", \"keys\": [\"A\", 7]}", "keys[1]", 1, "want a string, not a number"},
	} {
		r := e.do(http.MethodPost, "/v1/keys", "application/json", token, strings.NewReader(tt.body))
		ae := r.apiErr(t)
		if r.code != http.StatusBadRequest || ae.Line != tt.line || !strings.Contains(ae.Message, tt.want) || tt.field != "" && ae.Field != tt.field {
			t.Errorf("POST %s: %d line %d field %q %q; want 400 line %d field %q and %q", tt.name, r.code, ae.Line, ae.Field, ae.Message, tt.line, tt.field, tt.want)
		}
		if strings.Contains(ae.Message, "Go ") || strings.Contains(ae.Message, "trickleRequest") {
			t.Errorf("POST %s: the message names Go types: %q", tt.name, ae.Message)
		}
	}
}
