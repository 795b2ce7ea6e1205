package flow

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestNetServerAnsweredIsNoOutage: an HTTP 500 that NetServer itself sent — WCF's SOAP fault,
// the WebAPI's error object — means the tenant is up, whichever API the worker uses; a 500
// error page from what stands in front of it is an outage.
func TestNetServerAnsweredIsNoOutage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		api, contentType, body string
		outage                 bool
	}{
		{"SOAP", "text/xml; charset=utf-8", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>x</faultstring></s:Fault></s:Body></s:Envelope>`, false},
		{"REST", "application/json; charset=utf-8", `{"Error":true,"ErrorType":"SoException","ErrorMessage":"x","ErrorSource":"SoCore"}`, false},
		{"REST", "application/json", `{"Message":"An error has occurred."}`, false},
		{"IIS", "text/html", `<html><body>500 - Internal server error.</body></html>`, true},
		{"proxy", "", ``, true},
	} {
		t.Run(tt.api+" "+tt.contentType, func(t *testing.T) {
			t.Parallel()
			rdb := newRedis(t)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, tt.body)
			}))
			defer srv.Close()
			c := newControl(t, rdb, func(c *Config) { c.TenantFailures = 2 })
			hc := &http.Client{Transport: c.Transport(nil)}
			for range 2 {
				if code, err := get(t, hc, context.Background(), srv.URL); code != 500 {
					t.Fatalf("%d %v", code, err)
				}
			}
			if paused := c.Paused(context.Background(), 0) != nil; paused != tt.outage {
				t.Errorf("two HTTP 500 with %q: breaker open %v, want %v", strings.TrimSpace(tt.contentType), paused, tt.outage)
			}
		})
	}
}
