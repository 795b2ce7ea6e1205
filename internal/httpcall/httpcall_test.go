package httpcall

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/erpsync"
)

// TestRetryAfterParsing covers ParseRetryAfter's and RetryAfter's edge cases.
func TestRetryAfterParsing(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"-5", 0, false},
		{" 30 ", 30 * time.Second, true},
		{"soon", 0, false},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{now.Add(time.Hour).Format(http.TimeFormat), time.Hour, true},
		{strconv.Itoa(1 << 40), 365 * 24 * time.Hour, true},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if got, ok := RetryAfter(tt.in, now); got != tt.want || ok != tt.wantOK {
			t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestMisdirected: the 421 message names the tenant, the old host and the state API.
func TestMisdirected(t *testing.T) {
	t.Parallel()
	he := &erpsync.HTTPError{StatusCode: http.StatusMisdirectedRequest}
	err := Misdirected("https://sod2.superoffice.com/Cust12345", he)
	for _, want := range []string{"Cust12345", "sod2.superoffice.com", "https://sod.superoffice.com/api/state/Cust12345", "SUPEROFFICE_URL", "moved"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
	if got, ok := IsMisdirected(err); !ok || got != he {
		t.Errorf("IsMisdirected(%v) = %v, %v", err, got, ok)
	}
}
