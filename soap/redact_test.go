package soap

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/httpcall"
	"github.com/erpresync/erpresync/internal/sotest"
)

func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const (
		password    = "PASSWORD-SECRET-9876"
		systemToken = "SYSTEM-TOKEN-SECRET-5555"
	)
	keyPEM := sotest.PEMKey(t, "PKCS8")
	keyChunk := strings.Split(string(keyPEM), "\n")[2] // a line of base64 key material

	_, base := newFakeNetServer(t, password)
	pwCfg := auth.PasswordAuthConfig{BaseURL: "https://user:URLPASS-SECRET@crm.example.com/SuperOffice", UserName: "SAL0", Password: password, AppToken: sotest.AppToken}
	pw, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{BaseURL: base, UserName: "SAL0", Password: password, AppToken: sotest.AppToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Ticket(bg); err != nil { // holds a ticket from now on
		t.Fatal(err)
	}
	ticket, _ := pw.Ticket(bg)
	suCfg := auth.SystemUserAuthConfig{
		LoginURL: "https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate", SystemToken: systemToken,
		PrivateKey: keyPEM, AppToken: sotest.AppToken, ContextIdentifier: "Cust12345",
	}
	su, err := auth.NewSystemUserAuth(suCfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{BaseURL: base, AppToken: sotest.AppToken, Auth: pw}
	client, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	static := auth.NewStaticTicket(sotest.Ticket)
	cache := auth.NewTicketCache(static.Ticket, 0)
	if _, err := cache.Ticket(bg); err != nil {
		t.Fatal(err)
	}

	secrets := []string{sotest.AppToken, sotest.Ticket, ticket, password, systemToken, keyChunk, "URLPASS-SECRET"}
	values := []struct {
		name string
		v    any
	}{
		{"Config", cfg},
		{"*Config", &cfg},
		{"Config with auth.StaticTicket", Config{BaseURL: base, AppToken: sotest.AppToken, Auth: static}},
		{"struct holding Config", struct{ C Config }{cfg}},
		{"*Client", client},
		{"*auth.StaticTicket", static},
		{"auth.StaticTicket", *static},
		{"*auth.TicketCache", cache},
		{"auth.PasswordAuthConfig", pwCfg},
		{"*auth.PasswordAuth", pw},
		{"auth.SystemUserAuthConfig", suCfg},
		{"*auth.SystemUserAuthConfig", &suCfg},
		{"*auth.SystemUserAuth", su},
	}
	for _, tt := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			out := fmt.Sprintf(verb, tt.v)
			for _, s := range secrets {
				if strings.Contains(out, s) || (verb == "%x" && strings.Contains(out, fmt.Sprintf("%x", s))) {
					t.Errorf("fmt %s of %s prints a secret: %s", verb, tt.name, out)
				}
			}
		}
	}
}

// TestSecretsNotEchoedInErrors: a server that echoes the ticket or app token back does not
// get them into error text or error fields.
func TestSecretsNotEchoedInErrors(t *testing.T) {
	t.Parallel()
	echo := "ticket " + sotest.Ticket + " for application " + sotest.AppToken + " has expired"
	exception := strings.Replace(string(sotest.ReadTestdata(t, "response_exception.xml")), "Ticket is not valid or has expired", echo, 1)
	fault := strings.Replace(string(sotest.ReadTestdata(t, "response_fault11.xml")), "The message with Action", echo, 1)
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"exception", sotest.CannedReply(200, "text/xml", []byte(exception))},
		{"fault", sotest.CannedReply(500, "text/xml", []byte(fault))},
		{"HTML page", sotest.CannedReply(503, "text/html", []byte("<html><body>"+echo+"</body></html>"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := sotest.NewServer(t, tt.handler)
			c := newTestClient(t, srv.URL, nil)
			_, err := c.ForceResyncExternal(bg, 1, erpsync.ActorCustomer, []string{"k"})
			if err == nil {
				t.Fatal("want an error")
			}
			text := fmt.Sprintf("%v %+v %#v", err, err, err)
			var he *erpsync.HTTPError
			if errors.As(err, &he) {
				text += he.Body
			}
			var ex *erpsync.ExceptionError
			if errors.As(err, &ex) {
				text += ex.Message
			}
			var f *erpsync.FaultError
			if errors.As(err, &f) {
				text += f.Reason
			}
			for _, s := range []string{sotest.Ticket, sotest.AppToken} {
				if strings.Contains(text, s) {
					t.Errorf("error carries a secret: %s", text)
				}
			}
			if !strings.Contains(text, httpcall.Redacted) {
				t.Errorf("want the echo redacted, got %s", text)
			}
		})
	}
}
