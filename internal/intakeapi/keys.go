package intakeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/tasks"
)

// Body formats of PUT /v1/runs/{run}/keys.
const (
	typePlain  = "text/plain"
	typeCSV    = "text/csv"
	typeNDJSON = "application/x-ndjson"
	typeJSON   = "application/json"
)

// putParams are the query parameters PUT /v1/runs/{run}/keys knows.
var putParams = []string{"erp_connection", "actor_type", "csv_column", "csv_header", "csv_delimiter", "batch_size", "strict", "dry_run"}

// putKeys submits the body as run {run}: intake.Producer.Submit, as `enqueue --file -`.
//
// The body is spooled to a temporary file first, before a slot is taken: a client that is
// slow or stalls costs itself only (and the body read deadline, Config.BodyTimeout, ends
// it). Once the body is whole, the submission no longer depends on the client: it runs on a
// context of its own (Config.SubmitTimeout), so a client that hangs up after its last byte
// still gets its run completed; a submission that fails part way leaves the run
// incomplete in the ledger, never done.
func (a *API) putKeys(w http.ResponseWriter, r *http.Request) {
	run := r.PathValue("run")
	if err := intake.ValidateRunName(run); err != nil {
		writeError(w, http.StatusBadRequest, &apiError{Message: trimConfig(err), Field: "run"})
		return
	}
	ctype, status, err := contentType(r, typePlain, typeCSV, typeNDJSON)
	if err != nil {
		writeError(w, status, &apiError{Message: err.Error()})
		return
	}
	spec, src, e := a.parsePut(r.URL.Query(), ctype)
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	spec.Run = run
	sc := scopeOf(r)
	log := a.cfg.Logger.With().Str("tenant", sc.tenant).Str("run", run).Int("erp_connection", spec.ErpConnectionID).
		Str("actor_type", spec.ActorType.String()).Str("remote", r.RemoteAddr).Logger()
	fail := func(err error, sum intake.Summary) {
		code, e := a.answer(err, &sum)
		log.Warn().Int("status", code).Str("error", e.Message).Msg("intake API: run refused")
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", retryAfter)
		}
		writeError(w, code, e)
	}
	if r.ContentLength > a.cfg.MaxBody {
		fail(&tooLargeError{size: r.ContentLength}, intake.Summary{})
		return
	}
	path, err := a.spool(w, r, ctype == typeNDJSON)
	if err != nil {
		fail(err, intake.Summary{})
		return
	}
	defer os.Remove(path)

	// The body is whole: from here on the client's going away changes nothing (Drain does).
	ctx, done, err := a.detach()
	if err != nil {
		fail(err, intake.Summary{})
		return
	}
	defer done()
	wait := time.NewTimer(a.cfg.SlotWait)
	select {
	case a.slots <- struct{}{}:
		wait.Stop()
		defer func() { <-a.slots }()
	case <-wait.C:
		fail(errBusy, intake.Summary{})
		return
	}
	src.Name, src.Path = "body", path
	sum, err := sc.producer.Submit(ctx, spec, src)
	if err != nil {
		fail(err, sum)
		return
	}
	log.Info().Int64("keys", sum.Keys).Int64("invalid", sum.Invalid).Int64("duplicates", sum.Duplicates).
		Int("batches_enqueued", sum.BatchesEnqueued).Int("batches_present", sum.BatchesPresent).
		Dur("elapsed", sum.Elapsed).Msg("intake API: run submitted")
	writeJSON(w, http.StatusOK, sum)
}

// spool copies the request body (NDJSON converted to one key a line) to a temporary file
// and returns its path. Every read must bring a byte within Config.BodyTimeout.
func (a *API) spool(w http.ResponseWriter, r *http.Request, ndjson bool) (string, error) {
	var body io.Reader = a.bodyReader(w, r, a.cfg.MaxBody)
	if ndjson {
		body = newNDJSONReader(body)
	}
	f, err := os.CreateTemp(a.cfg.TempDir, "erpresync-intake-*.keys")
	if err != nil {
		return "", fmt.Errorf("spool the body: %w", err)
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool the body to %s: %w", f.Name(), cerr)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// retryAfter is the Retry-After of a 503: the seconds after which to send the request again.
const retryAfter = "10"

// errBusy: every submission slot stayed taken for Config.SlotWait.
var errBusy = errors.New("busy")

// tooLargeError is a body over Config.MaxBody: size bytes, or -1 when found while reading.
type tooLargeError struct{ size int64 }

func (e *tooLargeError) Error() string { return "body too large" }

// answer is the one mapping of an error to the status and the body a client gets: 4xx for
// what the client can fix, 503 (with Retry-After) when it may simply send the request again
// later, 500 only for our own failures. sum, when not nil, is how far a submission got.
func (a *API) answer(err error, sum *intake.Summary) (int, *apiError) {
	var (
		mbe  *http.MaxBytesError
		tle  *tooLargeError
		le   *lineError
		be   *bodyError
		verr *intake.ValidationError
		toke *tokenError
		forb *forbiddenError
		tpe  *tenantPathError
	)
	if sum != nil && sum.Run == "" && sum.Source == "" {
		sum = nil // nothing began
	}
	switch {
	case errors.As(err, &toke):
		return http.StatusUnauthorized, &apiError{Message: toke.Error()}
	case errors.As(err, &forb):
		return http.StatusForbidden, &apiError{Message: forb.Error()}
	case errors.As(err, &tpe):
		return http.StatusBadRequest, &apiError{Field: "tenant", Message: tpe.Error()}
	case errors.As(err, &tle):
		return http.StatusRequestEntityTooLarge, a.tooLarge(tle.size)
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, a.tooLarge(-1)
	case errors.As(err, &le):
		return http.StatusBadRequest, &apiError{Message: fmt.Sprintf("body: %v; nothing was enqueued", le), Line: le.Line, Reason: le.Reason}
	case errors.As(err, &be) && errors.Is(be.err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, &apiError{Message: fmt.Sprintf("reading the request body: no byte arrived for %s (INTAKE_BODY_TIMEOUT); nothing was enqueued: send the whole body again", a.cfg.BodyTimeout)}
	case errors.As(err, &be):
		return http.StatusBadRequest, &apiError{Message: fmt.Sprintf("reading the request body: %v; nothing was enqueued: send the whole body again", be.err)}
	case errors.Is(err, errDraining):
		return http.StatusServiceUnavailable, &apiError{Message: "the worker is shutting down; nothing was enqueued: send the request again in a few seconds (another worker, or this one restarted, takes it)"}
	case errors.Is(err, errBusy):
		return http.StatusServiceUnavailable, &apiError{Message: fmt.Sprintf("%d submissions were being taken in for %s (INTAKE_SLOT_WAIT); nothing was enqueued: send this one again in a few seconds", cap(a.slots), a.cfg.SlotWait)}
	case errors.As(err, &verr):
		e := &apiError{Message: fmt.Sprintf("%v; add strict=false to enqueue the valid keys and skip these", verr), Problems: verr.Errors, Summary: sum}
		if len(verr.Errors) > 0 {
			e.Line, e.Reason = verr.Errors[0].Line, verr.Errors[0].Reason
		}
		return http.StatusBadRequest, e
	case errors.Is(err, intake.ErrNoKeys):
		msg := err.Error()
		msg = msg[max(strings.Index(msg, intake.ErrNoKeys.Error()), 0):] // without "submit run R: "
		return http.StatusBadRequest, &apiError{Message: msg + "; nothing was enqueued (the run is recorded as empty): send the keys, or fix the export that produced this body", Summary: sum}
	case errors.Is(err, intake.ErrRunMismatch):
		return http.StatusConflict, &apiError{Message: err.Error()}
	case errors.Is(err, intake.ErrMalformed):
		return http.StatusBadRequest, &apiError{Message: fmt.Sprintf("%v; fix the body and send it again under the same run (batches already enqueued stay)", err), Summary: sum}
	case errors.Is(err, intake.ErrConfig):
		return http.StatusBadRequest, &apiError{Message: trimConfig(err)}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, &apiError{Message: "interrupted; send the same request again to enqueue the rest", Summary: sum}
	default:
		// Our own failure (Redis, the disk): its detail goes to the log, not to the client.
		a.cfg.Logger.Error().Err(err).Msg("intake API: internal error")
		return http.StatusInternalServerError, &apiError{Message: "the worker could not finish the request (its log says why); send the same request again to enqueue the rest", Summary: sum}
	}
}

// tooLarge is the answer to a PUT body over Config.MaxBody: n bytes, or -1 when found while
// reading.
func (a *API) tooLarge(n int64) *apiError {
	return bodyTooLarge(n, fmt.Sprintf("the intake API's cap of %d bytes (INTAKE_MAX_BODY)", a.cfg.MaxBody), "split the keys into several runs, or raise the cap")
}

// bodyTooLarge is the one wording of a 413: the body's size n (-1: unknown, found while
// reading) against the cap it broke, that nothing was enqueued, and what to do instead.
func bodyTooLarge(n int64, bodyCap, advice string) *apiError {
	msg := "the body is over " + bodyCap
	if n >= 0 {
		msg = fmt.Sprintf("the body is %d bytes, over %s", n, bodyCap)
	}
	return &apiError{Message: msg + "; nothing was enqueued: " + advice}
}

// trimConfig drops intake's "invalid configuration: " prefix: to an HTTP client it is a
// request parameter, not configuration.
func trimConfig(err error) string {
	s := err.Error()
	if i := strings.Index(s, intake.ErrConfig.Error()+": "); i >= 0 {
		s = s[:i] + s[i+len(intake.ErrConfig.Error())+2:]
	}
	return s
}

// parsePut reads the query of a PUT. The batch size's range, the CSV column and the
// delimiter are checked by intake (RunSpec, Source.Validate), which words the messages.
func (a *API) parsePut(q url.Values, ctype string) (intake.RunSpec, intake.Source, *apiError) {
	spec := intake.RunSpec{Strict: true, Origin: Origin}
	var src intake.Source
	if e := knownParams(q, putParams); e != nil {
		return spec, src, e
	}
	var e *apiError
	if spec.ErpConnectionID, spec.ActorType, e = target(q.Get("erp_connection"), q.Get("actor_type")); e != nil {
		return spec, src, e
	}
	if v := q.Get("batch_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return spec, src, paramError("batch_size", v, fmt.Sprintf("want a whole number of keys per call, 1 to %d", tasks.MaxBatchSize))
		}
		spec.BatchSize = n
	}
	for _, p := range []struct {
		name string
		dst  *bool
	}{{"strict", &spec.Strict}, {"dry_run", &spec.DryRun}, {"csv_header", &src.CSVHeader}} {
		if v := q.Get(p.name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return spec, src, paramError(p.name, v, "want true or false")
			}
			*p.dst = b
		}
	}
	src.CSVColumn = q.Get("csv_column")
	if d := q.Get("csv_delimiter"); d != "" {
		if utf8.RuneCountInString(d) != 1 {
			return spec, src, paramError("csv_delimiter", d, "want exactly one character")
		}
		src.CSVComma, _ = utf8.DecodeRuneInString(d)
	}
	csvParam := slices.ContainsFunc([]string{"csv_column", "csv_header", "csv_delimiter"}, q.Has)
	switch {
	case ctype == typeCSV && src.CSVColumn == "":
		return spec, src, &apiError{Field: "csv_column", Message: "csv_column is required with Content-Type text/csv: a header name, or a 0-based index (add csv_header=true when the first line is a header)"}
	case ctype != typeCSV && csvParam:
		return spec, src, &apiError{Field: "csv_column", Message: "csv_column, csv_header and csv_delimiter go with Content-Type text/csv only (this body is " + ctype + ")"}
	}
	probe := src
	probe.R = strings.NewReader("")
	if err := probe.Validate(); err != nil {
		return spec, src, &apiError{Message: trimConfig(err)}
	}
	return spec, src, nil
}

// target parses the ERP connection and actor type of a request.
func target(conn, actor string) (int, erpsync.ActorType, *apiError) {
	if conn == "" {
		return 0, 0, &apiError{Field: "erp_connection", Message: "erp_connection is required: the ERP connection id, a positive whole number"}
	}
	n, err := strconv.Atoi(conn)
	if err != nil || n <= 0 {
		return 0, 0, paramError("erp_connection", conn, "want the ERP connection id, a positive whole number")
	}
	if actor == "" {
		return 0, 0, &apiError{Field: "actor_type", Message: "actor_type is required: " + erpsync.ActorTypeHint}
	}
	at, err := erpsync.ParseActorType(actor)
	if err != nil {
		return 0, 0, &apiError{Field: "actor_type", Message: err.Error()}
	}
	return n, at, nil
}

func paramError(name, value, want string) *apiError {
	return &apiError{Field: name, Message: fmt.Sprintf("%s=%q: %s", name, value, want)}
}

// knownParams refuses a query parameter the route does not know, or one given twice: a
// misspelt csv_column would otherwise read a CSV body line by line.
func knownParams(q url.Values, known []string) *apiError {
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vs := q[name]
		if !slices.Contains(known, name) {
			return &apiError{Field: name, Message: fmt.Sprintf("unknown query parameter %q: want %s", name, strings.Join(known, ", "))}
		}
		if len(vs) > 1 {
			return &apiError{Field: name, Message: fmt.Sprintf("query parameter %q is given %d times: give it once", name, len(vs))}
		}
	}
	return nil
}

// contentType returns the request's media type if it is one of want, else the status
// (415) and why. Only UTF-8 (or its subset US-ASCII) is accepted as charset.
func contentType(r *http.Request, want ...string) (string, int, error) {
	h := r.Header.Get("Content-Type")
	if h == "" {
		return "", http.StatusUnsupportedMediaType, fmt.Errorf("no Content-Type: want %s", strings.Join(want, ", "))
	}
	mt, params, err := mime.ParseMediaType(h)
	if err != nil {
		return "", http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: %v; want %s", h, err, strings.Join(want, ", "))
	}
	if !slices.Contains(want, mt) {
		return "", http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %s is not accepted here: want %s", mt, strings.Join(want, ", "))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		return "", http.StatusUnsupportedMediaType, fmt.Errorf("charset %s: keys must be sent as UTF-8", cs)
	}
	return mt, 0, nil
}

// bodyError marks an error of reading the request body (a client that stopped sending),
// as opposed to one of enqueueing.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// bodyReader reads r's body, at most limit bytes (then an *http.MaxBytesError): every read
// must bring a byte within Config.BodyTimeout, so a client that stalls mid-body (a hung
// export job, a stuck proxy) is cut off instead of holding its connection and spool for
// ever; a slow but steady one is not, whatever its body's size. Errors of the client's
// side are *bodyError.
func (a *API) bodyReader(w http.ResponseWriter, r *http.Request, limit int64) io.Reader {
	return &deadlineReader{r: http.MaxBytesReader(w, r.Body, limit), rc: http.NewResponseController(w), idle: a.cfg.BodyTimeout}
}

type deadlineReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	// ErrNotSupported (a ResponseWriter without a connection, as in httptest.NewRecorder)
	// leaves the body without a deadline.
	d.rc.SetReadDeadline(time.Now().Add(d.idle))
	n, err := d.r.Read(p)
	if err == io.EOF {
		// The body is whole: the connection is the server's again (its idle timeout).
		d.rc.SetReadDeadline(time.Time{})
	}
	var mbe *http.MaxBytesError
	if err != nil && err != io.EOF && !errors.As(err, &mbe) {
		err = &bodyError{err}
	}
	return n, err
}

// trickleNames are the members of a trickleRequest, the only ones accepted.
var trickleNames = []string{"erp_connection", "actor_type", "keys"}

// fieldOf is the apiError.Field of a JSON pointer: "/keys/2" → "keys[2]".
func fieldOf(ptr string) string {
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	if parts[0] == "" {
		return ""
	}
	f := parts[0]
	for _, p := range parts[1:] {
		f += "[" + p + "]"
	}
	return f
}

// trickleRequest is the body of POST /v1/keys.
type trickleRequest struct {
	ErpConnection int      `json:"erp_connection"`
	ActorType     string   `json:"actor_type"`
	Keys          []string `json:"keys"`
}

// postKeys hands keys over for trickle resync: intake.Producer.AddKey, as `enqueue key`.
// Every key is checked before the first is enqueued.
func (a *API) postKeys(w http.ResponseWriter, r *http.Request) {
	if _, status, err := contentType(r, typeJSON); err != nil {
		writeError(w, status, &apiError{Message: err.Error()})
		return
	}
	if e := knownParams(r.URL.Query(), nil); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	b, err := io.ReadAll(a.bodyReader(w, r, MaxTrickleBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, bodyTooLarge(-1, fmt.Sprintf("POST /v1/keys' cap of %d bytes", MaxTrickleBody), "send many keys with PUT /v1/runs/{run}/keys"))
		return
	}
	if err != nil {
		code, e := a.answer(err, nil)
		writeError(w, code, e)
		return
	}
	var req trickleRequest
	if err := decodeObject(b, &req, trickleNames, true); err != nil {
		e := &apiError{Message: fmt.Sprintf("body: line %d: %v; nothing was enqueued; want {\"erp_connection\": 3, \"actor_type\": \"Customer\", \"keys\": [\"10042\"]}", lineOf(b, -1), err)}
		var je *jsonError
		if errors.As(err, &je) {
			e.Line, e.Field, e.Reason = je.Line, fieldOf(je.Member), je.Reason
			e.Message = fmt.Sprintf("body: line %d: %v; nothing was enqueued; want {\"erp_connection\": 3, \"actor_type\": \"Customer\", \"keys\": [\"10042\"]}", je.Line, je)
		}
		writeError(w, http.StatusBadRequest, e)
		return
	}
	conn := ""
	if req.ErpConnection != 0 {
		conn = strconv.Itoa(req.ErpConnection)
	}
	connID, actor, e := target(conn, req.ActorType)
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	if len(req.Keys) == 0 {
		writeError(w, http.StatusBadRequest, &apiError{Field: "keys", Message: "keys is empty: give at least one key"})
		return
	}
	if e := firstBadKey(req.Keys); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	// The whole body is here: hand every key over whatever the client does meanwhile, as PUT.
	ctx, done, err := a.detach()
	if err != nil {
		code, e := a.answer(err, nil)
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, code, e)
		return
	}
	defer done()
	sc := scopeOf(r)
	for i, k := range req.Keys {
		if err := sc.producer.AddKey(ctx, connID, actor, k); err != nil {
			a.cfg.Logger.Warn().Err(err).Str("tenant", sc.tenant).Int("erp_connection", connID).Int("keys", i).Msg("intake API: trickle keys failed")
			code, e := a.answer(err, nil)
			done := "none of them was enqueued: send them again"
			if i > 0 {
				done = fmt.Sprintf("keys[0] to keys[%d] were enqueued: send the rest again", i-1)
			}
			e.Field, e.Message = "keys["+strconv.Itoa(i)+"]", fmt.Sprintf("keys[%d]: %s; %s", i, e.Message, done)
			writeError(w, code, e)
			return
		}
	}
	a.cfg.Logger.Info().Str("tenant", sc.tenant).Int("erp_connection", connID).Str("actor_type", actor.String()).Int("keys", len(req.Keys)).Str("remote", r.RemoteAddr).Msg("intake API: trickle keys enqueued")
	writeJSON(w, http.StatusOK, sc.producer.Trickled(len(req.Keys), connID, actor))
}

// firstBadKey checks every key of a POST before the first is enqueued: the first invalid one
// as a 400's body, or nil.
func firstBadKey(keys []string) *apiError {
	for i, k := range keys {
		if err := erpsync.ValidateKey(k); err != nil {
			reason := err.Error()
			var ke *erpsync.KeyError
			if errors.As(err, &ke) {
				reason = ke.Reason
			}
			field := "keys[" + strconv.Itoa(i) + "]"
			return &apiError{Field: field, Reason: reason,
				Message: fmt.Sprintf("%s %q: %s; nothing was enqueued", field, erpsync.Truncate(k, 40), reason)}
		}
	}
	return nil
}
