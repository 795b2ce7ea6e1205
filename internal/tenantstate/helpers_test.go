package tenantstate_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/erpresync/erpresync/internal/flow"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
	"github.com/erpresync/erpresync/internal/tenantstate"
	"github.com/erpresync/erpresync/internal/testclock"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// simKey signs the simulator's JWTs; forgedKey is anybody else's.
var simKey, forgedKey = keyOnce(), keyOnce()

func keyOnce() func() *rsa.PrivateKey {
	return sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
}

const (
	ns88     = "http://www.superoffice.net/ws/crm/NetServer/Services88"
	nsArrays = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
	action   = `"http://www.superoffice.net/ws/crm/NetServer/Services88/ErpSync/ForceResyncExternal"`
)

// rig is one tenant on the simulator (two tenant hosts), a Redis and a test clock; every
// follower it makes is another worker of the same fleet.
type rig struct {
	sim    *netserversim.Running
	clock  *testclock.Clock
	rdb    *redistest.DB
	ticket string
}

func newRig(t *testing.T, cfg netserversim.Config) *rig {
	t.Helper()
	clock := testclock.New(time.Date(2026, 3, 2, 3, 12, 5, 0, time.UTC))
	cfg.Hosts, cfg.Now, cfg.JWTKey = 2, clock.Now, simKey()
	sim, err := netserversim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return &rig{sim: sim, clock: clock, rdb: redistest.New(t), ticket: sim.IssueTicket()}
}

// follower is one worker's Follower of the tenant.
func (r *rig) follower(t *testing.T) *tenantstate.Follower {
	t.Helper()
	f, err := tenantstate.New(tenantstate.Config{ContextID: "Cust12345", Environment: r.sim.RootURL,
		Redis: r.rdb.Client(), Now: r.clock.Now, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// client is the worker's HTTP client for the tenant: the Follower's transport on top.
func client(f *tenantstate.Follower) *http.Client {
	return &http.Client{Transport: f.Transport(nil), Timeout: 10 * time.Second}
}

// call sends one ForceResyncExternal through c to the follower's base URL and returns the
// HTTP status (0 with the error when none came).
func (r *rig) call(c *http.Client, f *tenantstate.Follower, key string) (int, error) {
	body := `<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>` +
		`<Credentials xmlns="` + ns88 + `"><Ticket>` + r.ticket + `</Ticket></Credentials></s:Header><s:Body>` +
		`<ForceResyncExternal xmlns="` + ns88 + `"><ErpConnectionId>3</ErpConnectionId><ErpActorType>Customer</ErpActorType>` +
		`<ExternalKeys xmlns:a="` + nsArrays + `"><a:string>` + key + `</a:string></ExternalKeys></ForceResyncExternal></s:Body></s:Envelope>`
	req, err := http.NewRequest(http.MethodPost, f.BaseURL()+"/Remote/Services88/ErpSync.svc", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("SOAPAction", action)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.StatusCode == http.StatusOK && !strings.Contains(b.String(), "<IsOk>true</IsOk>") {
		return resp.StatusCode, errors.New("200 without IsOk=true: " + b.String())
	}
	return resp.StatusCode, nil
}

// requests is what reached SuperOffice: state API questions and ErpSync calls.
func (r *rig) requests() (state, calls int) {
	n := 0
	for _, c := range r.sim.Counts().Calls {
		n += c
	}
	return r.sim.StateRequests(), n
}

// notifications serves the notification handler for the followers fs.
func (r *rig) notifications(t *testing.T, fs ...*tenantstate.Follower) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h, err := tenantstate.NewNotifications(ctx, tenantstate.NotificationsConfig{
		Environment: r.sim.EnvironmentURL(), Now: r.clock.Now, Logger: zerolog.New(zerolog.NewTestWriter(t)),
		Lookup: func(id string) *tenantstate.Follower {
			if strings.EqualFold(id, "Cust12345") {
				return fs[0]
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + tenantstate.NotificationsPath
}

// notify has the simulator POST a signed notification of change to url.
func (r *rig) notify(t *testing.T, url string, change netserversim.ChangeType) int {
	t.Helper()
	status, err := r.sim.Notify(context.Background(), url, change)
	if err != nil {
		t.Fatal(err)
	}
	return status
}

// wantPaused checks err is the tenant's hold and returns it.
func wantPaused(t *testing.T, err error) *flow.PausedError {
	t.Helper()
	pe, ok := errors.AsType[*flow.PausedError](err)
	if !ok {
		t.Fatalf("error %v, want a *flow.PausedError", err)
	}
	return pe
}

// forge re-signs token's header and claims with a key that is not the simulator's, keeping
// its kid.
func forge(t *testing.T, token string) string {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		t.Fatal(err)
	}
	forged := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	forged.Header["kid"] = parsed.Header["kid"]
	s, err := forged.SignedString(forgedKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// postRaw POSTs n to url and returns the answer's body.
func postRaw(t *testing.T, url string, n netserversim.Notification) string {
	t.Helper()
	b, _ := json.Marshal(n)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
