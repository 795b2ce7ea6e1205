package tenantstate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/erpresync/erpresync/erpsync"
)

// NotificationsPath is where the worker serves Notifications; it is the "Customer state
// change" URL to register in the Developer Portal (with the worker's public base URL).
const NotificationsPath = "/superoffice/state-change"

// ClaimContext is the JWT claim naming the tenant (SuperOffice's ctx claim).
const ClaimContext = "http://schemes.superoffice.net/identity/ctx"

// Limits of the notification endpoint.
const (
	// DefaultMaxNotificationBytes caps a notification's body (a few hundred bytes plus the
	// token in practice).
	DefaultMaxNotificationBytes = 16 << 10
	// jwksRefreshEvery is the JWKS's regular refresh; an unknown kid fetches it at most
	// once per jwksUnknownKIDEvery.
	jwksRefreshEvery    = time.Hour
	jwksUnknownKIDEvery = time.Minute
	// clockLeeway is the tolerance on exp, nbf and iat for clocks that disagree.
	clockLeeway = time.Minute
	// replayFloor is the least time a handled token is remembered.
	replayFloor = 10 * time.Minute
)

// ChangeType is a notification's ChangeType.
type ChangeType int

// The documented change types.
const (
	Upgrade        ChangeType = 0
	BackupRestored ChangeType = 1
	Suspend        ChangeType = 2
	Resume         ChangeType = 3
	Delete         ChangeType = 4
	Move           ChangeType = 5
)

var changeNames = map[ChangeType]string{Upgrade: "Upgrade", BackupRestored: "BackupRestored",
	Suspend: "Suspend", Resume: "Resume", Delete: "Delete", Move: "Move"}

func (c ChangeType) String() string {
	if n, ok := changeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("ChangeType(%d)", int(c))
}

// notification is the POSTed JSON: {ChangeType, ContextIdentifier, VersionName, FileVersion,
// Token, PublicEndpoint}.
type notification struct {
	ChangeType        *ChangeType
	ContextIdentifier string
	VersionName       string
	FileVersion       string
	Token             string
	PublicEndpoint    string
}

// NotificationsConfig configures NewNotifications.
type NotificationsConfig struct {
	// Environment is the SuperOffice environment's base URL (as in Config): its
	// /login/.well-known/jwks verifies the tokens and it is their required issuer. Empty:
	// each notification is verified against the environment of the tenant's Follower, so
	// one endpoint serves tenants of several environments.
	Environment string
	// Lookup returns the Follower of a tenant this worker serves, nil for any other: a
	// notification for a tenant not ours is refused (403).
	Lookup func(contextID string) *Follower
	// HTTPClient fetches the JWKS. Nil: a client with a 10 s timeout.
	HTTPClient *http.Client
	// MaxBodyBytes caps a notification's body; zero: DefaultMaxNotificationBytes. The read
	// deadline is the HTTP server's (its ReadTimeout).
	MaxBodyBytes int64
	// Logger receives one line per notification, refusals included. Zero value: none.
	Logger zerolog.Logger
	// Now is the clock for the token's lifetime; nil means time.Now.
	Now func() time.Time
	// Applied, when set, is called after a verified notification changed f's state (not for
	// a repeat), with the state it led to: the worker wakes a resumed tenant's lane with it.
	Applied func(f *Follower, st Status)
}

// Notifications serves SuperOffice's state-change notifications (POST, JSON). Safe for
// concurrent use.
type Notifications struct {
	cfg NotificationsConfig
	ctx context.Context // ends the JWKS refreshes
	now func() time.Time

	mu        sync.Mutex
	verifiers map[string]*verifier // by environment (the tokens' issuer)
}

// verifier checks the tokens one environment signs.
type verifier struct {
	keys   keyfunc.Keyfunc
	parser *jwt.Parser
}

// NewNotifications checks cfg and, with an Environment, fetches its JWKS (a failure is
// logged and retried when a token arrives); the JWKS of a tenant's environment is fetched
// when its first notification arrives. ctx ends the JWKS's hourly refresh.
func NewNotifications(ctx context.Context, cfg NotificationsConfig) (*Notifications, error) {
	if cfg.Environment != "" {
		if _, err := tenantRoot(cfg.Environment, "", false); err != nil {
			return nil, &erpsync.ConfigError{Field: "tenantstate.NotificationsConfig.Environment", What: "SuperOffice environment",
				Problem: fmt.Sprintf("%q: want a base URL such as https://online.superoffice.com", cfg.Environment)}
		}
	}
	if cfg.Lookup == nil {
		return nil, &erpsync.ConfigError{Field: "tenantstate.NotificationsConfig.Lookup", What: "tenant lookup", Problem: "is missing"}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxNotificationBytes
	}
	cfg.Environment = strings.TrimRight(cfg.Environment, "/")
	n := &Notifications{cfg: cfg, ctx: ctx, now: cfg.Now, verifiers: map[string]*verifier{}}
	if n.now == nil {
		n.now = time.Now
	}
	if cfg.Environment != "" {
		if _, err := n.verifier(cfg.Environment); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// verifier returns the verifier of env's tokens, made at its first use.
func (n *Notifications) verifier(env string) (*verifier, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if v, ok := n.verifiers[env]; ok {
		return v, nil
	}
	log := n.cfg.Logger
	keys, err := keyfunc.NewDefaultOverrideCtx(n.ctx, []string{env + "/login/.well-known/jwks"}, keyfunc.Override{
		Client:            n.cfg.HTTPClient,
		RefreshInterval:   jwksRefreshEvery,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(jwksUnknownKIDEvery), 1),
		RateLimitWaitMax:  time.Millisecond, // an unknown kid past the limit fails at once
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn().Err(err).Str("url", u).Msg("SuperOffice JWKS could not be fetched")
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("tenantstate: JWKS: %w", err)
	}
	v := &verifier{keys: keys, parser: jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(env),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(clockLeeway), jwt.WithTimeFunc(n.now))}
	n.verifiers[env] = v
	return v, nil
}

// The refusals of a notification; statusOf maps each to its HTTP status.
var (
	ErrNotificationMethod    = errors.New("state-change notification: POST only")
	ErrNotificationMediaType = errors.New("state-change notification: Content-Type must be application/json")
	ErrNotificationTooLarge  = errors.New("state-change notification: body too large")
	ErrNotificationMalformed = errors.New("state-change notification: not the documented JSON")
	ErrNotificationToken     = errors.New("state-change notification: token refused")
	ErrNotificationForeign   = errors.New("state-change notification: not for a tenant of this worker")
)

var notificationStatus = []struct {
	err    error
	status int
}{
	{ErrNotificationMethod, http.StatusMethodNotAllowed},
	{ErrNotificationMediaType, http.StatusUnsupportedMediaType},
	{ErrNotificationTooLarge, http.StatusRequestEntityTooLarge},
	{ErrNotificationMalformed, http.StatusBadRequest},
	{ErrNotificationToken, http.StatusUnauthorized},
	{ErrNotificationForeign, http.StatusForbidden},
}

// statusOf is the one mapping of a refusal to its HTTP status (500 for anything else).
func statusOf(err error) int {
	for _, m := range notificationStatus {
		if errors.Is(err, m.err) {
			return m.status
		}
	}
	return http.StatusInternalServerError
}

// ServeHTTP verifies a notification and acts on it: Suspend and Delete pause the tenant for
// every worker (Delete also logs an alert: purging its keys stays an operator's command), the
// other change types make its Follower ask the state API again. A token already handled is
// acknowledged and ignored. Refusals answer 401 (token), 403 (tenant), 4xx (request) and
// change nothing.
func (n *Notifications) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	msg, f, exp, err := n.verify(r)
	log := n.cfg.Logger.With().Str("remote", r.RemoteAddr).Logger()
	if err != nil {
		log.Warn().Err(err).Str("tenant", msg.ContextIdentifier).Msg("SuperOffice state-change notification refused")
		if errors.Is(err, ErrNotificationMethod) {
			w.Header().Set("Allow", http.MethodPost)
		}
		writeJSON(w, statusOf(err), map[string]string{"error": publicText(err)})
		return
	}
	change := *msg.ChangeType
	log = log.With().Str("tenant", f.ContextID()).Str("change", change.String()).Logger()
	fresh, err := f.firstSight(r.Context(), msg.Token, exp, n.now())
	if err != nil {
		log.Error().Err(err).Msg("SuperOffice state-change notification: could not record it")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "try again"})
		return
	}
	if !fresh {
		log.Info().Msg("SuperOffice state-change notification repeated: ignored")
		writeJSON(w, http.StatusOK, map[string]any{"handled": false, "reason": "already handled"})
		return
	}
	st, err := n.act(r.Context(), f, change)
	if err == nil && n.cfg.Applied != nil {
		n.cfg.Applied(f, st)
	}
	ev := log.Info()
	if err != nil {
		ev = log.Warn().Err(err)
	}
	ev.Str("state", st.State.String()).Str("endpoint", st.Endpoint).Str("public_endpoint", msg.PublicEndpoint).
		Str("version", msg.VersionName).Msg("SuperOffice state-change notification")
	writeJSON(w, http.StatusOK, map[string]any{"handled": true, "state": st.State.String()})
}

// act applies a verified change to f.
func (n *Notifications) act(ctx context.Context, f *Follower, change ChangeType) (Status, error) {
	switch change {
	case Suspend:
		err := f.Hold(ctx, Suspended, "Suspend notification")
		return f.Status(), err
	case Delete:
		n.cfg.Logger.Error().Str("tenant", f.ContextID()).Str("alert", "tenant_deleted").
			Msg("SuperOffice: tenant deleted (Delete notification): calls paused; purging its keys is an operator's command")
		err := f.Hold(ctx, Deleting, "Delete notification")
		return f.Status(), err
	default: // Upgrade, BackupRestored, Resume, Move: where and how is it now?
		return f.Refresh(ctx)
	}
}

// verify reads and checks a notification: method, media type, size, JSON, that the tenant
// is ours, then the token's signature, issuer (the tenant's environment), lifetime and
// tenant claim. It returns the token's expiry too.
func (n *Notifications) verify(r *http.Request) (msg notification, f *Follower, exp time.Time, err error) {
	msg, err = n.read(r)
	if err != nil {
		return msg, nil, exp, err
	}
	if f = n.cfg.Lookup(msg.ContextIdentifier); f == nil {
		return msg, nil, exp, fmt.Errorf("%w: %s", ErrNotificationForeign, msg.ContextIdentifier)
	}
	env := cmp.Or(f.env, n.cfg.Environment)
	if env == "" {
		return msg, nil, exp, fmt.Errorf("%w: %s has a fixed URL, no environment", ErrNotificationForeign, msg.ContextIdentifier)
	}
	v, err := n.verifier(env)
	if err != nil {
		return msg, nil, exp, err
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(msg.Token, claims, v.keys.KeyfuncCtx(r.Context())); err != nil {
		return msg, nil, exp, fmt.Errorf("%w: %v", ErrNotificationToken, err)
	}
	if ctxClaim, _ := claims[ClaimContext].(string); !strings.EqualFold(ctxClaim, msg.ContextIdentifier) {
		return msg, nil, exp, fmt.Errorf("%w: the token is for %q, the notification for %q", ErrNotificationForeign, ctxClaim, msg.ContextIdentifier)
	}
	if e, _ := claims.GetExpirationTime(); e != nil {
		exp = e.Time
	}
	return msg, f, exp, nil
}

// read checks the request and decodes the notification.
func (n *Notifications) read(r *http.Request) (notification, error) {
	var msg notification
	if r.Method != http.MethodPost {
		return msg, ErrNotificationMethod
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != "application/json" && mt != "text/json") {
		return msg, ErrNotificationMediaType
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, n.cfg.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return msg, ErrNotificationTooLarge
		}
		return msg, fmt.Errorf("%w: %v", ErrNotificationMalformed, err)
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		return msg, fmt.Errorf("%w: %v", ErrNotificationMalformed, err)
	}
	switch {
	case msg.ChangeType == nil || changeNames[*msg.ChangeType] == "":
		return msg, fmt.Errorf("%w: ChangeType missing or not 0-5", ErrNotificationMalformed)
	case msg.ContextIdentifier == "" || msg.Token == "":
		return msg, fmt.Errorf("%w: ContextIdentifier and Token are required", ErrNotificationMalformed)
	}
	return msg, nil
}

// publicText is what a refused sender is told: the refusal's kind, not the detail (logged).
func publicText(err error) string {
	for _, m := range notificationStatus {
		if errors.Is(err, m.err) {
			return m.err.Error()
		}
	}
	return "internal error"
}

// firstSight records a handled token (by its hash) until it expires and reports whether it
// is new: a replay within its lifetime changes nothing.
func (f *Follower) firstSight(ctx context.Context, token string, exp, now time.Time) (bool, error) {
	if f.env == "" {
		return true, nil // a fixed tenant has nothing to change
	}
	ttl := max(exp.Sub(now)+clockLeeway, replayFloor)
	sum := sha256.Sum256([]byte(token))
	return f.rdb.SetNX(ctx, f.key+":seen:"+hex.EncodeToString(sum[:16]), 1, ttl).Result()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
