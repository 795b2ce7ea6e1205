package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/redistest"
)

const (
	dashQueue = "dash"
	dashGroup = "g1"
	dashUser  = "ops"
	dashPass  = "dash-Pass-31e9"
)

// TestDashboardReadOnlyAndAuth serves the dashboard as the worker wires it
// (newHTTPHandler) over HTTP, on a queue holding a task in every state asynq has, and
// sends every mutating route asynqmon registers — read from asynqmon's own source, so a
// route added by an upgrade is covered too — with the right credentials: each is refused
// and nothing changes. Wrong credentials are refused on every route, in read-write mode
// too. In read-write mode every route sent by a browser from another site (Origin and
// Sec-Fetch-Site of evil.example) with the right credentials, as a browser sends its stored
// login, is refused with 403 and changes nothing. The read-write dashboard does carry out a
// same-origin call and one from a trusted origin, which shows the requests reach the API.
func TestDashboardReadOnlyAndAuth(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ids := dashboardFixture(t, db)
	routes := asynqmonMutatingRoutes(t)

	rdb := db.TestClient(t)
	// The sweep below sends hundreds of wrong logins from one address: no lockout here
	// (TestDashboardLoginThrottle covers it).
	patient := func() *loginGuard { g := newLoginGuard(zerolog.Nop()); g.free = 1 << 30; return g }
	ro, closeRO := newHTTPHandler(httpConfig{RedisOpt: db.Opt(), Redis: rdb, DashboardUser: dashUser, DashboardPass: dashPass, ReadOnly: true, Logins: patient()})
	t.Cleanup(closeRO)
	roSrv := httptest.NewServer(ro)
	t.Cleanup(roSrv.Close)
	trusted, err := parseTrustedOrigins(" https://ops.example.com ,")
	if err != nil {
		t.Fatal(err)
	}
	rw, closeRW := newHTTPHandler(httpConfig{RedisOpt: db.Opt(), Redis: rdb, DashboardUser: dashUser, DashboardPass: dashPass, ReadOnly: false, Logins: patient(), CrossOrigin: trusted})
	t.Cleanup(closeRW)
	rwSrv := httptest.NewServer(rw)
	t.Cleanup(rwSrv.Close)

	insp := asynq.NewInspector(db.Opt())
	t.Cleanup(func() { insp.Close() })
	before := dashboardState(t, insp)

	for _, rt := range routes {
		path := rt.fill(ids)
		if code, body := dashCall(t, roSrv.URL, rt.method, path, dashUser, dashPass); code != http.StatusMethodNotAllowed {
			t.Errorf("read-only %s %s: %d %.120s, want 405", rt.method, path, code, body)
		}
		for _, h := range []map[string]string{
			{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
			{"Origin": "http://evil.example"}, // a browser without Sec-Fetch-Site
			{"Sec-Fetch-Site": "same-site"},   // a sibling subdomain
		} {
			if code, body := dashCall(t, rwSrv.URL, rt.method, path, dashUser, dashPass, h); code != http.StatusForbidden {
				t.Errorf("read-write %s %s from another site %v: %d %.120s, want 403", rt.method, path, h, code, body)
			}
		}
		for _, cred := range [][2]string{{"", ""}, {dashUser, "wrong"}, {"root", dashPass}, {strings.ToUpper(dashUser), dashPass}, {dashUser, dashPass + " "}, {dashUser, ""}} {
			for _, base := range []string{roSrv.URL, rwSrv.URL} {
				if code, _ := dashCall(t, base, rt.method, path, cred[0], cred[1]); code != http.StatusUnauthorized {
					t.Errorf("%s %s as %q/%q: %d, want 401", rt.method, path, cred[0], cred[1], code)
				}
			}
		}
	}
	for _, path := range []string{"/monitoring/", "/monitoring/api/queues", "/monitoring/api/queues/" + dashQueue + "/archived_tasks"} {
		if code, _ := dashCall(t, roSrv.URL, "GET", path, dashUser, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong password: %d, want 401", path, code)
		}
		if code, _ := dashCall(t, roSrv.URL, "GET", path, dashUser, dashPass); code != http.StatusOK {
			t.Errorf("GET %s on the read-only dashboard: %d, want 200", path, code)
		}
	}
	if after := dashboardState(t, insp); !reflect.DeepEqual(after, before) {
		t.Fatalf("the refused calls changed the queue:\nbefore %+v\nafter  %+v", before, after)
	}

	// The controls: the read-write dashboard with the right credentials resumes the queue
	// when the dashboard's own page asks (as a browser sends it, and as curl does, with
	// neither header), and pauses it when a trusted origin's page asks.
	for _, h := range []map[string]string{{"Origin": rwSrv.URL, "Sec-Fetch-Site": "same-origin"}, nil} {
		if code, body := dashCall(t, rwSrv.URL, "POST", "/monitoring/api/queues/"+dashQueue+":resume", dashUser, dashPass, h); code >= 300 {
			t.Fatalf("read-write resume %v: %d %s", h, code, body)
		}
		if st := dashboardState(t, insp); st.Paused {
			t.Fatalf("read-write resume %v was accepted but the queue is still paused: the test does not reach the API", h)
		}
		if err := insp.PauseQueue(dashQueue); err != nil {
			t.Fatal(err)
		}
	}
	if err := insp.UnpauseQueue(dashQueue); err != nil {
		t.Fatal(err)
	}
	if code, body := dashCall(t, rwSrv.URL, "POST", "/monitoring/api/queues/"+dashQueue+":pause", dashUser, dashPass,
		map[string]string{"Origin": "https://ops.example.com", "Sec-Fetch-Site": "cross-site"}); code >= 300 {
		t.Fatalf("read-write pause from the trusted origin: %d %s", code, body)
	}
	if st := dashboardState(t, insp); !st.Paused {
		t.Error("the pause from the trusted origin was accepted but the queue is not paused")
	}
	t.Logf("%d mutating routes refused in read-only mode and from other sites, each also refused with 6 kinds of wrong credentials", len(routes))
}

// route is one asynqmon API route.
type route struct{ method, path string }

// fill substitutes the fixture's queue, group and a task id of the route's state.
func (r route) fill(ids map[string]string) string {
	p := strings.NewReplacer("{qname}", dashQueue, "{gname}", dashGroup).Replace(r.path)
	if strings.Contains(p, "{task_id}") {
		state := strings.Split(strings.TrimPrefix(p, "/queues/"+dashQueue+"/"), "/")[0]
		if state == "groups" {
			state = "aggregating_tasks"
		}
		p = strings.Replace(p, "{task_id}", ids[strings.TrimSuffix(state, "_tasks")], 1)
	}
	p = strings.Replace(p, "{entry_id}", "none", 1)
	return "/monitoring/api" + p
}

var asynqmonRoute = regexp.MustCompile(`api\.HandleFunc\("([^"]+)",[^\n]*\.Methods\("([A-Z]+)"\)`)

// asynqmonMutatingRoutes reads the non-GET routes from the asynqmon module's handler.go.
func asynqmonMutatingRoutes(t *testing.T) []route {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/hibiken/asynqmon").Output()
	if err != nil {
		t.Fatalf("go list asynqmon: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "handler.go"))
	if err != nil {
		t.Fatal(err)
	}
	var routes []route
	for _, m := range asynqmonRoute.FindAllStringSubmatch(string(src), -1) {
		if m[2] != "GET" {
			routes = append(routes, route{method: m[2], path: m[1]})
		}
	}
	if len(routes) < 40 {
		t.Fatalf("found %d mutating routes in asynqmon's handler.go, expected about 50: has its source changed shape?", len(routes))
	}
	return routes
}

// dashCall sends one request; headers, when given, are set on it (Origin, Sec-Fetch-Site).
func dashCall(t *testing.T, base, method, path, user, pass string, headers ...map[string]string) (int, string) {
	t.Helper()
	var body io.Reader
	if strings.Contains(path, ":batch_") {
		body = strings.NewReader(`{"task_ids":["x"]}`)
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		for k, v := range h {
			req.Header.Set(k, v)
		}
	}
	return send(t, req)
}

// queueState is what a mutating call could change.
type queueState struct {
	Paused bool
	Tasks  map[string][]string // state → task ids, sorted
}

func dashboardState(t *testing.T, insp *asynq.Inspector) queueState {
	t.Helper()
	qi, err := insp.GetQueueInfo(dashQueue)
	if err != nil {
		t.Fatal(err)
	}
	st := queueState{Paused: qi.Paused, Tasks: map[string][]string{}}
	lists := map[string]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		"active": insp.ListActiveTasks, "pending": insp.ListPendingTasks, "scheduled": insp.ListScheduledTasks,
		"retry": insp.ListRetryTasks, "archived": insp.ListArchivedTasks, "completed": insp.ListCompletedTasks,
	}
	for state, list := range lists {
		infos, err := list(dashQueue)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range infos {
			st.Tasks[state] = append(st.Tasks[state], ti.ID)
		}
		slices.Sort(st.Tasks[state])
	}
	agg, err := insp.ListAggregatingTasks(dashQueue, dashGroup)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range agg {
		st.Tasks["aggregating"] = append(st.Tasks["aggregating"], ti.ID)
	}
	return st
}

// dashboardFixture puts a task in every state on dashQueue and returns an id per state:
// an asynq server (its own, on this test's database) keeps one task active, has completed
// one and failed one into the retry set; the rest are enqueued and archived directly.
func dashboardFixture(t *testing.T, db *redistest.DB) map[string]string {
	t.Helper()
	client := asynq.NewClient(db.Opt())
	t.Cleanup(func() { client.Close() })
	release := make(chan struct{})
	srv := asynq.NewServer(db.Opt(), asynq.Config{
		Concurrency: 2, Queues: map[string]int{dashQueue: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("ok", func(context.Context, *asynq.Task) error { return nil })
	mux.HandleFunc("fail", func(context.Context, *asynq.Task) error { return errors.New("fails on purpose") })
	mux.HandleFunc("block", func(ctx context.Context, _ *asynq.Task) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); srv.Shutdown() })

	enq := func(typ string, opts ...asynq.Option) string {
		info, err := client.Enqueue(asynq.NewTask(typ, []byte(`{"k":"v"}`)), append([]asynq.Option{asynq.Queue(dashQueue)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	ids := map[string]string{
		"completed": enq("ok", asynq.Retention(time.Hour)),
		"retry":     enq("fail", asynq.MaxRetry(3)),
		"active":    enq("block"),
	}
	insp := asynq.NewInspector(db.Opt())
	t.Cleanup(func() { insp.Close() })
	waitFor(t, 30*time.Second, func() (bool, string) {
		qi, err := insp.GetQueueInfo(dashQueue)
		if err != nil {
			return false, err.Error()
		}
		return qi.Active == 1 && qi.Completed == 1 && qi.Retry == 1, fmt.Sprintf("%+v", qi)
	})
	// Nothing more may be picked up: pause the server's queue before adding pending tasks.
	if err := insp.PauseQueue(dashQueue); err != nil {
		t.Fatal(err)
	}
	ids["pending"] = enq("ok")
	ids["scheduled"] = enq("ok", asynq.ProcessIn(time.Hour))
	ids["archived"] = enq("ok")
	if err := insp.ArchiveTask(dashQueue, ids["archived"]); err != nil {
		t.Fatal(err)
	}
	ids["aggregating"] = enq("ok", asynq.Group(dashGroup))
	return ids // the queue stays paused: nothing moves unless a call moves it
}
