package intakeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/tasks"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

const (
	token      = "t0ken-for-the-erp-job"
	otherToken = "the-second-t0ken-of-another-job"
)

// env is an API on a private Redis behind an httptest.Server. done receives after every
// request the API finished serving (also one whose client went away).
type env struct {
	t      *testing.T
	rdb    *redis.Client
	api    *API
	srv    *httptest.Server
	tmp    string
	logs   *e2etest.LockedBuffer
	done   chan struct{}
	router routers.Router
}

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	db := redistest.New(t)
	e := &env{t: t, rdb: db.Client(), tmp: t.TempDir(), logs: &e2etest.LockedBuffer{}, done: make(chan struct{}, 16)}
	t.Cleanup(func() { e.rdb.Close() })
	cfg := Config{Redis: e.rdb, Tokens: []string{token, otherToken}, TempDir: e.tmp,
		Logger: zerolog.New(io.MultiWriter(e.logs, zerolog.NewTestWriter(t)))}
	if mutate != nil {
		mutate(&cfg)
	}
	var err error
	if e.api, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { e.done <- struct{}{} }()
		e.api.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: e.srv.URL}}
	if e.router, err = gorillamux.NewRouter(doc); err != nil {
		t.Fatal(err)
	}
	return e
}

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPIDoc)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// reply is a response with its body read.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not the JSON expected: %v\n%s", r.code, err, r.body)
	}
}

func (r reply) apiErr(t *testing.T) apiError {
	t.Helper()
	var e apiError
	r.decode(t, &e)
	if e.Message == "" {
		t.Fatalf("error answer %d without a message: %s", r.code, r.body)
	}
	return e
}

// do sends a request with the token (tok "" for none) and checks the answer against the
// OpenAPI document: a documented status, a body of the documented schema.
func (e *env) do(method, path, ctype, tok string, body io.Reader) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	<-e.done
	r := reply{code: resp.StatusCode, header: resp.Header, body: b}
	if resp.Header.Get("Content-Type") != "application/json" {
		e.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, resp.Header.Get("Content-Type"))
	}
	e.checkDoc(req, r)
	return r
}

func (e *env) checkDoc(req *http.Request, r reply) {
	e.t.Helper()
	route, params, err := e.router.FindRoute(req)
	if err != nil {
		if r.code != http.StatusNotFound && r.code != http.StatusMethodNotAllowed && r.code != http.StatusUnauthorized {
			e.t.Errorf("%s %s answered %d but is not in openapi.json: %v", req.Method, req.URL.Path, r.code, err)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: r.code, Header: r.header, Body: io.NopCloser(bytes.NewReader(r.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		e.t.Errorf("%s %s: the answer %d does not match openapi.json: %v\n%s", req.Method, req.URL.Path, r.code, err, r.body)
	}
}

func (e *env) put(path, ctype, body string) reply {
	e.t.Helper()
	return e.do(http.MethodPut, path, ctype, token, strings.NewReader(body))
}

func (e *env) summary(r reply) intake.Summary {
	e.t.Helper()
	if r.code != http.StatusOK {
		e.t.Fatalf("answer %d, want 200:\n%s", r.code, r.body)
	}
	var s intake.Summary
	r.decode(e.t, &s)
	return s
}

// queued reads the keys of every batch the run has in the queue, in order.
func (e *env) queued(run string) []string {
	e.t.Helper()
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	var keys []string
	for seq := 0; ; seq++ {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, tasks.BatchID(run, seq))
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			return keys
		}
		if err != nil {
			e.t.Fatal(err)
		}
		b, err := tasks.ParseBatch(info.Payload)
		if err != nil {
			e.t.Fatal(err)
		}
		keys = append(keys, b.Keys...)
	}
}

// noRun checks that the ledger and the queue know nothing of run, and that no spooled
// body was left behind.
func (e *env) noRun(run string) {
	e.t.Helper()
	e.noEnqueued(run)
	e.noSpool()
}

// noEnqueued checks that the ledger and the queue know nothing of run.
func (e *env) noEnqueued(run string) {
	e.t.Helper()
	if _, err := ledger.NewLedger(e.rdb).Status(context.Background(), run); !errors.Is(err, ledger.ErrRunNotFound) {
		e.t.Errorf("run %s is in the ledger (%v); want nothing enqueued", run, err)
	}
	if k := e.queued(run); len(k) > 0 {
		e.t.Errorf("run %s has %d keys queued; want none", run, len(k))
	}
}

func (e *env) noSpool() {
	e.t.Helper()
	left, _ := os.ReadDir(e.tmp)
	if len(left) > 0 {
		e.t.Errorf("spooled bodies left in %s: %v", e.tmp, left)
	}
}
