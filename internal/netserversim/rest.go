package netserversim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// restForceResyncPath is the WebAPI agent method below the tenant, lower-cased (§8).
const restForceResyncPath = "/api/v1/agents/erpsync/forceresyncexternal"

// restRequest is the request body. Member names match case-insensitively (as JSON.NET
// does); any other member is refused.
type restRequest struct {
	ErpConnectionId *json.Number    `json:"ErpConnectionId"`
	ErpActorType    json.RawMessage `json:"ErpActorType"`
	ExternalKeys    *[]string       `json:"ExternalKeys"`
}

// handleREST is ForceResyncExternal over the WebAPI: the same faults, checks and counters
// as the SOAP endpoint (both are served by serveCall), JSON in and out.
func (s *Server) handleREST(r *http.Request) (reply, tally, CallInfo) {
	ci := CallInfo{Seq: s.seq.Add(1)}
	bad := func(rep reply) (reply, tally, CallInfo) { return rep, tally{outcome: OutcomeBadRequest}, ci }
	if r.Method != http.MethodPost {
		rep := jsonMessage(http.StatusMethodNotAllowed, "The requested resource does not support http method '"+r.Method+"'.", "")
		rep.header = http.Header{"Allow": {http.MethodPost}}
		return bad(rep)
	}
	if ct := r.Header.Get("Content-Type"); !hasMediaType(ct, "application/json") {
		return bad(jsonMessage(http.StatusUnsupportedMediaType,
			"The request entity's media type '"+ct+"' is not supported for this resource.", "want application/json"))
	}
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return bad(plain(http.StatusRequestEntityTooLarge, "Request Entity Too Large"))
		}
		return bad(plain(http.StatusBadRequest, "Bad Request"))
	}

	// Authentication comes before the body, as in the WebAPI's pipeline.
	scheme, ticket, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !strings.EqualFold(scheme, "SOTicket") || strings.TrimSpace(ticket) == "" {
		rep := restError(http.StatusUnauthorized, s.cfg.ExceptionType, "Authorization: want SOTicket <ticket>", "WebApi")
		return rep, tally{outcome: OutcomeException}, ci
	}
	ticket = strings.TrimSpace(ticket)

	req, derr := parseRESTRequest(data)
	if derr != "" {
		return bad(jsonMessage(http.StatusBadRequest, "The request is invalid.", derr))
	}
	keys := uniqueKeys(req.keys)
	ci.ErpConnectionID, ci.Actor, ci.Keys = req.connID, req.actor, keys

	appOK := !s.cfg.Online || (len(r.Header.Values("SO-AppToken")) == 1 && r.Header.Get("SO-AppToken") == s.cfg.AppToken)
	v := s.resync(req.connID, req.actor, keys, appOK, ticket)
	switch {
	case v.notGranted:
		return restError(http.StatusForbidden, "SoAccessDeniedException", v.refusal, "WebApi"), tally{outcome: OutcomeException}, ci
	case v.refusal != "":
		return restError(http.StatusUnauthorized, s.cfg.ExceptionType, v.refusal, "SoCore"), tally{outcome: OutcomeException}, ci
	}
	return restResync(v.pr), v.t, ci
}

// parseRESTRequest decodes the body strictly: one JSON object, the three members, nothing
// else. The message says what is wrong, in the style of the WebAPI's MessageDetail.
func parseRESTRequest(data []byte) (*resyncRequest, string) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	d.UseNumber()
	var raw restRequest
	if err := d.Decode(&raw); err != nil {
		return nil, "request body: " + err.Error()
	}
	if d.More() {
		return nil, "request body: data after the JSON object"
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, "request body: data after the JSON object"
	}
	req := &resyncRequest{}
	if raw.ErpConnectionId == nil {
		return nil, "ErpConnectionId is required"
	}
	n, err := strconv.ParseInt(raw.ErpConnectionId.String(), 10, 32)
	if err != nil {
		return nil, fmt.Sprintf("ErpConnectionId: the value '%s' is not a valid Int32", raw.ErpConnectionId.String())
	}
	req.connID = int32(n)
	if len(raw.ErpActorType) == 0 || string(raw.ErpActorType) == "null" {
		return nil, "ErpActorType is required"
	}
	var name string
	if err := json.Unmarshal(raw.ErpActorType, &name); err != nil {
		// JSON.NET also takes the enum's number.
		i, nerr := strconv.Atoi(string(raw.ErpActorType))
		if nerr != nil || i <= 0 || i >= len(actorNames) {
			return nil, fmt.Sprintf("ErpActorType: the value %s is not valid for ErpActorType", raw.ErpActorType)
		}
		req.actor = ActorType(i)
	} else {
		a, err := ParseActorType(name)
		if err != nil {
			return nil, fmt.Sprintf("ErpActorType: the value '%s' is not valid for ErpActorType", name)
		}
		req.actor = a
	}
	if raw.ExternalKeys == nil {
		return nil, "ExternalKeys is required ([] resyncs everything)"
	}
	req.keys = *raw.ExternalKeys
	return req, ""
}

// restError is the WebAPI's error object (§8) with an HTTP status.
func restError(status int, typ, message, source string) reply {
	b, _ := json.Marshal(map[string]any{"Error": true, "ErrorType": typ, "ErrorMessage": message, "ErrorSource": source})
	return reply{status: status, contentType: ctJSON, body: b}
}

// jsonMessage is ASP.NET Web API's {"Message", "MessageDetail"} error shape (§8).
func jsonMessage(status int, message, detail string) reply {
	m := map[string]string{"Message": message}
	if detail != "" {
		m["MessageDetail"] = detail
	}
	b, _ := json.Marshal(m)
	return reply{status: status, contentType: ctJSON, body: b}
}

type restItem struct {
	Tablename       string `json:"Tablename"`
	RecordId        int32  `json:"RecordId"`
	TableRight      any    `json:"TableRight"`
	FieldProperties struct {
	} `json:"FieldProperties"`
}

type restChanges struct {
	AddedRecords    []restItem `json:"AddedRecords"`
	UpdatedRecords  []restItem `json:"UpdatedRecords"`
	DeletedRecords  []restItem `json:"DeletedRecords"`
	TableRight      any        `json:"TableRight"`
	FieldProperties struct {
	} `json:"FieldProperties"`
}

type restPluginResponse struct {
	IsOk            bool         `json:"IsOk"`
	UserExplanation string       `json:"UserExplanation"`
	TechExplanation string       `json:"TechExplanation"`
	ErrorCode       string       `json:"ErrorCode"`
	Changes         *restChanges `json:"Changes"`
	Status          string       `json:"Status,omitempty"`
	TableRight      any          `json:"TableRight"`
	FieldProperties struct {
	} `json:"FieldProperties"`
}

// restResync is the PluginResponse as the WebAPI serialises it (§8): every member present,
// Changes null for a refused batch, Status left out with Config.OmitStatus.
func restResync(pr pluginResponse) reply {
	out := restPluginResponse{IsOk: pr.isOk, UserExplanation: pr.userExpl, TechExplanation: pr.techExpl, ErrorCode: pr.errorCode}
	if !pr.omitStatus {
		out.Status = pr.status
	}
	if !pr.nilChanges {
		c := &restChanges{AddedRecords: []restItem{}, UpdatedRecords: []restItem{}, DeletedRecords: []restItem{}}
		for _, ch := range pr.changes {
			it := restItem{Tablename: ch.Table, RecordId: ch.RecordID}
			switch ch.Kind {
			case Added:
				c.AddedRecords = append(c.AddedRecords, it)
			case Deleted:
				c.DeletedRecords = append(c.DeletedRecords, it)
			default:
				c.UpdatedRecords = append(c.UpdatedRecords, it)
			}
		}
		out.Changes = c
	}
	b, _ := json.Marshal(out)
	return reply{status: http.StatusOK, contentType: ctJSON, body: b}
}
