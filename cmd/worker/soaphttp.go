package main

import (
	"net"
	"net/http"
	"time"
)

// soapHTTPClient is the HTTP client for SuperOffice: keep-alive connections sized for the
// worker's concurrency, and an overall timeout per call. wrap, when not nil, puts flow
// control around the transport: every request to the tenant (calls, logins, the repeat
// after a ticket refresh) goes through it.
func soapHTTPClient(timeout time.Duration, wrap wrapTransport) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}
	var rt http.RoundTripper = tr
	if wrap != nil {
		rt = wrap(tr)
	}
	return &http.Client{Transport: rt, Timeout: timeout}
}
