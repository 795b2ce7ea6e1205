package runspage

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/tasks"
)

// Path is where the worker mounts the handler; every route lives under it.
const Path = "/runs/"

// Defaults of Config's zero values.
const (
	DefaultRuns        = 50
	DefaultDeadPerPage = 50
	DefaultRefresh     = 10 * time.Second
	// MaxRuns is the largest ?limit= the runs list accepts.
	MaxRuns = 1000
)

// Ledger is what the page reads of the run ledger; *ledger.Ledger satisfies it.
type Ledger interface {
	Runs(ctx context.Context, limit int) ([]ledger.RunStatus, error)
	Status(ctx context.Context, run string) (ledger.RunStatus, error)
	DeadLetters(ctx context.Context, run string) ([]tasks.DeadLetter, error)
	Changes(ctx context.Context, run string, fn func(tasks.ChangeItem) error) error
}

// Config configures the handler.
type Config struct {
	// Ledger is read for runs, dead letters and changes; required. It is the implicit
	// tenant's (the worker's SUPEROFFICE_* settings).
	Ledger Ledger
	// Tenants returns the tenants whose runs the page shows, "" for the implicit tenant; it
	// is called on every request, so a tenant removed is gone from the next page on. Zero
	// value: the implicit tenant only.
	Tenants func() []string
	// TenantLedger is the ledger as tenant id sees it (ledger.Ledger.Tenant): its runs only.
	// Zero value: Ledger's Tenant when Ledger is a *ledger.Ledger, else Ledger for the
	// implicit tenant and nothing for another.
	TenantLedger func(id string) Ledger
	// Pauses reports flow control's pauses for the banner; nil shows none.
	Pauses Pauser
	// Retrying reports an active run's batches waiting in asynq's retry set, with the last
	// error, for its page and the ETA in the list (runreport.RetryingBatches); nil shows none.
	// run is the ledger's name of the run, tasks.RunKey(tenant, run).
	Retrying func(ctx context.Context, run string) (runreport.Retrying, error)
	// Runs is how many recent runs the list shows without ?limit=; 0 means DefaultRuns.
	Runs int
	// DeadPerPage is how many dead letters a run's page lists; 0 means DefaultDeadPerPage.
	DeadPerPage int
	// Refresh is how often a page showing an active run reloads itself (an HTML meta
	// refresh, no script); 0 means DefaultRefresh, negative never.
	Refresh time.Duration
	// DashboardURL, when set, is linked from every page as "tasks" (asynqmon).
	DashboardURL string
	// Now is the clock for rates and ETAs; nil means time.Now.
	Now func() time.Time
}

func (c *Config) validate() error {
	if c.Ledger == nil {
		return errors.New("runspage: Config.Ledger is required")
	}
	if c.Runs < 0 || c.Runs > MaxRuns {
		return fmt.Errorf("runspage: Config.Runs %d: want 0 (default %d) to %d", c.Runs, DefaultRuns, MaxRuns)
	}
	if c.DeadPerPage < 0 {
		return fmt.Errorf("runspage: Config.DeadPerPage %d: want 0 (default %d) or more", c.DeadPerPage, DefaultDeadPerPage)
	}
	return nil
}

//go:embed templates/*.html
var templateFS embed.FS

// Handler serves the runs page under Path. It only reads, and answers GET and HEAD; it is
// safe for concurrent use.
type Handler struct {
	cfg       Config
	mux       *http.ServeMux
	listPage  *template.Template
	runPage   *template.Template
	errorPage *template.Template
}

// New returns the handler for cfg.
func New(cfg Config) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Pauses == nil {
		cfg.Pauses = noPauses{}
	}
	cfg.Runs = cmp.Or(cfg.Runs, DefaultRuns)
	cfg.DeadPerPage = cmp.Or(cfg.DeadPerPage, DefaultDeadPerPage)
	cfg.Refresh = cmp.Or(cfg.Refresh, DefaultRefresh)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tenants == nil {
		cfg.Tenants = func() []string { return []string{""} }
	}
	if cfg.TenantLedger == nil {
		cfg.TenantLedger = tenantLedger(cfg.Ledger)
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	var err error
	for _, p := range []struct {
		t    **template.Template
		file string
	}{{&h.listPage, "runs.html"}, {&h.runPage, "run.html"}, {&h.errorPage, "error.html"}} {
		if *p.t, err = template.New(p.file).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p.file); err != nil {
			return nil, fmt.Errorf("runspage: template %s: %w", p.file, err)
		}
	}
	h.mux.HandleFunc("GET "+Path+"{$}", h.serveList)
	h.mux.HandleFunc("GET "+Path+"{run}", h.serveRun)
	h.mux.HandleFunc("GET "+Path+"{run}/changes", h.serveChanges)
	h.mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, "no such page: "+r.URL.Path)
	})
	return h, nil
}

// ServeHTTP routes a request under Path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// No script, no frames, nothing from elsewhere: the page needs only its inline style.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// page is what every template gets besides its own data.
type page struct {
	Title        string
	Now          time.Time
	Refresh      int // seconds; 0: no meta refresh
	Pauses       []Pause
	PauseErr     string
	DashboardURL string
	Data         any
}

func (h *Handler) newPage(r *http.Request, title string, active bool, data any) page {
	p := page{Title: title, Now: h.cfg.Now(), DashboardURL: h.cfg.DashboardURL, Data: data}
	if active && h.cfg.Refresh > 0 {
		p.Refresh = max(int(h.cfg.Refresh/time.Second), 1)
	}
	var err error
	if p.Pauses, err = h.cfg.Pauses.Pauses(r.Context()); err != nil {
		p.PauseErr = err.Error()
	}
	return p
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, t *template.Template, status int, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "layout", p); err != nil {
		// The status line is out already; cut the response so it is not taken as whole.
		panic(http.ErrAbortHandler)
	}
}

// fail answers an error as a page of its own, with the message a person reads.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, h.errorPage, status, h.newPage(r, http.StatusText(status), false, struct {
		Status  int
		Message string
	}{status, msg}))
}

// wholeParam reads a query parameter that must be a whole number from lo up, or def when
// absent. The error names the parameter and what would be valid.
func wholeParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		if hi == maxInt {
			return 0, fmt.Errorf("%s=%q: want a whole number from %d", name, s, lo)
		}
		return 0, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

const maxInt = int(^uint(0) >> 1)

func (h *Handler) serveList(w http.ResponseWriter, r *http.Request) {
	limit, err := wholeParam(r, "limit", h.cfg.Runs, 1, MaxRuns)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	all := h.cfg.Tenants()
	shown, filtered := all, r.URL.Query().Has("tenant")
	if filtered {
		id, ok := h.tenant(w, r, all)
		if !ok {
			return
		}
		shown = []string{id}
	}
	runs, err := h.runs(r.Context(), shown, limit)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the ledger: "+err.Error())
		return
	}
	now := h.cfg.Now()
	views := make([]runView, 0, len(runs))
	active := false
	for _, tr := range runs {
		st := tr.st
		v := newRunView(tr.tenant, st, now)
		if h.cfg.Retrying != nil && st.PendingKeys > 0 && st.State == ledger.RunActive {
			// The ETA waits for the run's retries, as on its own page.
			rt, err := h.cfg.Retrying(r.Context(), tasks.RunKey(tr.tenant, st.Run))
			if err != nil {
				h.fail(w, r, http.StatusInternalServerError, "reading the retry set: "+err.Error())
				return
			}
			v.P = v.P.WithRetrying(rt, now)
		}
		views = append(views, v)
		active = active || st.State == ledger.RunActive
	}
	h.render(w, r, h.listPage, http.StatusOK, h.newPage(r, "Runs", active, struct {
		Runs    []runView
		Limit   int
		Tenants tenantFilter
	}{views, limit, newTenantFilter(all, filtered, shown[0])}))
}

// status reads the run named in the path, of the tenant named by ?tenant= (none: the
// implicit tenant), answering the error itself when there is none.
func (h *Handler) status(w http.ResponseWriter, r *http.Request) (ledger.RunStatus, string, bool) {
	run := r.PathValue("run")
	if err := tasks.ValidateRunName(run); err != nil {
		h.fail(w, r, http.StatusNotFound, err.Error())
		return ledger.RunStatus{}, "", false
	}
	tenant, ok := h.tenant(w, r, h.cfg.Tenants())
	if !ok {
		return ledger.RunStatus{}, "", false
	}
	st, err := h.cfg.TenantLedger(tenant).Status(r.Context(), run)
	if errors.Is(err, ledger.ErrRunNotFound) {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("run %q%s not found: the ledger has never seen it", run, ofTenant(tenant)))
		return st, "", false
	}
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the ledger: "+err.Error())
		return st, "", false
	}
	return st, tenant, true
}

func (h *Handler) serveRun(w http.ResponseWriter, r *http.Request) {
	pageNo, err := wholeParam(r, "page", 1, 1, maxInt)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	st, tenant, ok := h.status(w, r)
	if !ok {
		return
	}
	dls, err := h.cfg.TenantLedger(tenant).DeadLetters(r.Context(), st.Run)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the dead letters: "+err.Error())
		return
	}
	var retrying runreport.Retrying
	if h.cfg.Retrying != nil && st.PendingKeys > 0 {
		if retrying, err = h.cfg.Retrying(r.Context(), tasks.RunKey(tenant, st.Run)); err != nil {
			h.fail(w, r, http.StatusInternalServerError, "reading the retry set: "+err.Error())
			return
		}
	}
	now := h.cfg.Now()
	view := newRunView(tenant, st, now)
	view.P = view.P.WithRetrying(retrying, now)
	h.render(w, r, h.runPage, http.StatusOK, h.newPage(r, "Run "+st.Run+ofTenant(tenant), st.State == ledger.RunActive, struct {
		Run      runView
		Retrying runreport.Retrying
		Waiting  string
		Dead     deadPage
	}{view, retrying, view.P.RetryNote(now), newDeadPage(dls, pageNo, h.cfg.DeadPerPage)}))
}
