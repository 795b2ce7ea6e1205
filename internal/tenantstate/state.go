package tenantstate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// State is a tenant's state as the state API reports it; the numbers are SuperOffice's.
type State int

// The documented states. Only Running and OnlineMaintenance serve the APIs.
const (
	Unknown            State = 0
	Provisioning       State = 1
	Running            State = 2
	Deleted            State = 3
	Suspended          State = 4
	OnlineMaintenance  State = 5
	OfflineMaintenance State = 6
	ProvisioningFailed State = 8
	Deleting           State = 10
	DeleteFailed       State = 11
	MigrationPending   State = 12
)

var stateNames = map[State]string{
	Unknown: "Unknown", Provisioning: "Provisioning", Running: "Running", Deleted: "Deleted",
	Suspended: "Suspended", OnlineMaintenance: "OnlineMaintenance", OfflineMaintenance: "OfflineMaintenance",
	ProvisioningFailed: "ProvisioningFailed", Deleting: "Deleting", DeleteFailed: "DeleteFailed",
	MigrationPending: "MigrationPending",
}

// String is the state's name ("OfflineMaintenance"); a number SuperOffice has not documented
// prints as "State(7)".
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Running reports whether the APIs are available: Running and OnlineMaintenance.
func (s State) Running() bool { return s == Running || s == OnlineMaintenance }

// MarshalJSON writes the name.
func (s State) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a name (case-insensitive, as the state API writes it) or a number.
func (s *State) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*s = State(n)
		return nil
	}
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return fmt.Errorf("tenant state %s: want a state name or number", b)
	}
	for st, sn := range stateNames {
		if strings.EqualFold(sn, name) {
			*s = st
			return nil
		}
	}
	if v, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(name, ")"), "State(")); err == nil {
		*s = State(v)
		return nil
	}
	return fmt.Errorf("tenant state %q: not a documented state name", name)
}
