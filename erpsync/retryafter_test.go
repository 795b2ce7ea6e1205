package erpsync

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestRetryAfterParsing covers RetryAfter's edge cases.
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
		if got, ok := RetryAfter(tt.in, now); got != tt.want || ok != tt.wantOK {
			t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
