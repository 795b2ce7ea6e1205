package httpcall

import (
	"net/http"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/erpsync"
)

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
