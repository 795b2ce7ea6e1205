package erpsync

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestResultJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Result
		want string
	}{
		{
			name: "empty lists are [] not null",
			in:   Result{IsOk: true, Status: StatusOk},
			want: `{"is_ok":true,"status":"Ok","error_code":"","user_explanation":"","tech_explanation":"","changes":{"added":[],"updated":[],"deleted":[]}}`,
		},
		{
			name: "unknown status prints the name sent",
			in:   Result{IsOk: true, Status: StatusUnknown, StatusName: "Postponed", Changes: Changes{Updated: []ChangedItem{{Table: "contact", RecordID: 123}}}},
			want: `{"is_ok":true,"status":"Postponed","error_code":"","user_explanation":"","tech_explanation":"","changes":{"added":[],"updated":[{"table":"contact","record_id":123}],"deleted":[]}}`,
		},
		{
			name: "business failure",
			in:   Result{Status: StatusError, StatusName: "Error", ErrorCode: "E1", UserExplanation: "u", TechExplanation: "t"},
			want: `{"is_ok":false,"status":"Error","error_code":"E1","user_explanation":"u","tech_explanation":"t","changes":{"added":[],"updated":[],"deleted":[]}}`,
		},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
		var back Result
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		if back.Status != tt.in.Status || back.IsOk != tt.in.IsOk || !reflect.DeepEqual(back.Changes.Updated, tt.in.Changes.Updated) && len(tt.in.Changes.Updated) > 0 {
			t.Errorf("%s: round trip gave %+v", tt.name, back)
		}
	}
	// A pointer marshals the same way.
	got, _ := json.Marshal(&Result{Status: StatusWarning})
	if want := `{"is_ok":false,"status":"Warning","error_code":"","user_explanation":"","tech_explanation":"","changes":{"added":[],"updated":[],"deleted":[]}}`; string(got) != want {
		t.Errorf("pointer: got %s", got)
	}
}

func TestEnums(t *testing.T) {
	t.Parallel()
	for _, a := range ActorTypes {
		b, err := a.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back ActorType
		if err := back.UnmarshalText(b); err != nil || back != a {
			t.Errorf("ActorType %d round trip = %v, %v", a, back, err)
		}
	}
	for _, a := range []ActorType{ActorUnknown, 8, -1} {
		if err := a.Validate(); err == nil {
			t.Errorf("ActorType(%d).Validate() = nil", a)
		}
	}
	var s QuoteStatus
	for _, name := range []string{"warning", "Warn"} {
		if err := s.UnmarshalText([]byte(name)); err != nil || s != StatusWarning {
			t.Errorf("UnmarshalText(%s) = %v, %v", name, s, err)
		}
	}
	if err := s.UnmarshalText([]byte("Bogus")); err == nil {
		t.Error("UnmarshalText(Bogus) succeeded")
	}
}

func TestParseActorType(t *testing.T) {
	t.Parallel()
	const want = `want one of Customer, Supplier, Partner, Person, Project, Employee, Sale`
	for _, tc := range []struct {
		in      string
		want    ActorType
		wantErr bool
	}{
		{"Customer", ActorCustomer, false},
		{"customer", ActorCustomer, false},
		{"7", ActorSale, false},
		{"Unknown", 0, true},
		{"0", 0, true},
		{"Contact", 0, true},
		{"8", 0, true},
		{"", 0, true},
	} {
		got, err := ParseActorType(tc.in)
		if tc.wantErr {
			if err == nil || !strings.HasSuffix(err.Error(), want) || strings.Contains(err.Error(), "Unknown,") {
				t.Errorf("ParseActorType(%q) error = %v, want one ending %q", tc.in, err, want)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseActorType(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestCompleteResult: the rules both transports apply to a decoded PluginResponse.
func TestCompleteResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		in                 Result
		hasIsOk, hasStatus bool
		want               *Result // nil: a protocol error
	}{
		{"no IsOk", Result{Status: StatusError, StatusName: "Error", ErrorCode: "E"}, false, true, nil},
		{"no IsOk, no Status", Result{}, false, false, nil},
		{"IsOk true, no Status", Result{IsOk: true}, true, false, &Result{IsOk: true, Status: StatusOk}},
		{"IsOk false, no Status", Result{}, true, false, &Result{Status: StatusError}},
		{"Status kept", Result{IsOk: true, Status: StatusWarning, StatusName: "Warn"}, true, true, &Result{IsOk: true, Status: StatusWarning, StatusName: "Warn"}},
	}
	for _, tt := range tests {
		in := tt.in
		got, err := CompleteResult(&in, tt.hasIsOk, tt.hasStatus, 200)
		if tt.want == nil {
			var pe *ProtocolError
			if got != nil || !errors.As(err, &pe) || pe.HTTPStatus != 200 || !strings.Contains(pe.Reason, "no IsOk") {
				t.Errorf("%s: CompleteResult = %+v, %v; want a protocol error naming IsOk", tt.name, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: CompleteResult = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}
