package tenant

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The tenants file (TENANTS_CONFIG) lists the tenants besides the implicit one, in YAML or
// JSON:
//
//	tenants:
//	  - id: Cust12345
//	    url: https://sod2.superoffice.com/Cust12345
//	    api: rest
//	    auth:
//	      system_token_env: CUST12345_SYSTEM_TOKEN
//	      private_key_file: /run/secrets/app.pem
//	      login_url: https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate
//	      context_id: Cust12345
//	    app_token_env: SUPEROFFICE_APP_TOKEN
//	    rate_limit: 10
//
// A tenant of SuperOffice Online may be given by its environment and context id instead of
// its url (environment: online, sod or stage, which read https://{name}.superoffice.com, or
// a base URL such as https://online.superoffice.com; auth.context_id: Cust12345): the worker
// then asks the environment's state API where the tenant lives and follows it when it moves
// (Spec.Environment).
//
// Secrets are written by reference only: KEY_env names an environment variable that holds
// the secret, KEY_file a file (its content, trimmed of surrounding white space). The keys are
// fileKeys (and their _file forms); anything else is refused.

// maxErrors is how many errors of one file are reported; the rest are counted.
const maxErrors = 20

// Load reads the tenants file at path (Parse); getenv looks up the environment variables the
// file names for its secrets.
func Load(path string, getenv func(string) string) ([]Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, getenv)
}

// Parse reads a tenants file's content; name is the file's name in errors. It returns the
// tenants in file order, each checked (Spec.Validate) and its secrets resolved, or every
// problem found (up to maxErrors), each naming file:line, the tenant and the key, and what
// would be valid. Time and memory are linear in the file's size.
func Parse(name string, data []byte, getenv func(string) string) ([]Spec, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	list, err := tenantList(name, &doc)
	if err != nil {
		return nil, err
	}
	p := parser{file: name, getenv: getenv}
	specs := make([]Spec, 0, len(list.Content))
	for i, n := range list.Content {
		if s, ok := p.entry(i+1, n); ok {
			specs = append(specs, s)
		}
	}
	p.unique(specs)
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			p.errs = append(p.errs, err)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	return specs, nil
}

// tenantList is the sequence under the document's one key, tenants.
func tenantList(name string, doc *yaml.Node) (*yaml.Node, error) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: no tenants: want a list under tenants: (tenants: [] for none)", name)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping with the key tenants:", name, root.Line)
	}
	var list *yaml.Node
	for i := 0; i < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "tenants" {
			return nil, fmt.Errorf("%s:%d: unknown key %q: the file has one key, tenants", name, k.Line, k.Value)
		}
		list = v
	}
	switch {
	case list == nil:
		return nil, fmt.Errorf("%s: no tenants: want a list under tenants: (tenants: [] for none)", name)
	case list.Kind != yaml.SequenceNode:
		return nil, fmt.Errorf("%s:%d: tenants: want a list of tenants (tenants: [] for none)", name, list.Line)
	}
	return list, nil
}

// parser collects the tenants of one file and its errors.
type parser struct {
	file   string
	getenv func(string) string
	errs   []error
}

func (p *parser) err() error {
	errs := p.errs
	if len(errs) > maxErrors {
		errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("%s: and %d more errors", p.file, len(p.errs)-maxErrors))
	}
	return errors.Join(errs...)
}

// entry reads the i-th tenant (from 1); ok is false when it has an error (recorded).
func (p *parser) entry(i int, n *yaml.Node) (Spec, bool) {
	names := &fileNames{file: p.file, line: n.Line, label: fmt.Sprintf("tenant %d", i)}
	s := Spec{Naming: names}
	if n.Kind != yaml.MappingNode {
		p.errs = append(p.errs, fmt.Errorf("%s:%d: tenant %d: want a mapping of keys such as id: and url:", p.file, n.Line, i))
		return s, false
	}
	// The id first, so that every other error names the tenant.
	for j := 0; j < len(n.Content); j += 2 {
		if k, v := n.Content[j], n.Content[j+1]; k.Value == "id" && v.Kind == yaml.ScalarNode && v.Value != "" {
			s.ID, names.label = v.Value, fmt.Sprintf("tenant %q", v.Value)
		}
	}
	before := len(p.errs)
	p.mapping(&s, names, "", n)
	if s.ID == "" && len(p.errs) == before {
		p.errs = append(p.errs, s.errorf(FieldID, "id is not set: every tenant of the file needs one, such as Cust12345 (letters, digits and -_.)"))
	}
	return s, len(p.errs) == before
}

// mapping reads the keys of one mapping (the tenant's, or its auth: under prefix "auth.").
func (p *parser) mapping(s *Spec, names *fileNames, prefix string, n *yaml.Node) {
	seen := map[string]int{}
	for j := 0; j < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		key := prefix + k.Value
		fail := func(format string, a ...any) {
			p.errs = append(p.errs, fmt.Errorf("%s:%d: %s: %s: %s", p.file, k.Line, names.label, key, fmt.Sprintf(format, a...)))
		}
		if line, ok := seen[key]; ok {
			fail("given twice (also at line %d)", line)
			continue
		}
		seen[key] = k.Line
		if key == "auth" {
			if v.Kind != yaml.MappingNode {
				fail("want a mapping, such as {username: ERPSYNC, password_env: ACME_PASSWORD}")
				continue
			}
			p.mapping(s, names, "auth.", v)
			continue
		}
		fk, ok := findKey(key)
		if !ok {
			fail("%s", unknownKey(key))
			continue
		}
		if other, line, ok := names.written(fk.field); ok {
			fail("%s is set too (line %d): set one of them", other, line)
			continue
		}
		names.write(fk.field, key, k.Line)
		if msg := fk.set(s, v, p.getenv); msg != "" {
			fail("%s", msg)
		}
	}
}

// unique refuses two tenants of one id (in any case) or of one URL.
func (p *parser) unique(specs []Spec) {
	ids, urls := map[string]Spec{}, map[string]Spec{}
	for _, s := range specs {
		if o, ok := ids[strings.ToLower(s.ID)]; ok {
			p.errs = append(p.errs, s.errorf(FieldID, "id %q is taken by the tenant at line %d: every tenant's id is unique, regardless of case", s.ID, o.Naming.(*fileNames).line))
			continue
		}
		ids[strings.ToLower(s.ID)] = s
		if s.URL == "" && (s.Environment == "" || s.ContextID == "") {
			continue
		}
		u := FlowName(Spec{URL: s.URL, Environment: s.Environment, ContextID: s.ContextID})
		if o, ok := urls[u]; ok {
			f := FieldURL
			if s.URL == "" {
				f = FieldContextID
			}
			p.errs = append(p.errs, s.errorf(f, "%s is tenant %q's too (line %d): one SuperOffice tenant is one entry, or each would get its own limits", s.name(f), o.ID, o.Naming.(*fileNames).line))
			continue
		}
		urls[u] = s
	}
}

// fileKey is one key of a tenant in the file: the field it sets and how.
type fileKey struct {
	field Field
	// set reads the node into s and says what is wrong with it ("" for nothing).
	set func(s *Spec, n *yaml.Node, getenv func(string) string) string
}

// secretKeys are the secrets' keys without their _env/_file suffix: written bare, they
// would put the secret in the file.
var secretKeys = map[string]Field{
	"auth.ticket": FieldTicket, "auth.password": FieldPassword, "auth.system_token": FieldSystemToken,
	"auth.private_key": FieldPrivateKey, "app_token": FieldAppToken, "intake_tokens": FieldIntakeTokens,
}

// findKey is the fileKey of key, its _env and _file forms included.
func findKey(key string) (fileKey, bool) {
	for _, suffix := range []string{"_env", "_file"} {
		if base, ok := strings.CutSuffix(key, suffix); ok {
			if f, ok := secretKeys[base]; ok {
				return fileKey{field: f, set: secretSetter(f, suffix == "_file")}, true
			}
		}
	}
	for f, k := range fileKeys {
		if set := plainSetters[Field(f)]; k == key && set != nil {
			return fileKey{field: Field(f), set: set}, true
		}
	}
	return fileKey{}, false
}

// unknownKey says why key is refused and what is valid.
func unknownKey(key string) string {
	if _, ok := secretKeys[key]; ok {
		return fmt.Sprintf("a secret is not written in the tenants file: give %s_env (an environment variable's name) or %s_file (a file's path) instead", key, key)
	}
	var valid []string
	for f, k := range fileKeys {
		if Field(f) != FieldID && k != "" {
			valid = append(valid, k)
		}
	}
	slices.Sort(valid)
	return fmt.Sprintf("unknown key: want id or one of %s (a secret's _env key may be _file instead)", strings.Join(valid, ", "))
}

// secretSetter reads a secret by reference: the value of the environment variable the node
// names, or the content of the file.
func secretSetter(f Field, file bool) func(*Spec, *yaml.Node, func(string) string) string {
	return func(s *Spec, n *yaml.Node, getenv func(string) string) string {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			if file {
				return "want a file's path"
			}
			return "want an environment variable's name"
		}
		var v string
		if file {
			b, err := os.ReadFile(n.Value)
			if err != nil {
				return err.Error()
			}
			if v = strings.TrimSpace(string(b)); v == "" {
				return fmt.Sprintf("file %s is empty", n.Value)
			}
		} else if v = strings.TrimSpace(getenv(n.Value)); v == "" {
			return fmt.Sprintf("environment variable %s is not set", n.Value)
		}
		setSecret(s, f, v)
		return ""
	}
}

// setSecret puts v into the secret field f; the intake tokens are a comma-separated list.
func setSecret(s *Spec, f Field, v string) {
	switch f {
	case FieldTicket:
		s.Ticket = NewSecret(v)
	case FieldPassword:
		s.Password = NewSecret(v)
	case FieldSystemToken:
		s.SystemToken = NewSecret(v)
	case FieldPrivateKey:
		s.PrivateKey = NewSecret(v)
	case FieldAppToken:
		s.AppToken = NewSecret(v)
	case FieldIntakeTokens:
		for t := range strings.SplitSeq(v, ",") {
			s.IntakeTokens = append(s.IntakeTokens, NewSecret(strings.TrimSpace(t)))
		}
	}
}

// plainSetters read the fields that are no secrets.
var plainSetters = map[Field]func(*Spec, *yaml.Node, func(string) string) string{
	FieldID:           str(func(s *Spec, v string) { s.ID = v }),
	FieldURL:          str(func(s *Spec, v string) { s.URL = v }),
	FieldEnvironment:  str(func(s *Spec, v string) { s.Environment = v }),
	FieldAPI:          str(func(s *Spec, v string) { s.API = v }),
	FieldUsername:     str(func(s *Spec, v string) { s.Username = v }),
	FieldContextID:    str(func(s *Spec, v string) { s.ContextID = v }),
	FieldLoginURL:     str(func(s *Spec, v string) { s.LoginURL = v }),
	FieldSOAP12:       boolean(func(s *Spec, v bool) { s.SOAP12 = v }),
	FieldRateAdaptive: boolean(func(s *Spec, v bool) { s.RateAdaptive = v }),
	FieldRateLimit: func(s *Spec, n *yaml.Node, _ func(string) string) string {
		v, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			return fmt.Sprintf("%q: %s", n.Value, RateLimitWant)
		}
		s.RateLimit = v
		return ""
	},
	FieldRateBurst:       whole(func(s *Spec, v int) { s.RateBurst = v }),
	FieldMaxConcurrency:  whole(func(s *Spec, v int) { s.MaxConcurrency = v }),
	FieldBreakerFailures: whole(func(s *Spec, v int) { s.BreakerFailures = v }),
	FieldTimeout:         duration(func(s *Spec, v time.Duration) { s.Timeout = v }),
	FieldSlotLease:       duration(func(s *Spec, v time.Duration) { s.SlotLease = v }),
	FieldBreakerProbe:    duration(func(s *Spec, v time.Duration) { s.BreakerProbe = v }),
	FieldBreakerProbeMax: duration(func(s *Spec, v time.Duration) { s.BreakerProbeMax = v }),
}

func str(set func(*Spec, string)) func(*Spec, *yaml.Node, func(string) string) string {
	return func(s *Spec, n *yaml.Node, _ func(string) string) string {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			return "want a non-empty text"
		}
		set(s, strings.TrimSpace(n.Value))
		return ""
	}
}

func boolean(set func(*Spec, bool)) func(*Spec, *yaml.Node, func(string) string) string {
	return func(s *Spec, n *yaml.Node, _ func(string) string) string {
		v, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			return fmt.Sprintf("%q: want true or false", n.Value)
		}
		set(s, v)
		return ""
	}
}

func whole(set func(*Spec, int)) func(*Spec, *yaml.Node, func(string) string) string {
	return func(s *Spec, n *yaml.Node, _ func(string) string) string {
		v, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil || v < 0 {
			return fmt.Sprintf("%q: want a whole number >= 0", n.Value)
		}
		set(s, v)
		return ""
	}
}

func duration(set func(*Spec, time.Duration)) func(*Spec, *yaml.Node, func(string) string) string {
	return func(s *Spec, n *yaml.Node, _ func(string) string) string {
		v, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			return fmt.Sprintf("%q: want a duration such as 30s or 5m", n.Value)
		}
		set(s, v)
		return ""
	}
}
