package intakeapi

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/runreport"
	"github.com/erpresync/erpresync/tasks"
)

// listRuns answers the most recent runs, as `enqueue runs --json`.
func (a *API) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := knownParams(q, []string{"limit"}); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	limit := DefaultRunsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxRunsLimit {
			writeError(w, http.StatusBadRequest, paramError("limit", v, fmt.Sprintf("want 1 to %d runs", MaxRunsLimit)))
			return
		}
		limit = n
	}
	list, err := scopeOf(r).ledger.Runs(r.Context(), limit)
	if err != nil {
		a.internal(w, "runs", err)
		return
	}
	now := a.cfg.Now()
	out := make([]runreport.RunReport, 0, len(list))
	for _, st := range list {
		out = append(out, runreport.NewRunReport(st, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// status reads run {run}, answering 400 or 404 itself when it cannot.
func (a *API) status(w http.ResponseWriter, r *http.Request) (ledger.RunStatus, bool) {
	run := r.PathValue("run")
	if err := tasks.ValidateRunName(run); err != nil { // trickle runs are read too
		writeError(w, http.StatusBadRequest, &apiError{Message: err.Error(), Field: "run"})
		return ledger.RunStatus{}, false
	}
	if e := knownParams(r.URL.Query(), nil); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return ledger.RunStatus{}, false
	}
	sc := scopeOf(r)
	st, err := sc.ledger.Status(r.Context(), run)
	if errors.Is(err, ledger.ErrRunNotFound) {
		writeError(w, http.StatusNotFound, &apiError{Field: "run", Message: fmt.Sprintf("run %q not found (GET %sruns lists the recent ones)", run, sc.prefix)})
		return st, false
	}
	if err != nil {
		a.internal(w, "status of "+run, err)
		return st, false
	}
	return st, true
}

// getRun answers a run's report, as `enqueue status RUN --json`.
func (a *API) getRun(w http.ResponseWriter, r *http.Request) {
	st, ok := a.status(w, r)
	if !ok {
		return
	}
	// Every queue's retry set, by the run's name: a trickle run's batches wait in the trickle queue.
	rep, err := runreport.TenantReport(r.Context(), a.cfg.Redis, a.insp, "", scopeOf(r).tenant, st, a.cfg.Now())
	if err != nil {
		a.internal(w, "status of "+st.Run, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// getDead answers a run's dead letters with their reasons, oldest first, as
// `enqueue dead list --run RUN --json`.
func (a *API) getDead(w http.ResponseWriter, r *http.Request) {
	st, ok := a.status(w, r)
	if !ok {
		return
	}
	dls, err := scopeOf(r).ledger.DeadLetters(r.Context(), st.Run)
	if err != nil {
		a.internal(w, "dead letters of "+st.Run, err)
		return
	}
	if dls == nil {
		dls = []tasks.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, dls)
}

func (a *API) internal(w http.ResponseWriter, what string, err error) {
	a.cfg.Logger.Error().Err(err).Msg("intake API: " + what)
	writeError(w, http.StatusInternalServerError, &apiError{Message: fmt.Sprintf("%s: %v", what, err)})
}

//go:embed openapi.json
var openAPIDoc []byte

// openAPI serves the OpenAPI 3 document of the routes.
func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc)
}
