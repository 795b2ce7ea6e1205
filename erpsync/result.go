package erpsync

import (
	"encoding/json"
	"fmt"
	"strings"
)

// QuoteStatus is PluginResponse.Status. Servers before NetServer 10.1.9 do not send it; the
// client then derives it from IsOk. A name this package does not know is kept in Result.StatusName.
type QuoteStatus int

// The QuoteStatus values.
const (
	StatusOk         QuoteStatus = 0
	StatusOkWithInfo QuoteStatus = 1
	StatusWarning    QuoteStatus = 2
	StatusError      QuoteStatus = 3
	// StatusUnknown marks a name the server sent that this package does not know.
	StatusUnknown QuoteStatus = -1
)

var statusNames = [...]string{"Ok", "OkWithInfo", "Warning", "Error"}

// String returns the wire name, or "Unknown" for StatusUnknown.
func (s QuoteStatus) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Unknown"
}

// ParseQuoteStatus maps a wire name (case-insensitive) to a QuoteStatus; an unknown name
// gives StatusUnknown and ok=false. "Warn", the REST API's documented spelling, is
// StatusWarning as well.
func ParseQuoteStatus(s string) (QuoteStatus, bool) {
	if strings.EqualFold(s, "Warn") {
		return StatusWarning, true
	}
	for i, n := range statusNames {
		if strings.EqualFold(s, n) {
			return QuoteStatus(i), true
		}
	}
	return StatusUnknown, false
}

// MarshalText prints the wire name ("Unknown" for StatusUnknown; Result's JSON form prints
// the name the server sent instead).
func (s QuoteStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a wire name (case-insensitive); "Unknown" gives StatusUnknown.
func (s *QuoteStatus) UnmarshalText(b []byte) error {
	v, ok := ParseQuoteStatus(string(b))
	if !ok && !strings.EqualFold(string(b), "Unknown") {
		return fmt.Errorf("unknown QuoteStatus %q: want one of Ok, OkWithInfo, Warning, Error", b)
	}
	*s = v
	return nil
}

// ChangedItem is one CRM row that a call touched (ChangedDataItem on the wire).
type ChangedItem struct {
	Table    string `json:"table"`
	RecordID int32  `json:"record_id"`
}

// Changes is ChangedData: the CRM rows a resync added, updated and deleted. Nil slices mean
// the server sent nothing (or nil) for that list; an empty non-nil slice means it sent an
// empty list. Both marshal to JSON as [].
type Changes struct {
	Added   []ChangedItem `json:"added"`
	Updated []ChangedItem `json:"updated"`
	Deleted []ChangedItem `json:"deleted"`
}

// MarshalJSON writes the three lists, each as [] when empty or nil.
func (c Changes) MarshalJSON() ([]byte, error) {
	type plain Changes // no methods: avoids recursion
	p := plain{Added: nonNil(c.Added), Updated: nonNil(c.Updated), Deleted: nonNil(c.Deleted)}
	return json.Marshal(p)
}

func nonNil(s []ChangedItem) []ChangedItem {
	if s == nil {
		return []ChangedItem{}
	}
	return s
}

// Result is what ForceResyncExternal answered (PluginResponse, on either transport).
// IsOk=false is a business failure: SuperOffice answered, and the connector refused; it is
// a result, not an error.
type Result struct {
	IsOk            bool        `json:"is_ok"`
	Status          QuoteStatus `json:"status"`
	StatusName      string      `json:"-"` // the name as sent; "" when the server sent no Status
	UserExplanation string      `json:"user_explanation"`
	TechExplanation string      `json:"tech_explanation"`
	ErrorCode       string      `json:"error_code"`
	Changes         Changes     `json:"changes"`
}

// CompleteResult finishes a PluginResponse that a transport has decoded, by the rules both
// transports share: a reply without IsOk is not a PluginResponse, whatever else it holds,
// and gives a *ProtocolError (httpStatus is the reply's HTTP status, 0 when unknown), since
// read as IsOk=false it would pass for the connector's business "no"; a reply without Status
// (servers before NetServer 10.1.9) gets Status Ok or Error from IsOk and StatusName "".
func CompleteResult(r *Result, hasIsOk, hasStatus bool, httpStatus int) (*Result, error) {
	if !hasIsOk {
		return nil, &ProtocolError{HTTPStatus: httpStatus, Reason: "reply is not a PluginResponse (no IsOk)"}
	}
	if !hasStatus {
		r.StatusName = ""
		r.Status = StatusError
		if r.IsOk {
			r.Status = StatusOk
		}
	}
	return r, nil
}

// resultJSON is the operator-facing JSON form of Result, in the order operators read it.
type resultJSON struct {
	IsOk            bool    `json:"is_ok"`
	Status          string  `json:"status"`
	ErrorCode       string  `json:"error_code"`
	UserExplanation string  `json:"user_explanation"`
	TechExplanation string  `json:"tech_explanation"`
	Changes         Changes `json:"changes"`
}

// MarshalJSON writes the operator-facing form: Status as its name (the name the server sent
// when it is StatusUnknown), and every change list as [] rather than null.
func (r Result) MarshalJSON() ([]byte, error) {
	status := r.Status.String()
	if r.Status == StatusUnknown && r.StatusName != "" {
		status = r.StatusName
	}
	return json.Marshal(resultJSON{
		IsOk:            r.IsOk,
		Status:          status,
		ErrorCode:       r.ErrorCode,
		UserExplanation: r.UserExplanation,
		TechExplanation: r.TechExplanation,
		Changes:         r.Changes,
	})
}

// UnmarshalJSON reads the form MarshalJSON writes. StatusName is set to the status as
// written, so a name this package does not know survives a round trip as StatusUnknown.
func (r *Result) UnmarshalJSON(b []byte) error {
	var v resultJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	status, _ := ParseQuoteStatus(v.Status)
	*r = Result{
		IsOk:            v.IsOk,
		Status:          status,
		StatusName:      v.Status,
		UserExplanation: v.UserExplanation,
		TechExplanation: v.TechExplanation,
		ErrorCode:       v.ErrorCode,
		Changes:         v.Changes,
	}
	return nil
}
