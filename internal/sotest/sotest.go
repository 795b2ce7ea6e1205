// Package sotest holds what the tests of the SuperOffice transports (soap, rest) and of their
// logins (auth) share: the fixed test credentials, the reading of testdata files, a test
// server, canned replies, an RSA key in the three encodings a system user's key comes in, and
// the signed JWT SuperOffice's login service answers with. It is imported by tests only.
package sotest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// The credentials the transports' tests send; the tests check that neither token nor
// ticket ever shows in an error or a log.
const (
	AppToken = "APP-TOKEN-SECRET-1234"
	Ticket   = "7T:TICKET-SECRET-ABCD=="
	Tenant   = "/Cust12345"
)

// ReadTestdata returns the file testdata/name of the test's package.
func ReadTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// NewServer starts an httptest server closed at the end of the test.
func NewServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// CannedReply answers every request with status, the Content-Type contentType (none when
// empty) and body.
func CannedReply(status int, contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		w.Write(body)
	}
}

// BenchSizes are the key counts the codec benchmarks run with.
var BenchSizes = []int{1, 100, 1000}

// BenchKeys returns n valid external keys, ERP-100000 upwards.
func BenchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "ERP-" + strconv.Itoa(100000+i)
	}
	return keys
}

// RSAKey is generated once per test binary; key generation is slow under -race.
var RSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// PEMKey is RSAKey encoded as typ: "PKCS1" or "PKCS8" (PEM), or "XML" (.NET's RSAKeyValue).
func PEMKey(t testing.TB, typ string) []byte {
	key := RSAKey()
	switch typ {
	case "PKCS1":
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	case "PKCS8":
		b, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
	case "XML":
		b64 := func(n *big.Int) string { return base64.StdEncoding.EncodeToString(n.Bytes()) }
		return []byte(fmt.Sprintf("<RSAKeyValue><Modulus>%s</Modulus><Exponent>%s</Exponent><P>%s</P><Q>%s</Q><DP>%s</DP><DQ>%s</DQ><InverseQ>%s</InverseQ><D>%s</D></RSAKeyValue>",
			b64(key.N), b64(big.NewInt(int64(key.E))), b64(key.Primes[0]), b64(key.Primes[1]),
			b64(key.Precomputed.Dp), b64(key.Precomputed.Dq), b64(key.Precomputed.Qinv), b64(key.D)))
	}
	t.Fatalf("unknown key type %s", typ)
	return nil
}

// MakeJWT returns an RS256 JWT carrying claims, signed with key.
func MakeJWT(t testing.TB, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hdr := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	body, _ := json.Marshal(claims)
	data := hdr + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(data))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return data + "." + enc.EncodeToString(sig)
}
