package erpsync

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		key        string
		wantReason string // "" means valid
	}{
		{"digits", "10001", ""},
		{"max length in runes", strings.Repeat("ø", MaxKeyLength), ""},
		{"astral plane", "key-😀", ""},
		{"tab newline cr", "a\tb\nc\rd", ""},
		{"private use and fffd", "\uE000\uFFFD", ""},
		{"empty", "", "empty"},
		{"too long", strings.Repeat("a", MaxKeyLength+1), "longer than 254 characters (255)"},
		{"invalid utf-8", "ab\xff", "not valid UTF-8 at byte 2"},
		{"nul", "a\x00", "control character U+0000 at byte 1"},
		{"escape char", "\x1b[0m", "control character U+001B"},
		{"fffe", "a\uFFFE", "U+FFFE at byte 1"},
		{"ffff", "\uFFFF", "U+FFFF"},
		{"del is allowed", "a\x7f", ""},
		{"C1 control is allowed by XML 1.0", "a\u0085", ""},
	}
	for _, tt := range tests {
		err := ValidateKey(tt.key)
		if tt.wantReason == "" {
			if err != nil {
				t.Errorf("%s: ValidateKey = %v, want nil", tt.name, err)
			}
			continue
		}
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Index != -1 || !strings.Contains(ke.Reason, tt.wantReason) {
			t.Errorf("%s: ValidateKey = %v, want *KeyError with reason %q", tt.name, err, tt.wantReason)
			continue
		}
		if len(ke.Key) > 40 {
			t.Errorf("%s: KeyError.Key is %d bytes, want it cut to 40", tt.name, len(ke.Key))
		}
	}
}

func TestKeyErrorMessage(t *testing.T) {
	t.Parallel()
	e := &KeyError{Index: 7, Key: "a\x00", Reason: "contains control character"}
	if got, want := e.Error(), `external key #7 "a\x00": contains control character`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestValidateKeyAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	key := strings.Repeat("Kunde-ø-", 20)
	if n := testing.AllocsPerRun(100, func() { _ = ValidateKey(key) }); n != 0 {
		t.Errorf("ValidateKey allocates %v times for a valid key, want 0", n)
	}
}
