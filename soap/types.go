package soap

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// ActorType is NetServer's ErpActorType: which kind of ERP record an external key names.
// It travels on the wire as its name ("Customer"); the zero value is Unknown.
type ActorType int16

// The ErpActorType values, with their ordinal wire values.
const (
	ActorUnknown  ActorType = 0
	ActorCustomer ActorType = 1
	ActorSupplier ActorType = 2
	ActorPartner  ActorType = 3
	ActorPerson   ActorType = 4
	ActorProject  ActorType = 5
	ActorEmployee ActorType = 6
	ActorSale     ActorType = 7
)

var actorNames = [...]string{"Unknown", "Customer", "Supplier", "Partner", "Person", "Project", "Employee", "Sale"}

// String returns the wire name, or "ErpActorType(N)" for a value outside the enum.
func (a ActorType) String() string {
	if a >= 0 && int(a) < len(actorNames) {
		return actorNames[a]
	}
	return "ErpActorType(" + strconv.Itoa(int(a)) + ")"
}

// Valid reports whether a is one of the eight named values.
func (a ActorType) Valid() bool { return a >= 0 && int(a) < len(actorNames) }

// ParseActorType accepts a wire name (case-insensitive) or its ordinal ("1").
func ParseActorType(s string) (ActorType, error) {
	for i, n := range actorNames {
		if equalFold(s, n) {
			return ActorType(i), nil
		}
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(actorNames) {
		return ActorType(n), nil
	}
	return 0, fmt.Errorf("unknown ErpActorType %q: want one of Unknown, Customer, Supplier, Partner, Person, Project, Employee, Sale", s)
}

// MarshalText prints the wire name.
func (a ActorType) MarshalText() ([]byte, error) {
	if !a.Valid() {
		return nil, fmt.Errorf("invalid ErpActorType %d", int(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText parses a wire name or ordinal.
func (a *ActorType) UnmarshalText(b []byte) error {
	v, err := ParseActorType(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// QuoteStatus is PluginResponse.Status. Servers before NetServer 10.1.9 do not send it; the
// client then derives it from IsOk. A name this package does not know is kept in Response.StatusName.
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
// gives StatusUnknown and ok=false.
func ParseQuoteStatus(s string) (QuoteStatus, bool) {
	for i, n := range statusNames {
		if equalFold(s, n) {
			return QuoteStatus(i), true
		}
	}
	return StatusUnknown, false
}

// MarshalText prints the wire name ("Unknown" for StatusUnknown; Response's JSON form prints
// the name the server sent instead).
func (s QuoteStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a wire name (case-insensitive); "Unknown" gives StatusUnknown.
func (s *QuoteStatus) UnmarshalText(b []byte) error {
	v, ok := ParseQuoteStatus(string(b))
	if !ok && !equalFold(string(b), "Unknown") {
		return fmt.Errorf("unknown QuoteStatus %q: want one of Ok, OkWithInfo, Warning, Error", b)
	}
	*s = v
	return nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
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

// Response is the PluginResponse of ForceResyncExternal. IsOk=false is a business failure:
// SuperOffice answered, and the connector refused; it is a result, not an error.
type Response struct {
	IsOk            bool        `json:"is_ok"`
	Status          QuoteStatus `json:"status"`
	StatusName      string      `json:"-"` // the name as sent; "" when the server sent no Status
	UserExplanation string      `json:"user_explanation"`
	TechExplanation string      `json:"tech_explanation"`
	ErrorCode       string      `json:"error_code"`
	Changes         Changes     `json:"changes"`
}

// responseJSON is the operator-facing JSON form of Response, in the order operators read it.
type responseJSON struct {
	IsOk            bool    `json:"is_ok"`
	Status          string  `json:"status"`
	ErrorCode       string  `json:"error_code"`
	UserExplanation string  `json:"user_explanation"`
	TechExplanation string  `json:"tech_explanation"`
	Changes         Changes `json:"changes"`
}

// MarshalJSON writes the operator-facing form: Status as its name (the name the server sent
// when it is StatusUnknown), and every change list as [] rather than null.
func (r Response) MarshalJSON() ([]byte, error) {
	status := r.Status.String()
	if r.Status == StatusUnknown && r.StatusName != "" {
		status = r.StatusName
	}
	return json.Marshal(responseJSON{
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
func (r *Response) UnmarshalJSON(b []byte) error {
	var v responseJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	status, _ := ParseQuoteStatus(v.Status)
	*r = Response{
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
