package netserversim

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TenantState is the tenant's state as the state API reports it (§9; numbers as documented).
type TenantState int

// The documented states. Only Running and OnlineMaintenance serve the APIs.
const (
	StateUnknown            TenantState = 0
	StateProvisioning       TenantState = 1
	StateRunning            TenantState = 2
	StateDeleted            TenantState = 3
	StateSuspended          TenantState = 4
	StateOnlineMaintenance  TenantState = 5
	StateOfflineMaintenance TenantState = 6
	StateProvisioningFailed TenantState = 8
	StateDeleting           TenantState = 10
	StateDeleteFailed       TenantState = 11
	StateMigrationPending   TenantState = 12
)

var stateNames = map[TenantState]string{
	StateUnknown: "Unknown", StateProvisioning: "Provisioning", StateRunning: "Running",
	StateDeleted: "Deleted", StateSuspended: "Suspended", StateOnlineMaintenance: "OnlineMaintenance",
	StateOfflineMaintenance: "OfflineMaintenance", StateProvisioningFailed: "ProvisioningFailed",
	StateDeleting: "Deleting", StateDeleteFailed: "DeleteFailed", StateMigrationPending: "MigrationPending",
}

// String is the state's name as the state API writes it ("Running"); unknown numbers print
// as "TenantState(7)".
func (s TenantState) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("TenantState(%d)", int(s))
}

// ParseTenantState reads a state name (case-insensitive).
func ParseTenantState(name string) (TenantState, error) {
	for st, n := range stateNames {
		if strings.EqualFold(n, name) {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown tenant state %q (want one of Unknown, Provisioning, Running, Deleted, Suspended, OnlineMaintenance, OfflineMaintenance, ProvisioningFailed, Deleting, DeleteFailed, MigrationPending)", name)
}

// Running reports whether the APIs are available in s (Running, OnlineMaintenance).
func (s TenantState) Running() bool { return s == StateRunning || s == StateOnlineMaintenance }

// ChangeType is a state-change notification's ChangeType (§9).
type ChangeType int

// The documented change types.
const (
	ChangeUpgrade        ChangeType = 0
	ChangeBackupRestored ChangeType = 1
	ChangeSuspend        ChangeType = 2
	ChangeResume         ChangeType = 3
	ChangeDelete         ChangeType = 4
	ChangeMove           ChangeType = 5
)

// Notification is the JSON body SuperOffice POSTs to an app's "Customer state change" URL.
type Notification struct {
	ChangeType        ChangeType
	ContextIdentifier string
	VersionName       string
	FileVersion       string
	Token             string
	PublicEndpoint    string `json:",omitempty"`
}

// The simulated installation's version, as the state API and notifications name it (ours).
const (
	simVersionName = "Release_11.10_2026.02.24-02"
	simFileVersion = "11.10.721.0"
	// DefaultStateValidFor is how far ahead the state API puts ValidUntil (OUR ASSUMPTION: no
	// interval is documented).
	DefaultStateValidFor = time.Minute
	// notificationTTL is the lifetime (exp - iat) of a notification's token (OUR ASSUMPTION).
	notificationTTL = 5 * time.Minute
	// misdirectedText is the documented body of a 421 (§8).
	misdirectedText = "Wrong subdomain used to access tenant"
)

// tenantHosts is where the tenant lives and in which state: the farm of hosts a Running
// serves (Config.Hosts), the environment's own host, and the state machine.
type tenantHosts struct {
	mu      sync.Mutex
	env     string   // "127.0.0.1:port" of the environment (auth, JWKS, state API); "" unattached
	farm    []string // "127.0.0.1:port" of each tenant host; empty: the tenant lives on env
	current int
	state   TenantState
	since   time.Time
	calls   atomic.Int64 // state API requests served
}

// attach records the hosts a Running listens on (called once by Start).
func (h *tenantHosts) attach(env string, farm []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.env, h.farm = env, farm
}

// tenantHost is the host that serves the tenant now ("" when unattached).
func (h *tenantHosts) tenantHostLocked() string {
	if len(h.farm) == 0 {
		return h.env
	}
	return h.farm[h.current]
}

// SetTenantState puts the tenant in st from now. Outside Running and OnlineMaintenance every
// request to a tenant path answers 503 with the maintenance page (OUR ASSUMPTION: the answer
// during OfflineMaintenance or suspension is undocumented, §9).
func (s *Server) SetTenantState(st TenantState) {
	h := &s.hosts
	h.mu.Lock()
	defer h.mu.Unlock()
	if st != h.state {
		h.state, h.since = st, s.cfg.Now()
	}
}

// TenantState returns the tenant's state and since when it holds.
func (s *Server) TenantState() (TenantState, time.Time) {
	h := &s.hosts
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.since
}

// Move moves the tenant to farm host i (0 ≤ i < Config.Hosts): from now on the other hosts
// answer its paths with 421 "Wrong subdomain used to access tenant".
func (s *Server) Move(i int) error {
	h := &s.hosts
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < 0 || i >= len(h.farm) {
		return fmt.Errorf("netserversim: move to host %d: the simulator serves %d tenant hosts (Config.Hosts)", i, len(h.farm))
	}
	h.current = i
	return nil
}

// TenantHost returns the index of the farm host the tenant lives on.
func (s *Server) TenantHost() int {
	s.hosts.mu.Lock()
	defer s.hosts.mu.Unlock()
	return s.hosts.current
}

// StateRequests is how many state API requests the simulator answered.
func (s *Server) StateRequests() int { return int(s.hosts.calls.Load()) }

// gate answers a request to a tenant path that the tenant's host or state refuses: 421 on a
// host other than the tenant's (the environment host included, when there is a farm), 503
// when the tenant is not running. It reports whether it answered.
func (s *Server) gate(w http.ResponseWriter, r *http.Request, call bool) bool {
	h := &s.hosts
	h.mu.Lock()
	wrongHost := len(h.farm) > 0 && !strings.EqualFold(r.Host, h.tenantHostLocked())
	running := h.state.Running()
	h.mu.Unlock()
	switch {
	case wrongHost:
		if call {
			s.counts.call(OutcomeMisdirected)
		}
		writeNow(w, plain(http.StatusMisdirectedRequest, misdirectedText))
	case !running:
		if call {
			s.counts.call(OutcomeUnavailable)
		}
		writeNow(w, maintenancePage())
	default:
		return false
	}
	return true
}

// stateAnswer is the state API's JSON (§9; field names and order as documented).
type stateAnswer struct {
	ContextIdentifier string
	Endpoint          string
	State             string
	IsRunning         bool
	ValidUntil        string
	Api               string
	Version           string
}

// serveState answers GET /api/state/{ContextIdentifier}. An unknown context answers State
// Unknown with empty URLs (OUR ASSUMPTION: undocumented).
func (s *Server) serveState(w http.ResponseWriter, r *http.Request, ctxID string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeNow(w, plain(http.StatusMethodNotAllowed, "Method not allowed."))
		return
	}
	h := &s.hosts
	h.calls.Add(1)
	now := s.cfg.Now()
	a := stateAnswer{ContextIdentifier: ctxID, State: StateUnknown.String(),
		ValidUntil: now.Add(s.cfg.StateValidFor).UTC().Format("2006-01-02T15:04:05.0000000Z")}
	if strings.EqualFold(ctxID, s.cfg.tenantName()) {
		h.mu.Lock()
		host, st := h.tenantHostLocked(), h.state
		h.mu.Unlock()
		a.ContextIdentifier = s.cfg.tenantName()
		a.Endpoint = "http://" + host + "/" + s.cfg.tenantName()
		a.Api = a.Endpoint + "/api"
		a.State, a.IsRunning, a.Version = st.String(), st.Running(), simVersionName
	}
	body, _ := json.Marshal(a)
	writeNow(w, reply{status: http.StatusOK, contentType: ctJSON, body: body})
}

// EnvironmentURL is the base URL of the simulated environment ("http://127.0.0.1:port", the
// role of https://sod.superoffice.com): login, JWKS, state API, and the notification issuer.
// Empty for a Server that is not running.
func (s *Server) EnvironmentURL() string {
	s.hosts.mu.Lock()
	defer s.hosts.mu.Unlock()
	if s.hosts.env == "" {
		return ""
	}
	return "http://" + s.hosts.env
}

// Notification returns a state-change notification for the tenant as SuperOffice sends it:
// Token is an RS256 JWT from the simulator's key (the one its JWKS publishes) with iss the
// environment URL, iat/nbf now, exp 5 minutes later, a jti and the ctx claim; a Move names
// the tenant's host in PublicEndpoint. OUR ASSUMPTIONS: the token's claims and lifetime.
func (s *Server) Notification(change ChangeType) (Notification, error) {
	now := s.cfg.Now()
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	token, err := s.signJWT(map[string]any{
		"iss":        s.EnvironmentURL(),
		"iat":        now.Unix(),
		"nbf":        now.Unix(),
		"exp":        now.Add(notificationTTL).Unix(),
		"jti":        b64url(jti),
		ClaimContext: s.cfg.tenantName(),
	})
	if err != nil {
		return Notification{}, err
	}
	n := Notification{ChangeType: change, ContextIdentifier: s.cfg.tenantName(),
		VersionName: simVersionName, FileVersion: simFileVersion, Token: token}
	if change == ChangeMove {
		s.hosts.mu.Lock()
		n.PublicEndpoint = s.hosts.tenantHostLocked()
		s.hosts.mu.Unlock()
	}
	return n, nil
}
