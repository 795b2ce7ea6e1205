package main

import (
	"net"
	"net/http"
	"time"
)

// superofficeHTTPClient is the one HTTP client every request to a SuperOffice tenant goes
// through, whichever the transport: SOAP and REST calls, password and system-user logins,
// the repeat after a ticket refresh. It keeps keep-alive connections sized for the worker's
// concurrency and an overall timeout per request (timeout, which also bounds the wait for
// the response headers). wrap, when not nil, puts flow control around the transport, so
// that it sees every one of those requests.
func superofficeHTTPClient(timeout time.Duration, wrap wrapTransport) *http.Client {
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
