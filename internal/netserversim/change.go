package netserversim

import (
	"fmt"
	"hash/fnv"
	"strconv"
)

// ActorType is NetServer's ErpActorType (protocol doc §5.1). It has the same underlying type
// and ordinal values as erpsync.ActorType, so a caller holding one converts with
// netserversim.ActorType(a). On the wire it travels as its name.
type ActorType int16

// The ErpActorType values with their ordinal wire values [C].
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

// String returns the wire name, or "ErpActorType(N)" outside the enum.
func (a ActorType) String() string {
	if a >= 0 && int(a) < len(actorNames) {
		return actorNames[a]
	}
	return "ErpActorType(" + strconv.Itoa(int(a)) + ")"
}

// ParseActorType accepts exactly a wire name ("Customer"). Like WCF's DataContractSerializer
// it is case-sensitive and does not accept ordinals; the simulator answers anything else with a
// deserialization fault.
func ParseActorType(name string) (ActorType, error) {
	for i, n := range actorNames {
		if name == n {
			return ActorType(i), nil
		}
	}
	return 0, fmt.Errorf("netserversim: unknown ErpActorType %q", name)
}

// Table is the CRM table the simulator reports changes in for this actor type:
// Customer, Supplier, Partner and Unknown → "contact"; Person and Employee → "person";
// Project → "project"; Sale → "sale". (Our inference, protocol doc §6.1.)
func (a ActorType) Table() string {
	switch a {
	case ActorPerson, ActorEmployee:
		return "person"
	case ActorProject:
		return "project"
	case ActorSale:
		return "sale"
	default:
		return "contact"
	}
}

// ChangeKind says which of ChangedData's three lists a change item is reported in.
type ChangeKind string

// The change kinds, one per ChangedData list.
const (
	Added   ChangeKind = "added"   // AddedRecords
	Updated ChangeKind = "updated" // UpdatedRecords
	Deleted ChangeKind = "deleted" // DeletedRecords
)

// Change is one ChangedDataItem the simulator reports for a key.
type Change struct {
	Table    string     `json:"table"`
	RecordID int32      `json:"record_id"`
	Kind     ChangeKind `json:"kind"`
}

// ExpectedChange is the change item the simulator reports for key when it is resynced as
// actor. It is a pure function, stable across runs, processes and Go versions: the table
// comes from actor (see ActorType.Table); the record id (1..9,999,999) and the kind come from
// a 64-bit FNV-1a hash of the key alone, about 20% Added, 70% Updated and 10% Deleted.
// Tests use it to compute what a ledger should hold without calling the server.
func ExpectedChange(actor ActorType, key string) Change {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	x := mix64(h.Sum64())
	kind := Updated
	switch b := x % 100; {
	case b < 20:
		kind = Added
	case b >= 90:
		kind = Deleted
	}
	return Change{
		Table:    actor.Table(),
		RecordID: int32((x>>32)%9_999_999) + 1,
		Kind:     kind,
	}
}

// ExpectedChanges returns ExpectedChange for each distinct key, in first-occurrence order:
// exactly the items a successful reply to a batch of keys carries, before they are split
// into the Added/Updated/Deleted lists.
func ExpectedChanges(actor ActorType, keys []string) []Change {
	uk := uniqueKeys(keys)
	out := make([]Change, len(uk))
	for i, k := range uk {
		out[i] = ExpectedChange(actor, k)
	}
	return out
}

// mix64 is the splitmix64 finaliser; it spreads FNV's weak low bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// uniqueKeys drops repeated keys, keeping first occurrences in order.
func uniqueKeys(keys []string) []string {
	seen := make(map[string]struct{}, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, k)
	}
	return out
}
