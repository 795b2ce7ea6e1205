package erpsync

import (
	"fmt"
	"strconv"
	"strings"
)

// ActorType is NetServer's ErpActorType: which kind of ERP record an external key names.
// It travels on the wire as its name ("Customer"); the zero value is Unknown, which names
// no record and cannot be resynced.
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

// ActorTypes lists the actor types that can be resynced (every value but Unknown), in wire
// order.
var ActorTypes = []ActorType{ActorCustomer, ActorSupplier, ActorPartner, ActorPerson, ActorProject, ActorEmployee, ActorSale}

// ActorTypeHint is the "want one of …" every actor type error ends with; commands use it
// in their own usage messages.
var ActorTypeHint = func() string {
	names := make([]string, len(ActorTypes))
	for i, a := range ActorTypes {
		names[i] = a.String()
	}
	return "want one of " + strings.Join(names, ", ")
}()

// String returns the wire name, or "ErpActorType(N)" for a value outside the enum.
func (a ActorType) String() string {
	if a >= 0 && int(a) < len(actorNames) {
		return actorNames[a]
	}
	return "ErpActorType(" + strconv.Itoa(int(a)) + ")"
}

// Validate reports whether keys of actor type a can be resynced: a must be one of
// ActorTypes. This is the one check of an actor type; every caller uses it.
func (a ActorType) Validate() error {
	if a <= ActorUnknown || int(a) >= len(actorNames) {
		return fmt.Errorf("actor type %s: %s", a, ActorTypeHint)
	}
	return nil
}

// ParseActorType reads an actor type that can be resynced: a wire name (case-insensitive)
// or its ordinal ("1"). Unknown and anything else is an error that lists what is accepted.
func ParseActorType(s string) (ActorType, error) {
	a, ok := lookupActorType(s)
	if !ok || a.Validate() != nil {
		return ActorUnknown, fmt.Errorf("actor type %q: %s", s, ActorTypeHint)
	}
	return a, nil
}

func lookupActorType(s string) (ActorType, bool) {
	for i, n := range actorNames {
		if strings.EqualFold(s, n) {
			return ActorType(i), true
		}
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(actorNames) {
		return ActorType(n), true
	}
	return ActorUnknown, false
}

// MarshalText prints the wire name.
func (a ActorType) MarshalText() ([]byte, error) {
	if a < 0 || int(a) >= len(actorNames) {
		return nil, fmt.Errorf("invalid ErpActorType %d", int(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText reads any wire name or ordinal, Unknown included, so that stored data
// decodes and Validate can say what is wrong with it; a name outside the enum is an error
// that lists what is accepted.
func (a *ActorType) UnmarshalText(b []byte) error {
	v, ok := lookupActorType(string(b))
	if !ok {
		return fmt.Errorf("actor type %q: %s", b, ActorTypeHint)
	}
	*a = v
	return nil
}
