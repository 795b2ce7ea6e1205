package tenantstate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxAnswerBytes caps the state API's answer (a few hundred bytes in practice).
const maxAnswerBytes = 64 << 10

// answer is the state API's JSON: {ContextIdentifier, Endpoint, State, IsRunning, ValidUntil,
// Api, Version}. State comes as a name ("Running"); a number is accepted too.
type answer struct {
	ContextIdentifier string
	Endpoint          string
	State             State
	IsRunning         bool
	ValidUntil        time.Time
	Api               string //nolint:revive // the state API's member name
	Version           string
}

// StateURL is the state API's URL for the tenant: {Environment}/api/state/{ContextID}
// ("" without an Environment).
func (f *Follower) StateURL() string {
	if f.env == "" {
		return ""
	}
	return f.env + "/api/state/" + url.PathEscape(f.cfg.ContextID)
}

// ask asks the state API once and checks the answer.
func (f *Follower) ask(ctx context.Context) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.StateURL(), nil)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("SuperOffice state API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return answer{}, fmt.Errorf("SuperOffice state API: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return answer{}, fmt.Errorf("SuperOffice state API: HTTP %d %s for %s", resp.StatusCode, http.StatusText(resp.StatusCode), f.cfg.ContextID)
	}
	if len(body) > maxAnswerBytes {
		return answer{}, fmt.Errorf("SuperOffice state API: answer over %d bytes", maxAnswerBytes)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return answer{}, fmt.Errorf("SuperOffice state API: answer is not the documented JSON: %w", err)
	}
	return a, f.check(&a)
}

// check refuses an answer for another tenant, and one that says running without a usable
// host; it fills Api from Endpoint when only Endpoint came.
func (f *Follower) check(a *answer) error {
	if !strings.EqualFold(a.ContextIdentifier, f.cfg.ContextID) {
		return fmt.Errorf("SuperOffice state API: answered for %q, not %s", a.ContextIdentifier, f.cfg.ContextID)
	}
	if a.IsRunning != a.State.Running() {
		// IsRunning is documented as true for Running and OnlineMaintenance only; believe the
		// more careful of the two.
		if a.IsRunning {
			a.State = Unknown
		}
	}
	if !a.State.Running() {
		return nil
	}
	for _, u := range []*string{&a.Endpoint, &a.Api} {
		*u = strings.TrimRight(*u, "/")
		if *u == "" {
			continue
		}
		p, err := url.Parse(*u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("SuperOffice state API: %q is not an absolute http(s) URL", *u)
		}
	}
	if a.Endpoint == "" {
		return fmt.Errorf("SuperOffice state API: %s is %s but the answer names no Endpoint", f.cfg.ContextID, a.State)
	}
	if a.Api == "" {
		a.Api = a.Endpoint + "/api"
	}
	return nil
}
