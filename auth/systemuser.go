package auth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/httpcall"
)

// ticketClaim is the JWT claim that carries the NetServer ticket.
const ticketClaim = "http://schemes.superoffice.net/identity/ticket"

// defaultSystemUserMaxAge is SystemUserAuthConfig.MaxAge's default: system-user tickets
// last 6 hours and SuperOffice asks for no more than about one new ticket an hour.
const defaultSystemUserMaxAge = 5 * time.Hour

// SystemUserAuthConfig configures SystemUserAuth. Every field but HTTPClient, MaxAge and
// JWTPublicKey is required.
type SystemUserAuthConfig struct {
	// LoginURL is the PartnerSystemUser REST endpoint, such as
	// https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate (sod for
	// development, stage, online for production). The zero value is rejected.
	LoginURL string

	// SystemToken is the app's system user token for the tenant (the
	// http://schemes.superoffice.net/identity/system_token claim from the administrator's
	// consent). The zero value is rejected. It is never printed.
	SystemToken string

	// PrivateKey is the app's RSA private key: PEM (PKCS#1 "RSA PRIVATE KEY" or PKCS#8
	// "PRIVATE KEY"), or the <RSAKeyValue> XML the SuperOffice developer portal hands out.
	// The zero value is rejected. It is never printed.
	PrivateKey []byte

	// AppToken is the app's client secret, sent as ApplicationToken. The zero value is
	// rejected. It is never printed.
	AppToken string

	// ContextIdentifier is the tenant, such as Cust12345. The zero value is rejected.
	ContextIdentifier string

	// HTTPClient sends every login request, so that whatever wraps its Transport (flow
	// control) counts logins too. The zero value (nil) means httpcall.DefaultHTTPClient
	// (10 s connect, 3 min overall timeout, no redirects followed).
	HTTPClient *http.Client

	// MaxAge is how long a ticket is used before a new one is fetched although NetServer
	// did not reject it. The zero value means defaultSystemUserMaxAge (5 h); a negative
	// value means no age limit.
	MaxAge time.Duration

	// JWTPublicKey, when set, is used to verify the RS256 signature of the JWT the login
	// service returns. The zero value (nil) skips verification: SuperOffice publishes its
	// keys as JWKS at .../login/.well-known/jwks, and fetching them is a network dependency
	// this package does not take; the JWT arrives over the same TLS connection that
	// authenticated the login service, and the ticket is only ever sent back to SuperOffice.
	JWTPublicKey *rsa.PublicKey
}

func (c SystemUserAuthConfig) validate() (*rsa.PrivateKey, error) {
	switch {
	case c.LoginURL == "":
		return nil, &erpsync.ConfigError{Field: "auth.SystemUserAuthConfig.LoginURL", What: "system-user login URL", Problem: "is required, such as https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate"}
	case c.SystemToken == "":
		return nil, &erpsync.ConfigError{Field: "auth.SystemUserAuthConfig.SystemToken", What: "system-user token", Problem: "is required"}
	case len(c.PrivateKey) == 0:
		return nil, &erpsync.ConfigError{Field: "auth.SystemUserAuthConfig.PrivateKey", What: "app's private key", Problem: "is required (PEM or RSAKeyValue XML)"}
	case c.AppToken == "":
		return nil, &erpsync.ConfigError{Field: "auth.SystemUserAuthConfig.AppToken", What: "application token", Problem: "is required (the app's client secret)"}
	case c.ContextIdentifier == "":
		return nil, &erpsync.ConfigError{Field: "auth.SystemUserAuthConfig.ContextIdentifier", What: "Online context id", Problem: "is required, such as Cust12345"}
	}
	if _, err := httpcall.ParseHTTPURL(c.LoginURL); err != nil {
		return nil, &erpsync.ConfigError{Field: "auth.SystemUserAuthConfig.LoginURL", What: "system-user login URL", Problem: err.Error()}
	}
	key, err := ParsePrivateKey(c.PrivateKey)
	if err != nil {
		return nil, &erpsync.ConfigError{Field: "auth.SystemUserAuthConfig.PrivateKey", What: "app's private key", Problem: "is not usable", Err: err}
	}
	return key, nil
}

// String prints the configuration with secrets redacted.
func (c SystemUserAuthConfig) String() string {
	return fmt.Sprintf("auth.SystemUserAuthConfig{LoginURL:%q, SystemToken:%s, PrivateKey:%s, AppToken:%s, ContextIdentifier:%q, HTTPClient:%s, MaxAge:%s, JWTPublicKey:%s}",
		httpcall.RedactURL(c.LoginURL), httpcall.RedactedIfSet(c.SystemToken), httpcall.RedactedIfSet(string(c.PrivateKey)), httpcall.RedactedIfSet(c.AppToken), c.ContextIdentifier,
		httpcall.SetOrNil(c.HTTPClient != nil), c.MaxAge, httpcall.SetOrNil(c.JWTPublicKey != nil))
}

// GoString is String.
func (c SystemUserAuthConfig) GoString() string { return c.String() }

// SystemUserAuth is a TicketSource for SuperOffice Online's system-user flow: it signs the
// system user token with the app's private key, exchanges it at the PartnerSystemUser
// REST endpoint for a JWT, and takes the ticket from the JWT's ticketClaim. Tickets are
// cached as TicketCache does. An unsuccessful login is erpsync.ErrLoginRefused. Safe for
// concurrent use.
type SystemUserAuth struct {
	*TicketCache
	loginURL    string
	systemToken string
	key         *rsa.PrivateKey
	appToken    string
	contextID   string
	jwtKey      *rsa.PublicKey
	http        *httpcall.Client
	clock       func() time.Time
}

// NewSystemUserAuth validates cfg, parses the private key and returns a SystemUserAuth.
// It does not log in yet.
func NewSystemUserAuth(cfg SystemUserAuthConfig) (*SystemUserAuth, error) {
	key, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &SystemUserAuth{
		loginURL:    cfg.LoginURL,
		systemToken: cfg.SystemToken,
		key:         key,
		appToken:    cfg.AppToken,
		contextID:   cfg.ContextIdentifier,
		jwtKey:      cfg.JWTPublicKey,
		http:        httpcall.New(cfg.HTTPClient, 0),
		clock:       time.Now,
	}
	maxAge := cfg.MaxAge
	if maxAge == 0 {
		maxAge = defaultSystemUserMaxAge
	}
	s.TicketCache = NewTicketCache(s.Login, maxAge)
	return s, nil
}

const opSystemUser = "PartnerSystemUser.Authenticate"

// signSystemToken returns token + "." + timestamp + "." + base64(signature), the
// SignedSystemToken format: the timestamp is t in UTC as yyyyMMddHHmm, the signature RSA
// PKCS#1 v1.5 over the SHA-256 of token + "." + timestamp.
func signSystemToken(token string, key *rsa.PrivateKey, t time.Time) (string, error) {
	data := token + "." + t.UTC().Format("200601021504")
	sum := sha256.Sum256([]byte(data))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", errors.New("sign system user token: " + err.Error())
	}
	return data + "." + base64.StdEncoding.EncodeToString(sig), nil
}

type systemUserRequest struct {
	SignedSystemToken string `json:"SignedSystemToken"`
	ApplicationToken  string `json:"ApplicationToken"`
	ContextIdentifier string `json:"ContextIdentifier"`
	ReturnTokenType   string `json:"ReturnTokenType"`
}

type systemUserReply struct {
	IsSuccessful bool   `json:"IsSuccessful"`
	ErrorMessage string `json:"ErrorMessage"`
	Token        string `json:"Token"`
}

// Login performs one system-user login, bypassing the cache, and returns the ticket.
func (s *SystemUserAuth) Login(ctx context.Context) (string, error) {
	signed, err := signSystemToken(s.systemToken, s.key, s.clock())
	if err != nil {
		return "", wrapOp(opSystemUser, err)
	}
	payload, err := json.Marshal(systemUserRequest{
		SignedSystemToken: signed,
		ApplicationToken:  s.appToken,
		ContextIdentifier: s.contextID,
		ReturnTokenType:   "JWT",
	})
	if err != nil {
		return "", wrapOp(opSystemUser, err)
	}
	hdr := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Accept": {"application/json"}}
	rep, err := s.http.Post(ctx, s.loginURL, hdr, payload)
	if err != nil {
		return "", wrapOp(opSystemUser, err)
	}
	defer rep.Release()
	red := httpcall.Redactor{s.appToken, s.systemToken, signed}
	if !rep.OK() {
		return "", wrapOp(opSystemUser, asRefusal(rep.HTTPError(red)))
	}
	var r systemUserReply
	if err := json.Unmarshal(rep.Body(), &r); err != nil {
		return "", wrapOp(opSystemUser, &erpsync.ProtocolError{HTTPStatus: rep.Status, Reason: "reply is not the expected JSON", Err: err})
	}
	if !r.IsSuccessful {
		msg := ""
		if r.ErrorMessage != "" {
			msg = ": " + erpsync.Truncate(red.S(r.ErrorMessage), 300)
		}
		return "", wrapOp(opSystemUser, fmt.Errorf("context %s%s: %w", s.contextID, msg, erpsync.ErrLoginRefused))
	}
	ticket, err := ticketFromJWT(r.Token, s.jwtKey)
	if err != nil {
		return "", wrapOp(opSystemUser, &erpsync.ProtocolError{HTTPStatus: rep.Status, Reason: "unusable JWT", Err: err})
	}
	return ticket, nil
}

// ticketFromJWT reads ticketClaim from a JWT, verifying its RS256 signature when key is set.
// Expiry claims are not checked: they describe the JWT, not the ticket inside it.
func ticketFromJWT(token string, key *rsa.PublicKey) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT (want three dot-separated parts)")
	}
	if key != nil {
		var hdr struct {
			Alg string `json:"alg"`
		}
		hb, err := decodeSegment(parts[0])
		if err != nil || json.Unmarshal(hb, &hdr) != nil {
			return "", errors.New("JWT header is not base64url JSON")
		}
		if hdr.Alg != "RS256" {
			return "", fmt.Errorf("JWT algorithm %q, want RS256", erpsync.Truncate(hdr.Alg, 20))
		}
		sig, err := decodeSegment(parts[2])
		if err != nil {
			return "", errors.New("JWT signature is not base64url")
		}
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) != nil {
			return "", errors.New("JWT signature does not verify")
		}
	}
	pb, err := decodeSegment(parts[1])
	if err != nil {
		return "", errors.New("JWT payload is not base64url")
	}
	var claims map[string]any
	if err := json.Unmarshal(pb, &claims); err != nil {
		return "", errors.New("JWT payload is not a JSON object")
	}
	ticket, _ := claims[ticketClaim].(string)
	if ticket == "" {
		return "", errors.New("JWT has no " + ticketClaim + " claim")
	}
	return ticket, nil
}

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// String prints the login target, never the tokens or the key.
func (s *SystemUserAuth) String() string {
	return fmt.Sprintf("auth.SystemUserAuth{LoginURL:%q, ContextIdentifier:%q, SystemToken:%s, PrivateKey:%s, AppToken:%s, Refreshes:%d}",
		httpcall.RedactURL(s.loginURL), s.contextID, httpcall.Redacted, httpcall.Redacted, httpcall.Redacted, s.Refreshes())
}

// GoString is String.
func (s *SystemUserAuth) GoString() string { return s.String() }

// ParsePrivateKey reads an RSA private key from PEM (PKCS#1 "RSA PRIVATE KEY" or PKCS#8
// "PRIVATE KEY") or from .NET's <RSAKeyValue> XML. Errors never include key material.
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "<RSAKeyValue") {
		return parseRSAKeyValue([]byte(trimmed))
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found (want RSA PRIVATE KEY, PRIVATE KEY or RSAKeyValue XML)")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("invalid PKCS#1 RSA private key")
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("invalid PKCS#8 private key")
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PKCS#8 key is %T, want RSA", k)
		}
		return rk, nil
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted private keys are not supported; decrypt it first")
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
}

// parseRSAKeyValue reads .NET's RSA.ToXmlString(true) format.
func parseRSAKeyValue(data []byte) (*rsa.PrivateKey, error) {
	var kv struct {
		Modulus, Exponent, P, Q, DP, DQ, InverseQ, D string
	}
	if err := xml.Unmarshal(data, &kv); err != nil {
		return nil, errors.New("invalid RSAKeyValue XML")
	}
	num := func(s string) (*big.Int, error) {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil || len(b) == 0 {
			return nil, errors.New("invalid base64 in RSAKeyValue")
		}
		return new(big.Int).SetBytes(b), nil
	}
	var vals [5]*big.Int
	for i, s := range []string{kv.Modulus, kv.Exponent, kv.D, kv.P, kv.Q} {
		v, err := num(s)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	if !vals[1].IsInt64() || vals[1].Int64() > 1<<31-1 {
		return nil, errors.New("RSAKeyValue exponent out of range")
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: vals[0], E: int(vals[1].Int64())},
		D:         vals[2],
		Primes:    []*big.Int{vals[3], vals[4]},
	}
	if err := k.Validate(); err != nil {
		return nil, errors.New("RSAKeyValue is not a consistent RSA key")
	}
	k.Precompute()
	return k, nil
}
