package intakeapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/tasks"
)

// TenantPrefix is the path under which a tenant's routes live: /v1/tenants/{tenant}/runs,
// /v1/tenants/{tenant}/keys, ... mirror the implicit tenant's /v1/runs, /v1/keys, ...
const TenantPrefix = Prefix + "tenants/"

// Tenant is a tenant the API serves besides the implicit one, with the tokens that speak
// for it. Its String and GoString never show the tokens.
type Tenant struct {
	// ID names the tenant (tasks.ValidateTenantID); its routes are under TenantPrefix+ID.
	ID string
	// Tokens are the bearer tokens of the tenant's own routes: at least one, each at least
	// MinTokenLength characters, none shared with another tenant or with Config.Tokens.
	Tokens []string
}

func (t Tenant) String() string {
	return fmt.Sprintf("intakeapi.Tenant{ID: %q, Tokens: [%d redacted]}", t.ID, len(t.Tokens))
}

// GoString is String, so that %#v does not show the tokens either.
func (t Tenant) GoString() string { return t.String() }

// scope is what a request may reach once its token is checked: one tenant's producer and
// its view of the ledger, which never see another tenant's runs.
type scope struct {
	tenant   string // "" the implicit tenant
	prefix   string // the tenant's route prefix: Prefix, or TenantPrefix+tenant+"/"
	producer *intake.Producer
	ledger   *ledger.Ledger
}

// access is who may do what at one moment: every token's digest with the tenant it speaks
// for, and each tenant's scope. It is never changed once built; SetTenants replaces it whole.
type access struct {
	tokens []tokenEntry
	scopes map[string]*scope
}

type tokenEntry struct {
	digest [sha256.Size]byte
	tenant string
}

// newAccess builds the access of implicit (Config.Tokens) and tenants. The scopes of old
// (nil at first) are kept for the tenants still there, so their producers outlive a reload.
func (a *API) newAccess(implicit []string, tenants []Tenant, old *access) (*access, error) {
	acc := &access{scopes: map[string]*scope{}}
	owner := map[[sha256.Size]byte]string{}
	add := func(tenant string, toks []string) error {
		for i, t := range toks {
			if len(t) < MinTokenLength || strings.TrimSpace(t) != t {
				return fmt.Errorf("token %d is %d characters long: want at least %d, without surrounding blanks (e.g. `openssl rand -hex 32`)", i+1, len(t), MinTokenLength)
			}
			d := sha256.Sum256([]byte(t))
			if other, dup := owner[d]; dup {
				return fmt.Errorf("token %d is also a token of %s: a token speaks for one tenant", i+1, tenantName(other))
			}
			owner[d] = tenant
			acc.tokens = append(acc.tokens, tokenEntry{digest: d, tenant: tenant})
		}
		return nil
	}
	if err := add("", implicit); err != nil {
		return nil, fmt.Errorf("intakeapi: %w", err)
	}
	ids := []string{""}
	for _, t := range tenants {
		if err := tasks.ValidateTenantID(t.ID); err != nil {
			return nil, fmt.Errorf("intakeapi: tenant %d: %w", len(ids), err)
		}
		if _, dup := acc.scopes[t.ID]; dup {
			return nil, fmt.Errorf("intakeapi: tenant %s is given twice", t.ID)
		}
		if len(t.Tokens) == 0 {
			return nil, fmt.Errorf("intakeapi: tenant %s has no token: give at least one", t.ID)
		}
		if err := add(t.ID, t.Tokens); err != nil {
			return nil, fmt.Errorf("intakeapi: tenant %s: %w", t.ID, err)
		}
		acc.scopes[t.ID] = nil // reserved; filled below
		ids = append(ids, t.ID)
	}
	for _, id := range ids {
		if old != nil && old.scopes[id] != nil {
			acc.scopes[id] = old.scopes[id]
			continue
		}
		sc, err := a.newScope(id)
		if err != nil {
			return nil, err
		}
		acc.scopes[id] = sc
	}
	return acc, nil
}

// newScope is the producer and ledger view of tenant id.
func (a *API) newScope(id string) (*scope, error) {
	p, err := intake.NewProducer(intake.ProducerConfig{Tenant: id, Redis: a.cfg.Redis, Queue: a.cfg.Queue,
		TrickleQueue: a.cfg.TrickleQueue, TempDir: a.cfg.TempDir, Concurrency: a.cfg.Concurrency})
	if err != nil {
		return nil, fmt.Errorf("intakeapi: %w", err)
	}
	prefix := Prefix
	if id != "" {
		prefix = TenantPrefix + id + "/"
	}
	return &scope{tenant: id, prefix: prefix, producer: p, ledger: ledger.NewLedger(a.cfg.Redis).Tenant(id)}, nil
}

// tenantName is how messages and logs name tenant id.
func tenantName(id string) string {
	if id == "" {
		return "the implicit tenant (INTAKE_TOKENS)"
	}
	return "tenant " + id
}

// SetTenants replaces the tenants the API serves besides the implicit one (the tenants file
// re-read on SIGHUP): a tenant no longer listed is refused from the next request on (401,
// its tokens being unknown), a new one is served, and one still listed keeps its producer
// and takes its new tokens. On an error (a tenant ID or token New would refuse) nothing
// changes. Safe for concurrent use with requests; a request already past its token check
// finishes as it began.
func (a *API) SetTenants(tenants []Tenant) error {
	a.setMu.Lock()
	defer a.setMu.Unlock()
	acc, err := a.newAccess(a.cfg.Tokens, tenants, a.access.Load())
	if err != nil {
		return err
	}
	a.access.Store(acc)
	return nil
}

// owner is the tenant tok speaks for. Every digest is compared, in constant time, whichever
// matches, so the time a refusal takes says nothing about the tokens.
func (acc *access) owner(tok string) (tenant string, ok bool) {
	got := sha256.Sum256([]byte(tok))
	for i := range acc.tokens {
		if subtle.ConstantTimeCompare(got[:], acc.tokens[i].digest[:]) == 1 {
			tenant, ok = acc.tokens[i].tenant, true
		}
	}
	return tenant, ok
}

// authenticate answers 401 unless r carries a known token, and returns the access it was
// checked against and the tenant the token speaks for.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (*access, string, bool) {
	acc := a.access.Load()
	tok, given := bearer(r.Header.Get("Authorization"))
	tenant, known := acc.owner(tok)
	if given && known {
		return acc, tenant, true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="erpresync intake"`)
	a.cfg.Logger.Warn().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Bool("token_given", given).Msg("intake API: request refused: no valid token")
	code, e := a.answer(&tokenError{given: given}, nil)
	writeError(w, code, e)
	return nil, "", false
}

// tokenError refuses a request without a known token (401).
type tokenError struct{ given bool }

func (e *tokenError) Error() string {
	if e.given {
		return "wrong token: it is not one of INTAKE_TOKENS nor a tenant's"
	}
	return "missing token: send Authorization: Bearer TOKEN (one of INTAKE_TOKENS, or a tenant's)"
}

// forbiddenError refuses a known token on routes of a tenant it does not speak for (403):
// tenant is the route's tenant, "" the implicit one. Its words are the same whether that
// tenant exists or not.
type forbiddenError struct{ tenant string }

func (e *forbiddenError) Error() string {
	if e.tenant == "" {
		return "this token is a tenant's: send its requests under " + TenantPrefix + "{tenant}/"
	}
	return "this token does not speak for tenant " + e.tenant
}

// tenantPathError is a {tenant} path segment that is no tenant ID (400).
type tenantPathError struct{ err error }

func (e *tenantPathError) Error() string { return "path: " + e.err.Error() }

// scopeKey is the context key of a request's scope.
type scopeKey struct{}

// scopeOf is the scope authorize gave r.
func scopeOf(r *http.Request) *scope { return r.Context().Value(scopeKey{}).(*scope) }

// authorize lets a request through when its token speaks for the tenant of its route: the
// implicit tenant on the old routes, {tenant} on a tenant route; the handler finds that
// tenant's scope with scopeOf. A token of another tenant is answered 403 with words that
// are the same whether the tenant asked for exists or not.
func (a *API) authorize(tenantRoute bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		acc, owner, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		want := ""
		if tenantRoute {
			want = r.PathValue("tenant")
			if err := tasks.ValidateTenantID(want); err != nil {
				code, e := a.answer(&tenantPathError{err}, nil)
				writeError(w, code, e)
				return
			}
		}
		if owner != want {
			a.cfg.Logger.Warn().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
				Str("token_tenant", owner).Msg("intake API: request refused: the token is another tenant's")
			code, e := a.answer(&forbiddenError{tenant: want}, nil)
			writeError(w, code, e)
			return
		}
		sc := acc.scopes[want]
		if sc == nil {
			// Not reached: a token's tenant always has a scope in the same access.
			a.internal(w, "scope of "+tenantName(want), errors.New("no scope"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), scopeKey{}, sc)))
	})
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header (the scheme in any
// case, as RFC 9110 allows).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// withTenantRoutes is routes followed by each non-public one again under
// TenantPrefix+"{tenant}/", for a tenant's requests.
func withTenantRoutes(routes []route) []route {
	out := slices.Clone(routes)
	for _, rt := range routes {
		if !rt.public {
			rt.path = TenantPrefix + "{tenant}/" + strings.TrimPrefix(rt.path, Prefix)
			rt.tenant = true
			out = append(out, rt)
		}
	}
	return out
}
