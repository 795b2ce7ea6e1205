package soap

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestResponseJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Response
		want string
	}{
		{
			name: "empty lists are [] not null",
			in:   Response{IsOk: true, Status: StatusOk},
			want: `{"is_ok":true,"status":"Ok","error_code":"","user_explanation":"","tech_explanation":"","changes":{"added":[],"updated":[],"deleted":[]}}`,
		},
		{
			name: "unknown status prints the name sent",
			in:   Response{IsOk: true, Status: StatusUnknown, StatusName: "Postponed", Changes: Changes{Updated: []ChangedItem{{Table: "contact", RecordID: 123}}}},
			want: `{"is_ok":true,"status":"Postponed","error_code":"","user_explanation":"","tech_explanation":"","changes":{"added":[],"updated":[{"table":"contact","record_id":123}],"deleted":[]}}`,
		},
		{
			name: "business failure",
			in:   Response{Status: StatusError, StatusName: "Error", ErrorCode: "E1", UserExplanation: "u", TechExplanation: "t"},
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
		var back Response
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		if back.Status != tt.in.Status || back.IsOk != tt.in.IsOk || !reflect.DeepEqual(back.Changes.Updated, tt.in.Changes.Updated) && len(tt.in.Changes.Updated) > 0 {
			t.Errorf("%s: round trip gave %+v", tt.name, back)
		}
	}
	// A pointer marshals the same way.
	got, _ := json.Marshal(&Response{Status: StatusWarning})
	if want := `{"is_ok":false,"status":"Warning","error_code":"","user_explanation":"","tech_explanation":"","changes":{"added":[],"updated":[],"deleted":[]}}`; string(got) != want {
		t.Errorf("pointer: got %s", got)
	}
}

func TestEnums(t *testing.T) {
	t.Parallel()
	for i := range 8 {
		a := ActorType(i)
		b, err := a.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back ActorType
		if err := back.UnmarshalText(b); err != nil || back != a {
			t.Errorf("ActorType %d round trip = %v, %v", i, back, err)
		}
	}
	if ActorType(8).Valid() || ActorType(-1).Valid() {
		t.Error("out-of-range actor types are Valid")
	}
	var s QuoteStatus
	if err := s.UnmarshalText([]byte("warning")); err != nil || s != StatusWarning {
		t.Errorf("UnmarshalText(warning) = %v, %v", s, err)
	}
	if err := s.UnmarshalText([]byte("Bogus")); err == nil {
		t.Error("UnmarshalText(Bogus) succeeded")
	}
}
