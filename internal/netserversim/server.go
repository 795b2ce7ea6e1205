package netserversim

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the simulated NetServer. It implements http.Handler; all methods are safe for
// concurrent use, including while it serves.
type Server struct {
	cfg     Config
	tickets *ticketStore
	faults  *faults
	counts  *counters
	seq     atomic.Int64
	traffic traffic
	hosts   tenantHosts

	jwtOnce sync.Once
	jwtKey  *rsa.PrivateKey
	jwtErr  error
}

// New returns a Server for cfg after filling defaults (see Config) and validating it.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("netserversim: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		tickets: newTicketStore(cfg.TicketTTL, cfg.SlidingTickets, cfg.Now),
		faults:  newFaults(),
		counts:  newCounters(),
		jwtKey:  cfg.JWTKey,
	}
	s.hosts.state, s.hosts.since = StateRunning, cfg.Now()
	return s, nil
}

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// IssueTicket mints a valid ticket, as a successful login would, without counting a login.
func (s *Server) IssueTicket() string { return s.tickets.issue() }

// IssuedTickets returns every ticket issued so far (by logins and IssueTicket), expired
// ones included, oldest first: what a test searches logs and storage for.
func (s *Server) IssuedTickets() []string { return s.tickets.all() }

// ExpireTickets invalidates every ticket issued so far; later logins issue fresh ones.
// Calls in flight that already passed the ticket check are not affected.
func (s *Server) ExpireTickets() { s.tickets.expireAll() }

// Counts returns a consistent copy of all counters.
func (s *Server) Counts() Snapshot { return s.counts.snapshot() }

// ResyncCount is how many delivered IsOk=true replies covered key.
func (s *Server) ResyncCount(key string) int { return s.counts.resyncedOf(key) }

// Seen is how many processed ForceResyncExternal requests carried key.
func (s *Server) Seen(key string) int { return s.counts.seenOf(key) }

// Reset zeroes every counter. Faults, poison keys and tickets are untouched (see
// ClearFaults and ExpireTickets).
func (s *Server) Reset() { s.counts.reset() }

// ServeHTTP routes by lower-cased path:
//
//	/{tenant}/remote/services88/erpsync.svc       ErpSync (ForceResyncExternal)
//	/{tenant}/remote/services88/soprincipal.svc   SoPrincipal (AuthenticateUsernamePassword)
//	/{tenant}/api/v1/agents/erpsync/forceresyncexternal   the same call over the WebAPI (REST, JSON)
//	/login/api/partnersystemuser/authenticate     Online system-user login (JSON)
//	/login/.well-known/jwks                       the JWT signing key as a JWK set
//	/api/state/{ContextIdentifier}                the tenant state API
//	/_sim/...                                     admin API, when Config.Admin
//
// A request to a tenant path on a host other than the tenant's (Config.Hosts) answers 421,
// and one while the tenant is not running 503 (see SetTenantState). Anything else is 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := s.cfg.servicePath(strings.ToLower(r.URL.Path))
	svc := s.cfg.tenantPath() + "/remote/services88/"
	tenantPath := strings.HasPrefix(p, s.cfg.tenantPath()+"/") && !strings.HasPrefix(p, "/_sim/") &&
		!strings.HasPrefix(p, "/login/") && !strings.HasPrefix(p, "/api/state/")
	if tenantPath && s.gate(w, r, p == svc+"erpsync.svc" || p == s.cfg.tenantPath()+restForceResyncPath) {
		return
	}
	switch {
	case s.cfg.Admin && strings.HasPrefix(p, "/_sim/"):
		s.serveAdmin(w, r)
	case p == "/login/api/partnersystemuser/authenticate":
		s.traffic.begin()
		defer s.traffic.end()
		s.serveSystemUser(w, r)
	case p == "/login/.well-known/jwks":
		s.serveJWKS(w, r)
	case strings.HasPrefix(p, "/api/state/") && !strings.Contains(p[len("/api/state/"):], "/"):
		s.serveState(w, r, r.URL.Path[len("/api/state/"):])
	case p == svc+"erpsync.svc":
		s.traffic.begin()
		defer s.traffic.end()
		s.serveCall(w, r, s.handleErpSync)
	case p == svc+"soprincipal.svc":
		s.traffic.begin()
		defer s.traffic.end()
		s.servePrincipal(w, r)
	case p == s.cfg.tenantPath()+restForceResyncPath:
		s.serveCall(w, r, s.handleREST)
	default:
		w.Header().Set("Content-Type", ctHTML)
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "<!DOCTYPE html>\n<html><head><title>404 - File or directory not found.</title></head>"+
			"<body><h2>404 - File or directory not found.</h2></body></html>\n")
	}
}

// The Services88 SOAP headers each endpoint understands (§3.3, §7.1); read-only.
var (
	erpSyncHeaders   = map[string]bool{"ApplicationToken": true, "Credentials": true, "TimeZone": true}
	principalHeaders = map[string]bool{"ApplicationToken": true}
)

// Messages of ExceptionInfo replies other than the ticket one. OUR ASSUMPTION (§12 [U]).
const (
	msgAppToken   = "The application token is missing or invalid"
	msgNotGranted = "The application has not been granted access to the ErpSync agent"
)

// serveCall serves a ForceResyncExternal call over either API: a pre-processing fault is
// injected, or handle answers the request and the reply is delivered after its latency.
func (s *Server) serveCall(w http.ResponseWriter, r *http.Request, handle func(*http.Request) (reply, tally, CallInfo)) {
	if kind, retryAfter, ok := s.faults.pre(s.cfg.Now()); ok {
		s.inject(w, r, kind, retryAfter)
		return
	}
	rep, t, ci := handle(r)
	s.deliver(w, r, rep, t, s.faults.latencyFor(ci), true)
}

// handleErpSync validates and processes one ErpSync.svc request, returning the reply, what it
// counts when delivered, and the call description for latency functions.
func (s *Server) handleErpSync(r *http.Request) (reply, tally, CallInfo) {
	ci := CallInfo{Seq: s.seq.Add(1)}
	env, early, outcome := s.readEnvelope(r, ActionForceResyncExternal)
	if env == nil {
		return early, tally{outcome: outcome}, ci
	}
	rh, hp := readHeaders(env.headers, erpSyncHeaders)
	if hp != nil {
		return faultReply("", hp.code, hp.text), tally{outcome: OutcomeFault}, ci
	}
	req, derr := parseForceResync(env.body)
	if derr != nil {
		return deserializationFailed(derr), tally{outcome: OutcomeFault}, ci
	}

	keys := uniqueKeys(req.keys)
	ci.ErpConnectionID, ci.Actor, ci.Keys = req.connID, req.actor, keys
	v := s.resync(req.connID, req.actor, keys, s.appTokenOK(rh), rh.ticket)
	if v.refusal != "" {
		ex := exceptionInfo{typ: s.cfg.ExceptionType, message: v.refusal}
		return exceptionReply("ForceResyncExternalResponse", ex), tally{outcome: OutcomeException}, ci
	}
	return resyncReply(v.pr), v.t, ci
}

// verdict is what the simulator decided about a ForceResyncExternal request, whichever
// transport carried it.
type verdict struct {
	refusal    string // non-empty: the call is refused with this exception message
	notGranted bool   // the refusal is msgNotGranted
	ticketBad  bool   // the refusal is the ticket's
	pr         pluginResponse
	t          tally
}

// resync counts a parsed request as processed and decides its answer: a refusal (application
// token, ticket, ErpSync not granted, in that order), IsOk=false for a batch holding a poison
// key, or IsOk=true with one ExpectedChange per key. keys must be unique.
func (s *Server) resync(connID int32, actor ActorType, keys []string, appTokenOK bool, ticket string) verdict {
	s.counts.processed(keys)
	switch {
	case !appTokenOK:
		return verdict{refusal: msgAppToken}
	case !s.tickets.valid(ticket):
		return verdict{refusal: s.cfg.ExceptionMessage, ticketBad: true}
	case s.cfg.ErpSyncNotGranted:
		return verdict{refusal: msgNotGranted, notGranted: true}
	}

	if bad := s.faults.poisoned(keys); len(bad) > 0 {
		quoted := make([]string, len(bad))
		for i, k := range bad {
			quoted[i] = "'" + k + "'"
		}
		pr := pluginResponse{
			userExpl: "The ERP system rejected the synchronization.",
			techExpl: fmt.Sprintf("ERP connection %d rejected external key %s (actor type %s)",
				connID, strings.Join(quoted, ", "), actor),
			errorCode:  s.cfg.ErrorCode,
			nilChanges: true,
			status:     "Error",
			omitStatus: s.cfg.OmitStatus,
		}
		return verdict{pr: pr, t: tally{outcome: OutcomeRejected}}
	}

	changes := make([]Change, len(keys))
	for i, k := range keys {
		changes[i] = ExpectedChange(actor, k)
	}
	pr := pluginResponse{isOk: true, changes: changes, status: "Ok", omitStatus: s.cfg.OmitStatus}
	return verdict{pr: pr, t: tally{outcome: OutcomeOK, resynced: keys, changes: changes}}
}

// readEnvelope applies WCF's transport and envelope rules in WCF's order: method, content
// type, size, well-formedness, envelope version, SOAPAction. On failure env is nil and the
// early reply and its outcome say what to answer.
func (s *Server) readEnvelope(r *http.Request, wantAction string) (env *envelope, early reply, outcome Outcome) {
	if r.Method != http.MethodPost {
		rep := plain(http.StatusMethodNotAllowed, "Method not allowed.")
		rep.header = http.Header{"Allow": {http.MethodPost}}
		return nil, rep, OutcomeBadRequest
	}
	ct := r.Header.Get("Content-Type")
	if !hasMediaType(ct, "text/xml") {
		return nil, unsupportedMediaType(ct), OutcomeBadRequest
	}
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, plain(http.StatusRequestEntityTooLarge, "Request Entity Too Large"), OutcomeBadRequest
		}
		return nil, plain(http.StatusBadRequest, "Bad Request"), OutcomeBadRequest
	}
	root, err := parseXML(data)
	if err != nil {
		return nil, plain(http.StatusBadRequest, "Bad Request"), OutcomeBadRequest
	}
	env, e := splitEnvelope(root)
	switch e {
	case envVersionMismatch:
		return nil, versionMismatch(), OutcomeFault
	case envBadRequest:
		return nil, plain(http.StatusBadRequest, "Bad Request"), OutcomeBadRequest
	}
	if action := soapAction(r); action != wantAction {
		return nil, actionNotSupported(action), OutcomeFault
	}
	return env, reply{}, ""
}

// soapAction is the SOAPAction header with surrounding quotes and spaces removed.
func soapAction(r *http.Request) string {
	a := strings.TrimSpace(r.Header.Get("SOAPAction"))
	if len(a) >= 2 && a[0] == '"' && a[len(a)-1] == '"' {
		a = a[1 : len(a)-1]
	}
	return a
}

// hasMediaType accepts the media type want with no charset or charset utf-8 (text/xml is
// WCF's basicHttpBinding text encoder, which also reads UTF-16, which the simulator does not).
func hasMediaType(ct, want string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != want {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// inject answers with a pre-processing fault; the call is counted before anything is sent.
func (s *Server) inject(w http.ResponseWriter, r *http.Request, kind FaultKind, retryAfter time.Duration) {
	switch kind {
	case FaultDrop:
		// Read the request first so the client sees the connection close while waiting for
		// the reply (not while sending), then close without a byte of reply.
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(nil, r.Body, s.cfg.MaxRequestBytes))
		s.counts.call(OutcomeDropped)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler) // HTTP/2 or a recorder: abort the stream instead
		}
		_ = conn.Close()
	case FaultMisdirected:
		s.counts.call(OutcomeMisdirected)
		writeNow(w, plain(http.StatusMisdirectedRequest, "Wrong subdomain used to access tenant"))
	case FaultThrottle:
		s.counts.call(OutcomeThrottled)
		setRetryAfter(w, retryAfter)
		writeNow(w, plain(http.StatusTooManyRequests, "Too Many Requests"))
	default:
		s.counts.call(OutcomeUnavailable)
		if retryAfter > 0 {
			setRetryAfter(w, retryAfter)
		}
		writeNow(w, maintenancePage())
	}
}

// setRetryAfter sets Retry-After to d in whole seconds, rounded up.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}

func writeNow(w http.ResponseWriter, rep reply) {
	writeHead(w, rep)
	_, _ = w.Write(rep.body)
}

// writeHead sends rep's status line and headers, Content-Type and Content-Length included.
func writeHead(w http.ResponseWriter, rep reply) {
	h := w.Header()
	for k, v := range rep.header {
		h[k] = v
	}
	h.Set("Content-Type", rep.contentType)
	h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	w.WriteHeader(rep.status)
}

// deliver waits latency, writes rep (in slow chunks when slow is allowed and configured) and
// counts t only if the reply got out. The counters are committed before the reply's last
// byte is written, so a client that has read a complete reply always finds it counted; if
// that last write fails the commit is undone and the call counts as undelivered.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, rep reply, t tally, latency time.Duration, slow bool) {
	ctx := r.Context()
	if latency > 0 && !sleep(ctx, latency) {
		s.counts.undelivered(t)
		return
	}
	rc := http.NewResponseController(w)
	writeHead(w, rep)

	chunk, delay := 0, time.Duration(0)
	if slow {
		chunk, delay = s.faults.slow()
	}
	body := rep.body
	if len(body) == 0 {
		_ = s.counts.commit(t)
		return
	}
	if err := writeChunks(ctx, w, rc, body[:len(body)-1], chunk, delay); err != nil {
		s.counts.undelivered(t)
		return
	}
	if err := rc.Flush(); err != nil || ctx.Err() != nil {
		s.counts.undelivered(t)
		return
	}
	undo := s.counts.commit(t)
	if _, err := w.Write(body[len(body)-1:]); err != nil {
		undo()
		return
	}
	if err := rc.Flush(); err != nil {
		undo()
	}
}

func writeChunks(ctx context.Context, w io.Writer, rc *http.ResponseController, b []byte, chunk int, delay time.Duration) error {
	if chunk <= 0 {
		_, err := w.Write(b)
		return err
	}
	for i := 0; i < len(b); i += chunk {
		if i > 0 && delay > 0 && !sleep(ctx, delay) {
			return ctx.Err()
		}
		if _, err := w.Write(b[i:min(i+chunk, len(b))]); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits d or until ctx is done; it reports whether the full wait elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Server) servePrincipal(w http.ResponseWriter, r *http.Request) {
	if s.faults.inOutage(s.cfg.Now()) {
		s.counts.loginError()
		writeNow(w, maintenancePage())
		return
	}
	rep, t := s.handlePrincipal(r)
	s.deliver(w, r, rep, t, 0, false)
}

func (s *Server) handlePrincipal(r *http.Request) (reply, tally) {
	errT := tally{login: func(l *Logins) *int { return &l.Errors }}
	env, early, _ := s.readEnvelope(r, ActionAuthenticateUsernamePassword)
	if env == nil {
		return early, errT
	}
	rh, hp := readHeaders(env.headers, principalHeaders)
	if hp != nil {
		return faultReply("", hp.code, hp.text), errT
	}
	req, derr := parseLogin(env.body)
	if derr != nil {
		return deserializationFailed(derr), errT
	}
	if !s.appTokenOK(rh) {
		return exceptionReply("AuthenticateResponse", exceptionInfo{typ: s.cfg.ExceptionType, message: msgAppToken}), errT
	}
	if s.checkPassword(req.user, req.password) {
		return authenticateReply(req.user, s.tickets.issue(), s.cfg.tenantName()),
			tally{login: func(l *Logins) *int { return &l.PasswordOK }}
	}
	return authenticateReply("", "", ""), tally{login: func(l *Logins) *int { return &l.PasswordRefused }}
}

// appTokenOK reports whether a SOAP call's ApplicationToken header is acceptable: Online
// requires it to equal Config.AppToken; on-site ignores it (§3.3).
func (s *Server) appTokenOK(rh requestHeaders) bool {
	return !s.cfg.Online || (rh.hasAppToken && rh.appToken == s.cfg.AppToken)
}

func (s *Server) checkPassword(user, password string) bool {
	for u, p := range s.cfg.Users {
		if strings.EqualFold(u, user) {
			return p == password
		}
	}
	return false
}
