package intakeapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/internal/testwait"
	"github.com/erpresync/erpresync/tasks"
)

const q = "?erp_connection=3&actor_type=Customer"

func keyLines(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	return b.String()
}

func TestPutIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body := "\uFEFFA0\r\n  A1  \n\nA0\n" + keyLines("K", 250)
	first := e.summary(e.put("/v1/runs/r1/keys"+q, "text/plain; charset=utf-8", body))
	if first.Run != "r1" || first.Keys != 252 || first.Duplicates != 1 || first.Batches != 3 || first.BatchesEnqueued != 3 || first.KeysEnqueued != 252 {
		t.Fatalf("first submission: %+v", first)
	}
	if len(first.Problems) != 1 || first.Problems[0].Line != 4 || first.Problems[0].Reason != "duplicate of line 1" || first.Problems[0].File != "body" {
		t.Errorf("the duplicate should be reported with its lines: %+v", first.Problems)
	}
	again := e.summary(e.put("/v1/runs/r1/keys"+q, "text/plain", body))
	if again.BatchesEnqueued != 0 || again.BatchesPresent != 3 || again.KeysEnqueued != 0 || again.Keys != 252 {
		t.Fatalf("the same body again must enqueue nothing: %+v", again)
	}
	keys := e.queued("r1")
	if len(keys) != 252 || keys[0] != "A0" || keys[1] != "A1" || keys[2] != "K0" {
		t.Fatalf("queued %d keys, first %v", len(keys), keys[:min(3, len(keys))])
	}
	st, err := ledger.NewLedger(e.rdb).Status(t.Context(), "r1")
	if err != nil || st.TotalKeys != 252 || st.Source != Origin {
		t.Fatalf("ledger: %+v %v", st, err)
	}

	// Other input, or the same with another batch size, under the same run: 409, as the CLI.
	for name, path := range map[string]string{
		"other keys": "/v1/runs/r1/keys" + q,
		"batch size": "/v1/runs/r1/keys" + q + "&batch_size=50",
		"actor type": "/v1/runs/r1/keys?erp_connection=3&actor_type=Person",
	} {
		in := body
		if name == "other keys" {
			in = "A0\nA1\nX\n" + keyLines("K", 250)
		}
		r := e.put(path, "text/plain", in)
		if r.code != http.StatusConflict {
			t.Errorf("%s: %d, want 409\n%s", name, r.code, r.body)
			continue
		}
		if msg := r.apiErr(t).Message; !strings.Contains(msg, "r1") {
			t.Errorf("%s: the refusal should name the run: %s", name, msg)
		}
	}
	if n := len(e.queued("r1")); n != 252 {
		t.Errorf("after the refusals %d keys are queued, want 252", n)
	}
}

func TestPutFormats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		name, query, ctype, body string
		want                     []string
	}{
		{"csv by name", "&csv_column=erp_key", "text/csv", "name,erp_key\nAda,P-1\n\"Bob, Jr.\",P-2\n", []string{"P-1", "P-2"}},
		{"csv by index with header", "&csv_column=1&csv_header=true", "text/csv", "name,erp_key\nAda,P-1\nBob,P-2\n", []string{"P-1", "P-2"}},
		{"csv with semicolons", "&csv_column=0&csv_delimiter=%3B", "text/csv", "P-1;x\nP-2;y\n", []string{"P-1", "P-2"}},
		{"ndjson", "", "application/x-ndjson", "{\"key\": \"N-1\"}\n\n{\"key\":\" N-2 \", \"name\": \"Ada\"}\n{\"key\": \"N-1\"}", []string{"N-1", "N-2"}},
		{"plain without a final line break", "", "text/plain", "L-1\nL-2", []string{"L-1", "L-2"}},
	}
	for i, tt := range tests {
		run := "fmt-" + strconv.Itoa(i)
		s := e.summary(e.put("/v1/runs/"+run+"/keys"+q+tt.query, tt.ctype, tt.body))
		if got := e.queued(run); !slices.Equal(got, tt.want) {
			t.Errorf("%s: queued %q, want %q (%+v)", tt.name, got, tt.want, s)
		}
	}
	// The NDJSON duplicate is reported with the body's own line numbers.
	s := e.summary(e.put("/v1/runs/fmt-3/keys"+q, "application/x-ndjson", tests[3].body))
	if len(s.Problems) != 1 || s.Problems[0].Line != 4 || s.Problems[0].Reason != "duplicate of line 1" {
		t.Errorf("ndjson duplicate: %+v", s.Problems)
	}
	e.noSpool()
}

func TestPutDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.summary(e.put("/v1/runs/dry/keys"+q+"&dry_run=true", "text/plain", "A\nB\nA\n"))
	if !s.DryRun || s.Keys != 2 || s.Batches != 1 || s.BatchesEnqueued != 0 {
		t.Fatalf("dry run: %+v", s)
	}
	e.noRun("dry")
}

// TestPutBadInput: every refusal is a JSON error naming the line or field and the reason,
// and a refused body enqueues nothing.
func TestPutBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, path, ctype, body string
		code                    int
		line                    int
		field                   string
		want                    string // in the message
	}{
		{"invalid key, strict by default", "/v1/runs/b1/keys" + q, "text/plain", "A\n" + long + "\nB\nC\x01D\n", 400, 2, "", "longer than 254 characters (300)"},
		{"malformed csv", "/v1/runs/b2/keys" + q + "&csv_column=0", "text/csv", "A\n\"B\nC\n", 400, 0, "", "line 3, column 3"},
		{"csv column not in the header", "/v1/runs/b3/keys" + q + "&csv_column=erp_key", "text/csv", "name,id\nAda,1\n", 400, 0, "", `"erp_key"`},
		{"csv without a column", "/v1/runs/b4/keys" + q, "text/csv", "A\n", 400, 0, "csv_column", "csv_column is required"},
		{"csv column on plain text", "/v1/runs/b5/keys" + q + "&csv_column=0", "text/plain", "A\n", 400, 0, "csv_column", "text/csv only"},
		{"bad delimiter", "/v1/runs/b6/keys" + q + "&csv_column=0&csv_delimiter=%22", "text/csv", "A\n", 400, 0, "", "delimiter"},
		{"ndjson not an object", "/v1/runs/b7/keys" + q, "application/x-ndjson", "{\"key\":\"A\"}\n\"B\"\n", 400, 2, "", "not a JSON object"},
		{"ndjson syntax", "/v1/runs/b8/keys" + q, "application/x-ndjson", "{\"key\":\"A\"}\n\n{\"key\": \"B\"\n", 400, 3, "", "invalid JSON"},
		{"ndjson without key", "/v1/runs/b9/keys" + q, "application/x-ndjson", "{\"id\":\"A\"}\n", 400, 1, "", `no "key" field`},
		{"ndjson number key", "/v1/runs/b10/keys" + q, "application/x-ndjson", "{\"key\":10042}\n", 400, 1, "", "not a string"},
		{"ndjson key with a line break", "/v1/runs/b11/keys" + q, "application/x-ndjson", "{\"key\":\"A\\nB\"}\n", 400, 1, "", "line break"},
		{"missing erp_connection", "/v1/runs/b12/keys?actor_type=Customer", "text/plain", "A\n", 400, 0, "erp_connection", "required"},
		{"bad erp_connection", "/v1/runs/b13/keys?erp_connection=three&actor_type=Customer", "text/plain", "A\n", 400, 0, "erp_connection", "positive whole number"},
		{"missing actor_type", "/v1/runs/b14/keys?erp_connection=3", "text/plain", "A\n", 400, 0, "actor_type", "Customer"},
		{"unknown actor_type", "/v1/runs/b15/keys?erp_connection=3&actor_type=Client", "text/plain", "A\n", 400, 0, "actor_type", "Customer"},
		{"batch size out of range", "/v1/runs/b16/keys" + q + "&batch_size=5000", "text/plain", "A\n", 400, 0, "", "batch size 5000"},
		{"misspelt parameter", "/v1/runs/b17/keys" + q + "&csv_colum=0", "text/plain", "A\n", 400, 0, "csv_colum", "unknown query parameter"},
		{"parameter twice", "/v1/runs/b18/keys" + q + "&erp_connection=4", "text/plain", "A\n", 400, 0, "erp_connection", "2 times"},
		{"bad boolean", "/v1/runs/b19/keys" + q + "&strict=yes", "text/plain", "A\n", 400, 0, "strict", "true or false"},
		{"bad run name", "/v1/runs/b%20c/keys" + q, "text/plain", "A\n", 400, 0, "run", "only letters, digits"},
		{"no content type", "/v1/runs/b21/keys" + q, "", "A\n", 415, 0, "", "want text/plain"},
		{"unknown content type", "/v1/runs/b22/keys" + q, "application/xml", "<k>A</k>", 415, 0, "", "application/xml"},
		{"not utf-8", "/v1/runs/b23/keys" + q, "text/plain; charset=iso-8859-1", "A\n", 415, 0, "", "UTF-8"},
	}
	for _, tt := range tests {
		r := e.put(tt.path, tt.ctype, tt.body)
		if r.code != tt.code {
			t.Errorf("%s: %d, want %d\n%s", tt.name, r.code, tt.code, r.body)
			continue
		}
		ae := r.apiErr(t)
		if ae.Line != tt.line || ae.Field != tt.field || !strings.Contains(ae.Message, tt.want) {
			t.Errorf("%s: got line %d field %q %q; want line %d field %q and %q", tt.name, ae.Line, ae.Field, ae.Message, tt.line, tt.field, tt.want)
		}
	}
	for i := 1; i <= 23; i++ {
		if i != 2 { // malformed CSV after a full batch would keep it; here the first line is all
			e.noRun("b" + strconv.Itoa(i))
		}
	}
	// Strict mode lists every invalid line, not only the first.
	r := e.put("/v1/runs/b1/keys"+q, "text/plain", "A\n"+long+"\nB\nC\x01D\n")
	ae := r.apiErr(t)
	if len(ae.Problems) != 2 || ae.Problems[0].Line != 2 || ae.Problems[1].Line != 4 || !strings.Contains(ae.Problems[1].Reason, "U+0001") {
		t.Errorf("problems: %+v", ae.Problems)
	}
	// strict=false: the CLI's default, skip and report.
	s := e.summary(e.put("/v1/runs/b1/keys"+q+"&strict=false", "text/plain", "A\n"+long+"\nB\nC\x01D\n"))
	if s.Invalid != 2 || s.Keys != 2 || len(s.Problems) != 2 {
		t.Errorf("strict=false: %+v", s)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for name, header := range map[string]string{
		"none":        "",
		"wrong token": "Bearer not-the-token",
		"basic auth":  "Basic dXNlcjpwYXNz",
		"prefix only": "Bearer " + token[:5],
		"empty":       "Bearer ",
	} {
		for _, path := range []string{"/v1/runs", "/v1/runs/x", "/v1/nothing-here"} {
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			<-e.done
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s on %s: %d %q, want 401 with WWW-Authenticate", name, path, resp.StatusCode, b)
			}
			e.checkDoc(req, reply{code: resp.StatusCode, header: resp.Header, body: b})
		}
	}
	// A PUT without a token is refused before its body is read.
	r := e.do(http.MethodPut, "/v1/runs/noauth/keys"+q, "text/plain", "", strings.NewReader("A\n"))
	if r.code != http.StatusUnauthorized {
		t.Errorf("PUT without token: %d", r.code)
	}
	e.noRun("noauth")
	for _, tok := range []string{token, otherToken} {
		if r := e.do(http.MethodGet, "/v1/runs", "", tok, nil); r.code != http.StatusOK {
			t.Errorf("token %d: %d %s", len(tok), r.code, r.body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/runs", nil)
	req.Header.Set("Authorization", "bearer "+token) // the scheme is case-insensitive
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-e.done
	if resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case scheme: %d", resp.StatusCode)
	}
	if r := e.do(http.MethodGet, "/v1/openapi.json", "", "", nil); r.code != http.StatusOK {
		t.Errorf("the OpenAPI document needs no token: %d", r.code)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "no valid token") {
		t.Errorf("refusals are not logged:\n%s", logs)
	}
	for _, secret := range []string{token, otherToken, "not-the-token", "dXNlcjpwYXNz", token[:5]} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a token %q:\n%s", secret, logs)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for name, cfg := range map[string]Config{
		"no redis":    {Tokens: []string{token}},
		"no tokens":   {Redis: e.rdb},
		"short token": {Redis: e.rdb, Tokens: []string{token, "s3cret"}},
		"blank token": {Redis: e.rdb, Tokens: []string{token, strings.Repeat(" ", 20)}},
		"padded":      {Redis: e.rdb, Tokens: []string{" " + token}},
		"negative":    {Redis: e.rdb, Tokens: []string{token}, MaxBody: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestBodyCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxBody = 1000 })
	body := keyLines("K", 300) // 1390 bytes
	// Announced by Content-Length: refused before the body is read.
	r := e.put("/v1/runs/big/keys"+q, "text/plain", body)
	if r.code != http.StatusRequestEntityTooLarge || !strings.Contains(r.apiErr(t).Message, "1000 bytes") {
		t.Fatalf("over the cap: %d %s", r.code, r.body)
	}
	// Chunked, so found while spooling: refused too, and nothing enqueued.
	r = e.do(http.MethodPut, "/v1/runs/big/keys"+q, "text/plain", token, io.MultiReader(strings.NewReader(body)))
	if r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked over the cap: %d %s", r.code, r.body)
	}
	r = e.do(http.MethodPut, "/v1/runs/big/keys"+q, "application/x-ndjson", token, io.MultiReader(strings.NewReader(strings.Repeat("{\"key\":\"A\"}\n", 100))))
	if r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("ndjson over the cap: %d %s", r.code, r.body)
	}
	e.noRun("big")
	// Just under the cap is fine.
	e.summary(e.put("/v1/runs/big/keys"+q, "text/plain", keyLines("K", 200))) // 890 bytes

	r = e.do(http.MethodPost, "/v1/keys", "application/json", token, strings.NewReader(`{"erp_connection":3,"actor_type":"Customer","keys":["`+strings.Repeat("k", int(MaxTrickleBody))+`"]}`))
	if r.code != http.StatusRequestEntityTooLarge || !strings.Contains(r.apiErr(t).Message, "nothing was enqueued: send many keys with PUT /v1/runs/{run}/keys") {
		t.Fatalf("trickle over the cap: %d %.300s", r.code, r.body)
	}
}

// TestCutOffBody: a client that stops in the middle of its body enqueues nothing, not
// even the batches its first part holds; sending the body again completes the run.
func TestCutOffBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body := keyLines("C", 1000)
	for _, chunked := range []bool{false, true} {
		run := "cut-" + strconv.FormatBool(chunked)
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		head := fmt.Sprintf("PUT /v1/runs/%s/keys%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/plain\r\n", run, q, token)
		part := body[:len(body)*2/3] // six full batches of 100
		if chunked {
			head += "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(part), part)
		} else {
			head += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), part)
		}
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		select {
		case <-e.done:
		case <-time.After(time.Minute):
			t.Fatal("the API did not finish the cut-off request")
		}
		e.noRun(run)
		s := e.summary(e.put("/v1/runs/"+run+"/keys"+q, "text/plain", body))
		if s.Keys != 1000 || s.BatchesEnqueued != 10 {
			t.Fatalf("resent after the cut: %+v", s)
		}
		if n := len(e.queued(run)); n != 1000 {
			t.Fatalf("%d keys queued, want 1000", n)
		}
	}
	if !strings.Contains(e.logs.String(), "reading the request body") {
		t.Errorf("the cut-off is not logged:\n%s", e.logs.String())
	}
}

func TestTrickle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	post := func(body string) reply {
		t.Helper()
		return e.do(http.MethodPost, "/v1/keys", "application/json", token, strings.NewReader(body))
	}
	r := post(`{"erp_connection": 3, "actor_type": "Customer", "keys": ["10042", "10043"]}`)
	if r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var got struct {
		Keys              int
		Run, Group, Queue string
	}
	r.decode(t, &got)
	if got.Keys != 2 || got.Group != tasks.GroupName(3, 1) || got.Queue != tasks.TrickleQueue || got.Run != tasks.TrickleRun(time.Now(), 3, 1) {
		t.Fatalf("answer %+v", got)
	}
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	aggregating := func() int {
		info, err := insp.GetQueueInfo(tasks.TrickleQueue)
		if err != nil {
			t.Fatal(err)
		}
		return info.Aggregating
	}
	if n := aggregating(); n != 2 {
		t.Fatalf("%d trickle tasks waiting, want 2", n)
	}
	tests := []struct {
		name, ctype, body string
		code              int
		field, want       string
	}{
		{"invalid key", "application/json", `{"erp_connection": 3, "actor_type": "Customer", "keys": ["ok", "bad\u0001"]}`, 400, "keys[1]", "U+0001"},
		{"empty key", "application/json", `{"erp_connection": 3, "actor_type": "Customer", "keys": ["ok", ""]}`, 400, "keys[1]", "empty"},
		{"no keys", "application/json", `{"erp_connection": 3, "actor_type": "Customer", "keys": []}`, 400, "keys", "at least one"},
		{"no connection", "application/json", `{"actor_type": "Customer", "keys": ["a"]}`, 400, "erp_connection", "required"},
		{"bad connection", "application/json", `{"erp_connection": -2, "actor_type": "Customer", "keys": ["a"]}`, 400, "erp_connection", "positive"},
		{"bad actor", "application/json", `{"erp_connection": 3, "actor_type": "Kunde", "keys": ["a"]}`, 400, "actor_type", "Customer"},
		{"unknown field", "application/json", `{"erp_connection": 3, "actor_type": "Customer", "key": "a"}`, 400, "key", `member "key": unknown`},
		{"not json", "application/json", `erp_connection=3`, 400, "", "invalid character"},
		{"two objects", "application/json", `{"erp_connection": 3, "actor_type": "Customer", "keys": ["a"]} {}`, 400, "", "one object"},
		{"form", "application/x-www-form-urlencoded", `erp_connection=3`, 415, "", "application/json"},
	}
	for _, tt := range tests {
		r := post(tt.body)
		if tt.ctype != "application/json" {
			r = e.do(http.MethodPost, "/v1/keys", tt.ctype, token, strings.NewReader(tt.body))
		}
		if r.code != tt.code {
			t.Errorf("%s: %d, want %d\n%s", tt.name, r.code, tt.code, r.body)
			continue
		}
		if ae := r.apiErr(t); ae.Field != tt.field || !strings.Contains(ae.Message, tt.want) {
			t.Errorf("%s: field %q %q; want %q and %q", tt.name, ae.Field, ae.Message, tt.field, tt.want)
		}
	}
	if n := aggregating(); n != 2 {
		t.Errorf("refused requests enqueued keys: %d waiting, want 2", n)
	}
}

func TestRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(time.Hour) } })
	e.summary(e.put("/v1/runs/older/keys"+q, "text/plain", "A\nB\n"))
	e.summary(e.put("/v1/runs/newer/keys?erp_connection=4&actor_type=Person", "text/plain", keyLines("P", 150)))

	r := e.do(http.MethodGet, "/v1/runs/newer", "", token, nil)
	var st runreport.RunReport
	r.decode(t, &st)
	if r.code != 200 || st.Run != "newer" || st.State != ledger.RunActive || st.TotalKeys != 150 || st.PendingKeys != 150 ||
		st.ErpConnectionID != 4 || st.ActorType != "Person" || st.Source != Origin || st.Batches != 2 || len(st.Records) != 3 {
		t.Fatalf("GET /v1/runs/newer: %d %+v", r.code, st)
	}
	// The same report as `enqueue status --json` builds from the ledger.
	ls, _ := ledger.NewLedger(e.rdb).Status(t.Context(), "newer")
	want := runreport.NewRunReport(ls, *st.StartedAt) // rate and ETA aside
	st.KeysPerSecond, st.ETASeconds, want.ETASeconds = 0, nil, nil
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Errorf("report %+v\nwant   %+v", st, want)
	}

	var list []runreport.RunReport
	r = e.do(http.MethodGet, "/v1/runs", "", token, nil)
	r.decode(t, &list)
	if len(list) != 2 {
		t.Fatalf("GET /v1/runs: %s", r.body)
	}
	r = e.do(http.MethodGet, "/v1/runs?limit=1", "", token, nil)
	r.decode(t, &list)
	if len(list) != 1 {
		t.Errorf("limit=1: %d runs", len(list))
	}
	r = e.do(http.MethodGet, "/v1/runs/older/dead", "", token, nil)
	if r.code != 200 || strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("dead letters of a run without: %d %s", r.code, r.body)
	}

	for _, tt := range []struct {
		path  string
		code  int
		field string
	}{
		{"/v1/runs/nope", 404, "run"},
		{"/v1/runs/nope/dead", 404, "run"},
		{"/v1/runs/a%20b", 400, "run"},
		{"/v1/runs?limit=0", 400, "limit"},
		{"/v1/runs?limit=x", 400, "limit"},
		{"/v1/runs?page=2", 400, "page"},
		{"/v1/runs/older?verbose=1", 400, "verbose"},
	} {
		r := e.do(http.MethodGet, tt.path, "", token, nil)
		if r.code != tt.code || r.apiErr(t).Field != tt.field {
			t.Errorf("GET %s: %d %s; want %d naming %s", tt.path, r.code, r.body, tt.code, tt.field)
		}
	}
	if r := e.do(http.MethodGet, "/v1/nothing", "", token, nil); r.code != 404 || !strings.Contains(r.apiErr(t).Message, "openapi.json") {
		t.Errorf("unknown route: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodDelete, "/v1/runs/older", "", token, nil); r.code != 405 || !strings.Contains(r.apiErr(t).Message, "GET") {
		t.Errorf("DELETE: %d %s", r.code, r.body)
	}
}

// TestRetryingBatches: a run's held batches show in its report as in the CLI's.
func TestRetryingBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.summary(e.put("/v1/runs/held/keys"+q, "text/plain", "A\nB\n"))
	// Move the batch to the retry set as a failed attempt would.
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	id := tasks.BatchID("held", 0)
	srvCtx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := asynq.NewServerFromRedisClient(e.rdb, asynq.Config{Concurrency: 1, Queues: map[string]int{tasks.DefaultQueue: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour }, LogLevel: asynq.FatalLevel})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return fmt.Errorf("SuperOffice is down") })); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	testwait.For(t, "the batch in the retry set", 30*time.Second, func() (bool, error) {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, id)
		if err == nil && info.State == asynq.TaskStateRetry {
			return true, nil
		}
		if srvCtx.Err() != nil {
			t.Fatalf("the batch did not reach the retry set: %+v %v", info, err)
		}
		return false, fmt.Errorf("%+v %v", info, err)
	})
	srv.Shutdown()
	var st runreport.RunReport
	e.do(http.MethodGet, "/v1/runs/held", "", token, nil).decode(t, &st)
	if st.RetryingBatches != 1 || st.RetryReason != "SuperOffice is down" {
		t.Errorf("report: %+v", st)
	}
	// Both keys wait on the one retry, due in an hour: so is the ETA, and the report says so.
	if st.RetryingKeys != 2 || st.NextRetryAt == nil || st.ETASeconds == nil || *st.ETASeconds < 3500 ||
		!strings.HasPrefix(st.Waiting, "1 batch retries at ") || st.AuthHeldBatches != 0 {
		t.Errorf("report: %+v", st)
	}
}

// TestLargeLine: an NDJSON line longer than the reader's buffer is read whole, and one
// over the line cap is refused naming it.
func TestLargeLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	pad := strings.Repeat(" ", 100<<10)
	s := e.summary(e.put("/v1/runs/wide/keys"+q, "application/x-ndjson", "{\"key\":\"A\",\"pad\":\""+pad+"\"}\n{\"key\":\"B\"}\n"))
	if s.Keys != 2 {
		t.Errorf("%+v", s)
	}
	r := e.put("/v1/runs/wider/keys"+q, "application/x-ndjson", "{\"key\":\"A\"}\n{\"key\":\"B\",\"pad\":\""+strings.Repeat(pad, 11)+"\"}\n")
	if ae := r.apiErr(t); r.code != 400 || ae.Line != 2 || !strings.Contains(ae.Reason, "1 MiB") {
		t.Errorf("%d %+v", r.code, ae)
	}
	e.noRun("wider")
}

// TestStreamsFromReader: the body is read as it arrives (a pipe that is written only
// while the server reads), not buffered by the client.
func TestStreamsFromReader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		for i := range 20000 {
			fmt.Fprintf(w, "{\"key\": \"S%d\"}\n", i)
		}
		w.Flush()
		pw.Close()
	}()
	s := e.summary(e.do(http.MethodPut, "/v1/runs/stream/keys"+q, "application/x-ndjson", token, pr))
	if s.Keys != 20000 || s.BatchesEnqueued != 200 {
		t.Fatalf("%+v", s)
	}
}

// TestSameAnswerAsTheCLI: the API's summary is the one intake gives `enqueue --file -` for
// the same input: the same counts, problems, lines and reasons.
func TestSameAnswerAsTheCLI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body := "A\n\nB\r\nA\n" + strings.Repeat("x", 255) + "\n\uFEFFC\n C \nD\x7f\nE\x00\n" + keyLines("K", 120)
	r := e.put("/v1/runs/same-http/keys"+q+"&strict=false", "text/plain", body)
	p, err := intake.NewProducer(intake.ProducerConfig{Redis: e.rdb, TempDir: e.tmp})
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.Submit(t.Context(), intake.RunSpec{Run: "same-cli", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, Origin: "cli"},
		intake.Source{Name: "body", R: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	want.Run, want.Elapsed = "same-http", 0
	var got intake.Summary
	r.decode(t, &got)
	got.Elapsed = 0
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(got)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("API:\n%s\nintake (the CLI):\n%s", gotJSON, wantJSON)
	}
	if !slices.Equal(e.queued("same-http"), e.queued("same-cli")) {
		t.Error("the API queued other batches than the CLI")
	}
}

// TestRedisDown: with Redis unreachable the API answers 500 with a JSON error saying to
// send the request again, and leaves no spooled body behind.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	tmp := t.TempDir()
	api, err := New(Config{Redis: rdb, Tokens: []string{token}, TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, path, ctype, body string }{
		{http.MethodPut, "/v1/runs/down/keys" + q, "text/plain", "A\nB\n"},
		{http.MethodPost, "/v1/keys", "application/json", `{"erp_connection": 3, "actor_type": "Customer", "keys": ["A"]}`},
		{http.MethodGet, "/v1/runs", "", ""},
		{http.MethodGet, "/v1/runs/down", "", ""},
	} {
		req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
		req.Header.Set("Authorization", "Bearer "+token)
		if tt.ctype != "" {
			req.Header.Set("Content-Type", tt.ctype)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		var e apiError
		if rec.Code != http.StatusInternalServerError || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Message == "" {
			t.Errorf("%s %s: %d %s", tt.method, tt.path, rec.Code, rec.Body)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("spooled bodies left: %v", left)
	}
}

// TestMaxSubmissions: a whole body that finds every submission slot taken for SlotWait is
// answered 503 with Retry-After, enqueues nothing and leaves no spool; once a slot is free
// it goes through.
func TestMaxSubmissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxSubmissions = 2; c.SlotWait = 50 * time.Millisecond })
	for range cap(e.api.slots) { // two submissions being enqueued
		e.api.slots <- struct{}{}
	}
	r := e.put("/v1/runs/second/keys"+q, "text/plain", "A\n")
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.apiErr(t).Message, "INTAKE_SLOT_WAIT") {
		t.Fatalf("a submission over the limit: %d %q %s", r.code, r.header.Get("Retry-After"), r.body)
	}
	e.noRun("second")
	<-e.api.slots
	e.summary(e.put("/v1/runs/second/keys"+q, "text/plain", "A\n"))
}
