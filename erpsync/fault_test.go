package erpsync

import "testing"

// TestSenderFault: the fault codes that say the request itself is wrong, which the
// classifier turns into a permanent failure through FaultError.Sender.
func TestSenderFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		codes []string
		want  bool
	}{
		{[]string{"", "env:Receiver"}, false},
		{[]string{"", "a:InternalServiceFault"}, false},
		{[]string{"a:DeserializationFailed", "env:Sender"}, true},
		{[]string{"", "Client.Authentication"}, true},
		{[]string{"", "s:VersionMismatch"}, true},
		{[]string{"a:ActionNotSupported", "s:Client"}, true},
		{[]string{"", "s:Server"}, false},
		{[]string{"", "x:SomethingNew"}, false},
	}
	for _, tt := range tests {
		if got := SenderFault(tt.codes...); got != tt.want {
			t.Errorf("SenderFault(%q) = %v, want %v", tt.codes, got, tt.want)
		}
	}
}
