package intakeapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
	"github.com/hibiken/asynq"
)

const (
	tokenA = "tenant-a-t0ken-0123456789"
	tokenB = "tenant-b-t0ken-0123456789"
)

// newTenantEnv is newEnv with tenants A and B besides the implicit one (token, otherToken).
func newTenantEnv(t *testing.T) *env {
	t.Helper()
	return newEnv(t, func(c *Config) {
		c.Tenants = []Tenant{{ID: "A", Tokens: []string{tokenA}}, {ID: "B", Tokens: []string{tokenB}}}
	})
}

// runNames lists the runs GET path answers with tok.
func (e *env) runNames(path, tok string) []string {
	e.t.Helper()
	r := e.do(http.MethodGet, path, "", tok, nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, r.code, r.body)
	}
	var list []struct {
		Run        string `json:"run"`
		TotalKeys  int64  `json:"total_keys"`
		PendingKey int64  `json:"pending_keys"`
	}
	r.decode(e.t, &list)
	var names []string
	for _, st := range list {
		names = append(names, st.Run)
	}
	return names
}

// TestTenantTokensScoped: a token speaks for its own tenant only. No token or an unknown one
// is 401 on every route; a known token on another tenant's routes is 403, worded alike
// whether that tenant exists or not, and nothing is enqueued.
func TestTenantTokensScoped(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t)
	for _, c := range []struct {
		path, tok string
		want      int
	}{
		{"/v1/tenants/A/runs", tokenA, http.StatusOK},
		{"/v1/tenants/B/runs", tokenB, http.StatusOK},
		{"/v1/runs", token, http.StatusOK},
		{"/v1/tenants/B/runs", tokenA, http.StatusForbidden},
		{"/v1/tenants/A/runs/x", tokenB, http.StatusForbidden},
		{"/v1/tenants/A/runs/x/dead", token, http.StatusForbidden}, // the implicit tenant's token
		{"/v1/tenants/Nobody/runs", tokenA, http.StatusForbidden},  // a tenant that does not exist
		{"/v1/runs", tokenA, http.StatusForbidden},                 // a tenant's token on the old routes
		{"/v1/runs/x", tokenB, http.StatusForbidden},               //
		{"/v1/tenants/A/runs", "", http.StatusUnauthorized},        // no token
		{"/v1/tenants/A/runs", "not-a-token-of-anyone", http.StatusUnauthorized},
		{"/v1/tenants/Nobody/runs", "not-a-token-of-anyone", http.StatusUnauthorized},
	} {
		r := e.do(http.MethodGet, c.path, "", c.tok, nil)
		if r.code != c.want {
			t.Errorf("GET %s with %q: %d %s, want %d", c.path, c.tok, r.code, r.body, c.want)
		}
	}
	// The 403 of a tenant that exists and of one that does not read alike.
	msg := func(tenant string) string {
		return strings.ReplaceAll(e.do(http.MethodGet, "/v1/tenants/"+tenant+"/runs", "", tokenA, nil).apiErr(t).Message, tenant, "X")
	}
	if b, n := msg("B"), msg("Nobody"); b != n {
		t.Errorf("403 of an existing tenant %q differs from that of a missing one %q", b, n)
	}
	r := e.do(http.MethodPut, "/v1/tenants/B/runs/stolen/keys"+q, "text/plain", tokenA, strings.NewReader("K1\n"))
	if r.code != http.StatusForbidden {
		t.Errorf("PUT into B with A's token: %d %s", r.code, r.body)
	}
	if st, err := ledger.NewLedger(e.rdb).Tenant("B").Status(context.Background(), "stolen"); err == nil {
		t.Errorf("B's ledger has the refused run: %+v", st)
	}
	r = e.do(http.MethodPost, "/v1/tenants/B/keys", "application/json", tokenA, strings.NewReader(`{"erp_connection": 3, "actor_type": "Customer", "keys": ["K1"]}`))
	if r.code != http.StatusForbidden {
		t.Errorf("POST keys into B with A's token: %d %s", r.code, r.body)
	}
	if strings.Contains(e.logs.String(), tokenA) || strings.Contains(e.logs.String(), tokenB) {
		t.Error("a token is in the log")
	}
}

// TestTenantsSameRunName: the implicit tenant, A and B all PUT a run called "nightly"; each
// sees its own run, counts and dead letters only, and its batches carry its tenant.
func TestTenantsSameRunName(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t)
	ctx := context.Background()
	bodies := map[string]string{"": "K1\nK2\n", "A": "K1\nK2\nK3\n", "B": "K9\n"}
	toks := map[string]string{"": token, "A": tokenA, "B": tokenB}
	prefix := func(tenant string) string {
		if tenant == "" {
			return Prefix
		}
		return TenantPrefix + tenant + "/"
	}
	for _, tenant := range []string{"", "A", "B"} {
		r := e.do(http.MethodPut, prefix(tenant)+"runs/nightly/keys"+q, "text/plain", toks[tenant], strings.NewReader(bodies[tenant]))
		if s := e.summary(r); s.Run != "nightly" || s.Keys != int64(strings.Count(bodies[tenant], "\n")) {
			t.Errorf("tenant %q: summary %+v", tenant, s)
		}
	}
	for _, tenant := range []string{"", "A", "B"} {
		p, err := intake.NewProducer(intake.ProducerConfig{Redis: e.rdb, Tenant: tenant})
		if err != nil {
			t.Fatal(err)
		}
		payload, err := p.Present(tasks.BatchID(tasks.RunKey(tenant, "nightly"), 0))
		if err != nil || payload == nil {
			t.Fatalf("tenant %q: batch 0 not handed over: %v", tenant, err)
		}
		b, err := tasks.ParseBatch(payload)
		if err != nil || b.Tenant != tenant || strings.Join(b.Keys, "\n")+"\n" != bodies[tenant] {
			t.Errorf("tenant %q: batch %+v, %v", tenant, b, err)
		}
	}
	// A dead letter of A's run, recorded as the worker does.
	id := tasks.BatchID(tasks.RunKey("A", "nightly"), 0)
	if _, err := ledger.NewLedger(e.rdb).Tenant("A").RecordDead(ctx, "nightly", id, []tasks.DeadLetter{{Run: "nightly", Key: "K2", BatchID: id,
		Class: "business", Reason: "IsOk=false", At: time.Now()}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "A", "B"} {
		if got := e.runNames(prefix(tenant)+"runs", toks[tenant]); !slices.Equal(got, []string{"nightly"}) {
			t.Errorf("tenant %q lists runs %v, want its nightly only", tenant, got)
		}
		r := e.do(http.MethodGet, prefix(tenant)+"runs/nightly", "", toks[tenant], nil)
		var rep struct {
			TotalKeys int64 `json:"total_keys"`
			DeadKeys  int64 `json:"dead_keys"`
		}
		r.decode(t, &rep)
		if r.code != http.StatusOK || rep.TotalKeys != int64(strings.Count(bodies[tenant], "\n")) || (rep.DeadKeys > 0) != (tenant == "A") {
			t.Errorf("tenant %q: GET nightly: %d %s", tenant, r.code, r.body)
		}
		r = e.do(http.MethodGet, prefix(tenant)+"runs/nightly/dead", "", toks[tenant], nil)
		var dls []tasks.DeadLetter
		r.decode(t, &dls)
		if tenant == "A" && (len(dls) != 1 || dls[0].Key != "K2") || tenant != "A" && len(dls) != 0 {
			t.Errorf("tenant %q: dead letters %+v", tenant, dls)
		}
	}
	// Trickle keys of a tenant wait in its own group.
	r := e.do(http.MethodPost, TenantPrefix+"B/keys", "application/json", tokenB, strings.NewReader(`{"erp_connection": 3, "actor_type": "Customer", "keys": ["T1"]}`))
	if r.code != http.StatusOK {
		t.Fatalf("POST B's keys: %d %s", r.code, r.body)
	}
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	ts, err := insp.ListAggregatingTasks(tasks.TrickleQueue, tasks.TenantGroupName("B", 3, erpsync.ActorCustomer))
	if err != nil || len(ts) != 1 {
		t.Fatalf("B's trickle group: %d tasks, %v", len(ts), err)
	}
	if ts, _ := insp.ListAggregatingTasks(tasks.TrickleQueue, tasks.GroupName(3, erpsync.ActorCustomer)); len(ts) != 0 {
		t.Errorf("the implicit tenant's trickle group holds %d of B's keys", len(ts))
	}
}

// TestTenantIDValidation: a tenant path segment that is no tenant ID is 400 naming the
// field; New and SetTenants refuse bad tenants, naming them.
func TestTenantIDValidation(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t)
	for _, id := range []string{".A", "a%20b", "A%21", strings.Repeat("x", tasks.MaxTenantID+1)} {
		r := e.do(http.MethodGet, TenantPrefix+id+"/runs", "", tokenA, nil)
		if ae := r.apiErr(t); r.code != http.StatusBadRequest || ae.Field != "tenant" || !strings.Contains(ae.Message, "tenant id") {
			t.Errorf("tenant %q: %d %+v, want 400 naming the field tenant", id, r.code, ae)
		}
	}
	for _, c := range []struct {
		tenants []Tenant
		want    string
	}{
		{[]Tenant{{ID: "a b", Tokens: []string{tokenA}}}, `tenant 1: tenant id "a b"`},
		{[]Tenant{{ID: "A", Tokens: []string{tokenA}}, {ID: "A", Tokens: []string{tokenB}}}, "tenant A is given twice"},
		{[]Tenant{{ID: "A"}}, "tenant A has no token"},
		{[]Tenant{{ID: "A", Tokens: []string{"short"}}}, "tenant A: token 1 is 5 characters long"},
		{[]Tenant{{ID: "A", Tokens: []string{tokenA}}, {ID: "B", Tokens: []string{tokenB, tokenA}}}, "tenant B: token 2 is also a token of tenant A"},
		{[]Tenant{{ID: "A", Tokens: []string{token}}}, "tenant A: token 1 is also a token of the implicit tenant"},
	} {
		err := e.api.SetTenants(c.tenants)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetTenants(%v) = %v, want %q", c.tenants, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), tokenA) || strings.Contains(err.Error(), token)) {
			t.Errorf("the error shows a token: %v", err)
		}
		if _, err := New(Config{Redis: e.rdb, Tokens: []string{token}, Tenants: c.tenants}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New with %v = %v, want %q", c.tenants, err, c.want)
		}
	}
	// The refused SetTenants changed nothing.
	if r := e.do(http.MethodGet, TenantPrefix+"A/runs", "", tokenA, nil); r.code != http.StatusOK {
		t.Errorf("after refused SetTenants, A: %d %s", r.code, r.body)
	}
	if s := (Tenant{ID: "A", Tokens: []string{tokenA}}); strings.Contains(s.String()+s.GoString(), tokenA) {
		t.Errorf("Tenant shows its token: %s", s)
	}
	// A tenant only: no implicit tenant's tokens.
	api, err := New(Config{Redis: e.rdb, Tenants: []Tenant{{ID: "A", Tokens: []string{tokenA}}}})
	if err != nil || api == nil {
		t.Errorf("New with a tenant and no INTAKE_TOKENS: %v", err)
	}
}

// TestSetTenantsRemovesAccess: a tenant SetTenants drops is refused from the next request
// on, one it adds is served, and one it keeps keeps its runs.
func TestSetTenantsRemovesAccess(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t)
	e.summary(e.do(http.MethodPut, TenantPrefix+"B/runs/kept/keys"+q, "text/plain", tokenB, strings.NewReader("K1\n")))
	const tokenC = "tenant-c-t0ken-0123456789"
	if err := e.api.SetTenants([]Tenant{{ID: "B", Tokens: []string{tokenB}}, {ID: "C", Tokens: []string{tokenC}}}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{TenantPrefix + "A/runs", TenantPrefix + "A/runs/x"} {
		if r := e.do(http.MethodGet, path, "", tokenA, nil); r.code != http.StatusUnauthorized {
			t.Errorf("removed tenant A: GET %s: %d %s, want 401", path, r.code, r.body)
		}
	}
	if r := e.do(http.MethodPut, TenantPrefix+"A/runs/late/keys"+q, "text/plain", tokenA, strings.NewReader("K1\n")); r.code != http.StatusUnauthorized {
		t.Errorf("removed tenant A: PUT: %d %s, want 401", r.code, r.body)
	}
	if got := e.runNames(TenantPrefix+"B/runs", tokenB); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("kept tenant B lists %v", got)
	}
	if got := e.runNames(TenantPrefix+"C/runs", tokenC); len(got) != 0 {
		t.Errorf("new tenant C lists %v, want none", got)
	}
	if r := e.do(http.MethodGet, "/v1/runs", "", token, nil); r.code != http.StatusOK {
		t.Errorf("the implicit tenant after SetTenants: %d %s", r.code, r.body)
	}
	if err := e.api.SetTenants(nil); err != nil {
		t.Fatal(err)
	}
	if r := e.do(http.MethodGet, TenantPrefix+"B/runs", "", tokenB, nil); r.code != http.StatusUnauthorized {
		t.Errorf("after SetTenants(nil), B: %d, want 401", r.code)
	}
}

// TestSetTenantsConcurrent: requests and SetTenants at once (run with -race): every request
// of B, which stays, is served; A's are served or refused, never anything else.
func TestSetTenantsConcurrent(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t)
	both := []Tenant{{ID: "A", Tokens: []string{tokenA}}, {ID: "B", Tokens: []string{tokenB}}}
	onlyB := both[1:]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if err := e.api.SetTenants([][]Tenant{both, onlyB}[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	get := func(path, tok string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		e.api.ServeHTTP(w, req)
		return w.Code
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if code := get(TenantPrefix+"B/runs", tokenB); code != http.StatusOK {
			t.Fatalf("B during SetTenants: %d", code)
		}
		if code := get(TenantPrefix+"A/runs", tokenA); code != http.StatusOK && code != http.StatusUnauthorized {
			t.Fatalf("A during SetTenants: %d", code)
		}
	}
}
