package netserversim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// FaultRequest changes fault settings in one step; it is the JSON body of POST /_sim/faults
// and what cmd/netserver-sim builds from its flags. Absent (nil/zero) fields leave the
// setting as it is. Durations are Go duration strings ("250ms").
type FaultRequest struct {
	Clear         bool        `json:"clear,omitempty"`       // ClearFaults before the rest
	Fail503       *int        `json:"fail503,omitempty"`     // Fail503(n)
	Drop          *int        `json:"drop,omitempty"`        // DropNext(n)
	Throttle      *int        `json:"throttle,omitempty"`    // Throttle(n, RetryAfter)
	RetryAfter    string      `json:"retry_after,omitempty"` // with Throttle; default 1s
	Latency       *string     `json:"latency,omitempty"`     // SetLatency
	SlowChunk     *int        `json:"slow_chunk,omitempty"`  // SetSlowBody(SlowChunk, SlowDelay)
	SlowDelay     string      `json:"slow_delay,omitempty"`
	Poison        *[]string   `json:"poison,omitempty"`      // SetPoison
	Outage        *bool       `json:"outage,omitempty"`      // SetOutage
	Misdirected   *bool       `json:"misdirected,omitempty"` // SetMisdirected
	FaultRate     *float64    `json:"fault_rate,omitempty"`  // SetRandomFaults(FaultRate, FaultSeed, FaultKinds...)
	FaultSeed     uint64      `json:"fault_seed,omitempty"`  //
	FaultKinds    []FaultKind `json:"fault_kinds,omitempty"` // default all
	ExpireTickets bool        `json:"expire_tickets,omitempty"`
}

// ApplyFaults validates req and applies it; on error nothing changes.
func (s *Server) ApplyFaults(req FaultRequest) error {
	dur := func(name, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%s: %q is not a non-negative duration", name, v)
		}
		return d, nil
	}
	var errs []error
	retryAfter, err := dur("retry_after", req.RetryAfter)
	errs = append(errs, err)
	var latency time.Duration
	if req.Latency != nil {
		latency, err = dur("latency", *req.Latency)
		errs = append(errs, err)
	}
	slowDelay, err := dur("slow_delay", req.SlowDelay)
	errs = append(errs, err)
	for _, k := range req.FaultKinds {
		switch k {
		case FaultUnavailable, FaultThrottle, FaultDrop:
		default:
			errs = append(errs, fmt.Errorf("fault_kinds: unknown kind %q (want unavailable, throttle, drop)", k))
		}
	}
	if req.FaultRate != nil && (*req.FaultRate < 0 || *req.FaultRate > 1) {
		errs = append(errs, fmt.Errorf("fault_rate: %v is not within [0, 1]", *req.FaultRate))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	if req.Clear {
		s.ClearFaults()
	}
	if req.Fail503 != nil {
		s.Fail503(*req.Fail503)
	}
	if req.Drop != nil {
		s.DropNext(*req.Drop)
	}
	if req.Throttle != nil {
		s.Throttle(*req.Throttle, retryAfter)
	}
	if req.Latency != nil {
		s.SetLatency(latency)
	}
	if req.SlowChunk != nil {
		s.SetSlowBody(*req.SlowChunk, slowDelay)
	}
	if req.Poison != nil {
		s.SetPoison(*req.Poison...)
	}
	if req.Outage != nil {
		s.SetOutage(*req.Outage)
	}
	if req.Misdirected != nil {
		s.SetMisdirected(*req.Misdirected)
	}
	if req.FaultRate != nil {
		s.SetRandomFaults(*req.FaultRate, req.FaultSeed, req.FaultKinds...)
	}
	if req.ExpireTickets {
		s.ExpireTickets()
	}
	return nil
}

// MarshalJSON writes durations as Go duration strings.
func (f FaultState) MarshalJSON() ([]byte, error) {
	type plainState FaultState
	return json.Marshal(struct {
		plainState
		RetryAfter string `json:"retry_after"`
		Latency    string `json:"latency"`
		SlowDelay  string `json:"slow_delay"`
	}{plainState(f), f.RetryAfter.String(), f.Latency.String(), f.SlowDelay.String()})
}

// AdminHandler serves the admin API (see the package doc) at /_sim/...; Config.Admin mounts
// it on the Server itself.
func (s *Server) AdminHandler() http.Handler { return http.HandlerFunc(s.serveAdmin) }

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(strings.ToLower(r.URL.Path), "/")
	route := r.Method + " " + p
	switch route {
	case "GET /_sim/counts":
		writeJSON(w, http.StatusOK, s.Counts())
	case "POST /_sim/reset":
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	case "GET /_sim/faults":
		writeJSON(w, http.StatusOK, s.Faults())
	case "POST /_sim/faults":
		var req FaultRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := s.ApplyFaults(req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, s.Faults())
	case "POST /_sim/state":
		s.serveAdminState(w, r)
	case "POST /_sim/tickets":
		writeJSON(w, http.StatusOK, map[string]string{"ticket": s.IssueTicket()})
	case "POST /_sim/expire-tickets":
		s.ExpireTickets()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no admin route " + route})
	}
}

// StateRequest scripts the tenant's life; it is the JSON body of POST /_sim/state. Absent
// fields leave things as they are: State (a name, e.g. "OfflineMaintenance") is applied, then
// Host (Move), then, when Notify is a URL, a signed notification of Change is POSTed to it.
type StateRequest struct {
	State  string      `json:"state,omitempty"`
	Host   *int        `json:"host,omitempty"`
	Notify string      `json:"notify,omitempty"`
	Change *ChangeType `json:"change,omitempty"`
}

func (s *Server) serveAdminState(w http.ResponseWriter, r *http.Request) {
	var req StateRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	fail := func(err error) { writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()}) }
	if err := dec.Decode(&req); err != nil {
		fail(err)
		return
	}
	var st TenantState
	var err error
	if req.State != "" {
		if st, err = ParseTenantState(req.State); err != nil {
			fail(fmt.Errorf("state: %w", err))
			return
		}
	}
	if (req.Notify == "") != (req.Change == nil) {
		fail(errors.New("notify and change go together: the URL to POST to and the ChangeType (0 Upgrade … 5 Move)"))
		return
	}
	if req.Host != nil {
		if err := s.Move(*req.Host); err != nil {
			fail(fmt.Errorf("host: %w", err))
			return
		}
	}
	if req.State != "" {
		s.SetTenantState(st)
	}
	answer := map[string]any{"host": s.TenantHost()}
	cur, since := s.TenantState()
	answer["state"], answer["since"] = cur.String(), since
	if req.Notify != "" {
		n, err := s.Notification(*req.Change)
		if err == nil {
			answer["notify_status"], err = PostNotification(r.Context(), req.Notify, n)
		}
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	writeNow(w, reply{status: status, contentType: ctJSON, body: append(body, '\n')})
}
