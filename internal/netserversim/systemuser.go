package netserversim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Claim names in the system-user JWT (§7.2).
const (
	ClaimTicket       = "http://schemes.superoffice.net/identity/ticket"
	ClaimContext      = "http://schemes.superoffice.net/identity/ctx"
	ClaimNetServerURL = "http://schemes.superoffice.net/identity/netserver_url"
	ClaimWebAPIURL    = "http://schemes.superoffice.net/identity/webapi_url"
)

// JWT issuer and audience (ours; the real values name the SuperOffice environment).
const (
	jwtIssuer   = "netserversim"
	jwtAudience = "spn:netserversim"
)

// systemUserRequest is the JSON body of POST /Login/api/PartnerSystemUser/Authenticate.
type systemUserRequest struct {
	SignedSystemToken string
	ApplicationToken  string
	ContextIdentifier string
	ReturnTokenType   string
}

// systemUserResponse is its answer; absent values are JSON null.
type systemUserResponse struct {
	IsSuccessful bool
	ErrorMessage *string
	Token        *string
}

// Refusal messages. OUR ASSUMPTION: the service's texts are undocumented.
const (
	msgSysAppToken  = "Invalid application token"
	msgSysContext   = "Unknown context identifier"
	msgSysTokenType = "Unsupported ReturnTokenType; use JWT"
	msgSysFormat    = "SignedSystemToken must be token.yyyyMMddHHmm.signature"
	msgSysToken     = "Unknown system user token"
	msgSysTime      = "SignedSystemToken timestamp is not recent"
	msgSysNoKey     = "No public key is registered for this application"
	msgSysSignature = "SignedSystemToken signature is invalid"
)

func (s *Server) serveSystemUser(w http.ResponseWriter, r *http.Request) {
	errT := tally{login: func(l *Logins) *int { return &l.Errors }}
	if r.Method != http.MethodPost {
		rep := plain(http.StatusMethodNotAllowed, "Method not allowed.")
		rep.header = http.Header{"Allow": {http.MethodPost}}
		s.deliver(w, r, rep, errT, 0, false)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil ||
		(mt != "application/json" && mt != "text/json") {
		s.deliver(w, r, plain(http.StatusUnsupportedMediaType, "Unsupported Media Type"), errT, 0, false)
		return
	}
	var req systemUserRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		s.deliver(w, r, plain(http.StatusBadRequest, "Bad Request"), errT, 0, false)
		return
	}

	refuse := func(msg string) {
		body, _ := json.Marshal(systemUserResponse{ErrorMessage: &msg})
		rep := reply{status: http.StatusOK, contentType: ctJSON, body: body}
		s.deliver(w, r, rep, tally{login: func(l *Logins) *int { return &l.SystemUserRefused }}, 0, false)
	}
	if msg := s.checkSystemUser(req); msg != "" {
		refuse(msg)
		return
	}
	ticket := s.tickets.issue()
	token, err := s.signJWT(s.systemUserClaims(r, ticket))
	if err != nil {
		s.deliver(w, r, plain(http.StatusInternalServerError, "Internal Server Error"), errT, 0, false)
		return
	}
	body, _ := json.Marshal(systemUserResponse{IsSuccessful: true, Token: &token})
	rep := reply{status: http.StatusOK, contentType: ctJSON, body: body}
	s.deliver(w, r, rep, tally{login: func(l *Logins) *int { return &l.SystemUserOK }}, 0, false)
}

// checkSystemUser returns "" when req is acceptable, else the refusal message.
func (s *Server) checkSystemUser(req systemUserRequest) string {
	if s.cfg.AppToken != "" && req.ApplicationToken != s.cfg.AppToken {
		return msgSysAppToken
	}
	if t := s.cfg.tenantName(); t != "" && !strings.EqualFold(req.ContextIdentifier, t) {
		return msgSysContext
	}
	if req.ReturnTokenType != "" && !strings.EqualFold(req.ReturnTokenType, "JWT") {
		return msgSysTokenType
	}
	// token "." yyyyMMddHHmm "." base64(RSA-SHA256(token "." timestamp)) (§7.2 step 2)
	signed := req.SignedSystemToken
	i := strings.LastIndexByte(signed, '.')
	if i < 0 {
		return msgSysFormat
	}
	payload, sigText := signed[:i], signed[i+1:]
	j := strings.LastIndexByte(payload, '.')
	if j <= 0 {
		return msgSysFormat
	}
	token, stamp := payload[:j], payload[j+1:]
	ts, err := time.Parse("200601021504", stamp)
	if err != nil || len(stamp) != 12 {
		return msgSysFormat
	}
	sig, err := base64.StdEncoding.DecodeString(sigText)
	if err != nil {
		return msgSysFormat
	}
	if s.cfg.SystemUserToken != "" && token != s.cfg.SystemUserToken {
		return msgSysToken
	}
	now := s.cfg.Now().UTC()
	if ts.Before(now.Add(-s.cfg.SystemTokenMaxAge)) || ts.After(now.Add(5*time.Minute)) {
		return msgSysTime
	}
	if s.cfg.SystemUserPublicKey == nil {
		return msgSysNoKey
	}
	sum := sha256.Sum256([]byte(payload))
	if rsa.VerifyPKCS1v15(s.cfg.SystemUserPublicKey, crypto.SHA256, sum[:], sig) != nil {
		return msgSysSignature
	}
	return ""
}

func (s *Server) systemUserClaims(r *http.Request, ticket string) map[string]any {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	if t := s.cfg.tenantName(); t != "" {
		base += "/" + t
	}
	now := s.cfg.Now()
	return map[string]any{
		"iss":             jwtIssuer,
		"aud":             jwtAudience,
		"sub":             "system-user",
		"iat":             now.Unix(),
		"nbf":             now.Unix(),
		"exp":             now.Add(s.cfg.TicketTTL).Unix(),
		ClaimTicket:       ticket,
		ClaimContext:      s.cfg.tenantName(),
		ClaimNetServerURL: base + "/Remote/Services88/",
		ClaimWebAPIURL:    base + "/api/",
	}
}

// JWTPublicKey returns the key that verifies the system-user JWTs (RS256), generating the
// signing key if Config.JWTKey was nil and none was generated yet.
func (s *Server) JWTPublicKey() (*rsa.PublicKey, error) {
	k, err := s.signingKey()
	if err != nil {
		return nil, err
	}
	return &k.PublicKey, nil
}

func (s *Server) signingKey() (*rsa.PrivateKey, error) {
	s.jwtOnce.Do(func() {
		if s.jwtKey == nil {
			s.jwtKey, s.jwtErr = rsa.GenerateKey(rand.Reader, 2048)
		}
	})
	return s.jwtKey, s.jwtErr
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func keyID(pub *rsa.PublicKey) string {
	sum := sha256.Sum256(pub.N.Bytes())
	return b64url(sum[:8])
}

// signJWT returns a compact RS256 JWT for claims.
func (s *Server) signJWT(claims map[string]any) (string, error) {
	key, err := s.signingKey()
	if err != nil {
		return "", fmt.Errorf("netserversim: JWT key: %w", err)
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": keyID(&key.PublicKey)})
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64url(hdr) + "." + b64url(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + b64url(sig), nil
}

// serveJWKS publishes the JWT key like https://{env}.superoffice.com/login/.well-known/jwks.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeNow(w, plain(http.StatusMethodNotAllowed, "Method not allowed."))
		return
	}
	pub, err := s.JWTPublicKey()
	if err != nil {
		writeNow(w, plain(http.StatusInternalServerError, "Internal Server Error"))
		return
	}
	body, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": keyID(pub),
		"n": b64url(pub.N.Bytes()), "e": b64url(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	writeNow(w, reply{status: http.StatusOK, contentType: ctJSON, body: body})
}
