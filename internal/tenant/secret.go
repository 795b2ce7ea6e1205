package tenant

import (
	"fmt"
	"io"

	"github.com/erpresync/erpresync/internal/httpcall"
)

// Secret is a credential of a tenant: a password, a ticket, a system-user token, an
// application token, a private key, an intake token. It prints as [REDACTED] (or "" when
// empty) with every fmt verb, and marshals so to JSON, YAML and text, so that a Spec can be
// logged whole. The value sits behind a pointer: even a Secret in an unexported field, which
// fmt prints by reflection, shows only an address. The zero value is the empty secret.
type Secret struct{ v *string }

// NewSecret holds s; NewSecret("") is the empty secret.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{v: &s}
}

// Reveal is the secret itself, for the transport or login that sends it. Never print it.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsSet reports whether the secret is not empty.
func (s Secret) IsSet() bool { return s.v != nil && *s.v != "" }

// Equal reports whether s and o hold the same value.
func (s Secret) Equal(o Secret) bool { return s.Reveal() == o.Reveal() }

// String is [REDACTED], or "" for the empty secret.
func (s Secret) String() string { return httpcall.RedactedIfSet(s.Reveal()) }

// GoString is String, so that %#v redacts too.
func (s Secret) GoString() string { return s.String() }

// Format prints String for every verb (%d and %x included).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// MarshalText is [REDACTED], or nothing for the empty secret: YAML and JSON map keys redact
// too.
func (s Secret) MarshalText() ([]byte, error) {
	if !s.IsSet() {
		return nil, nil
	}
	return []byte(httpcall.Redacted), nil
}

// MarshalJSON is String as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) {
	if !s.IsSet() {
		return []byte(`""`), nil
	}
	return []byte(`"` + httpcall.Redacted + `"`), nil
}
