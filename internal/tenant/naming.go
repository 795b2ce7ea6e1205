package tenant

import (
	"errors"
	"fmt"
	"strings"
)

// Field is one setting of a Spec, as an error names it.
type Field uint8

// The fields of a Spec; the zero Field is none.
const (
	FieldID Field = iota + 1
	FieldURL
	FieldEnvironment
	FieldAPI
	FieldSOAP12
	FieldTimeout
	FieldTicket
	FieldUsername
	FieldPassword
	FieldSystemToken
	FieldPrivateKey
	FieldContextID
	FieldLoginURL
	FieldAppToken
	FieldRateLimit
	FieldRateBurst
	FieldRateAdaptive
	FieldMaxConcurrency
	FieldSlotLease
	FieldBreakerFailures
	FieldBreakerProbe
	FieldBreakerProbeMax
	FieldIntakeTokens
	numFields
)

// fileKeys are the fields' keys in the tenants file; a secret's is its *_env form.
var fileKeys = [numFields]string{
	FieldID: "id", FieldURL: "url", FieldEnvironment: "environment", FieldAPI: "api", FieldSOAP12: "soap12",
	FieldTimeout: "timeout", FieldTicket: "auth.ticket_env", FieldUsername: "auth.username",
	FieldPassword: "auth.password_env", FieldSystemToken: "auth.system_token_env",
	FieldPrivateKey: "auth.private_key_file", FieldContextID: "auth.context_id", FieldLoginURL: "auth.login_url",
	FieldAppToken: "app_token_env", FieldRateLimit: "rate_limit", FieldRateBurst: "rate_burst",
	FieldRateAdaptive: "rate_adaptive", FieldMaxConcurrency: "max_concurrency", FieldSlotLease: "slot_lease",
	FieldBreakerFailures: "breaker_failures", FieldBreakerProbe: "breaker_probe",
	FieldBreakerProbeMax: "breaker_probe_max", FieldIntakeTokens: "intake_tokens_env",
}

// Fields lists every Field, in order.
func Fields() []Field {
	out := make([]Field, 0, numFields-1)
	for f := FieldID; f < numFields; f++ {
		out = append(out, f)
	}
	return out
}

// String is the field's key in the tenants file, e.g. "auth.password_env".
func (f Field) String() string {
	if f > 0 && f < numFields {
		return fileKeys[f]
	}
	return fmt.Sprintf("Field(%d)", uint8(f))
}

// Naming is how the errors about one Spec name its fields.
type Naming interface {
	// Name is what an error calls field f: "SUPEROFFICE_PASSWORD", "auth.password_env".
	Name(f Field) string
	// Where leads an error about field f: "" for the implicit tenant,
	// `tenants.yaml:14: tenant "acme": ` for a tenant of the file.
	Where(f Field) string
}

// EnvNames names the implicit tenant's fields by their environment variables; a field it
// lacks is named by its file key. Where is "".
type EnvNames map[Field]string

// Name is the variable of f.
func (n EnvNames) Name(f Field) string {
	if s, ok := n[f]; ok {
		return s
	}
	return f.String()
}

// Where is "": an environment variable needs no place.
func (EnvNames) Where(Field) string { return "" }

// fileNames names the fields of a tenant of the tenants file: by the key written (or the
// key to write), at the line of the key (or of the tenant's entry). It is kept with the
// tenant's Spec for as long as the tenant is served, so it holds only the keys written (a
// handful), not a slot for every field.
type fileNames struct {
	file  string
	label string // `tenant "acme"`, or `tenant 3` before its id is known
	line  int    // the tenant's entry
	keys  []keyAt
}

// keyAt is a key of a tenant's entry as written, and its line.
type keyAt struct {
	key   string
	line  int32
	field Field
}

// written is the key written for f and its line; ok is false when f is not written.
func (n *fileNames) written(f Field) (key string, line int, ok bool) {
	for _, k := range n.keys {
		if k.field == f {
			return k.key, int(k.line), true
		}
	}
	return "", 0, false
}

// write records key, at line, as written for f.
func (n *fileNames) write(f Field, key string, line int) {
	n.keys = append(n.keys, keyAt{key: key, line: int32(line), field: f})
}

func (n *fileNames) Name(f Field) string {
	if k, _, ok := n.written(f); ok {
		return k
	}
	return f.String()
}

func (n *fileNames) Where(f Field) string {
	line := n.line
	if _, at, ok := n.written(f); ok && at > 0 {
		line = at
	}
	return fmt.Sprintf("%s:%d: %s: ", n.file, line, n.label)
}

func (s Spec) naming() Naming {
	if s.Naming == nil {
		return EnvNames(nil)
	}
	return s.Naming
}

// name is what errors call f.
func (s Spec) name(f Field) string { return s.naming().Name(f) }

// names joins the names of fs with sep.
func (s Spec) names(sep string, fs ...Field) string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = s.name(f)
	}
	return strings.Join(out, sep)
}

// errorf is an error about field f: its place, then the message.
func (s Spec) errorf(f Field, format string, a ...any) error {
	return errors.New(s.naming().Where(f) + fmt.Sprintf(format, a...))
}
