package tenant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
)

// TestSecretsNeverShow: a Spec with every secret set prints, marshals and logs them
// redacted, with every verb, whole or nested in an unexported field.
func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	secrets := []string{"ticket-5ecret", "password-5ecret", "system-5ecret", "-----BEGIN key-5ecret", "app-5ecret", "intake-5ecret-0123456789"}
	s := Spec{ID: "acme", URL: "https://crm.acme.example", Ticket: NewSecret(secrets[0]), Password: NewSecret(secrets[1]),
		SystemToken: NewSecret(secrets[2]), PrivateKey: NewSecret(secrets[3]), AppToken: NewSecret(secrets[4]),
		IntakeTokens: []Secret{NewSecret(secrets[5])}}
	type wrapper struct {
		spec   Spec
		secret Secret
	}
	w := wrapper{s, s.Password}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, s.Password), fmt.Sprintf(verb, w), fmt.Sprintf(verb, &s))
	}
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	ym, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	log.Info().Interface("spec", s).Stringer("password", s.Password).Any("token", s.AppToken).Msg("x")
	out = append(out, string(js), string(ym), logs.String())
	all := strings.Join(out, "\n")
	for _, sec := range secrets {
		if strings.Contains(all, sec) || strings.Contains(all, fmt.Sprintf("%x", sec)) {
			t.Errorf("%q shows:\n%s", sec, all)
		}
	}
	if !strings.Contains(string(js), `"Password":"[REDACTED]"`) || !strings.Contains(fmt.Sprint(NewSecret("")), `""`) {
		t.Errorf("json %s", js)
	}
	if s.Password.Reveal() != secrets[1] || !s.Password.Equal(NewSecret(secrets[1])) || NewSecret("").IsSet() {
		t.Error("Reveal, Equal or IsSet")
	}
}
