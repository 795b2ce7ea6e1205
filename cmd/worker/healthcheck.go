package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// cmdHealthcheck asks the local worker's (or dashboard's) /readyz, for a container health
// check: the image has no shell and no curl. Exit status: 0 ready; 1 not ready (503, no
// answer, nothing listening); 2 usage or configuration error (WORKER_HTTP_ADDR=off or not
// host:port).
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("worker healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: worker healthcheck [--http-addr HOST:PORT] [--timeout D]

Asks /readyz of the worker or dashboard listening on WORKER_HTTP_ADDR on this machine (a
listener on 0.0.0.0 or [::] is asked on loopback); for a container health check.
Exit status: 0 ready; 1 not ready or not answering; 2 usage or configuration error.

Flags:
`)
		fs.PrintDefaults()
	}
	v, err := parseScoped(healthcheckSettings, fs, args, getenv)
	if err != nil {
		return parseExit(err)
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "worker healthcheck: "+format+"\n", a...)
		return code
	}
	if err := noArgs(fs); err != nil {
		return fail(2, "%v", err)
	}
	if *timeout <= 0 {
		return fail(2, "--timeout %s: want a positive duration such as 3s", *timeout)
	}
	url, err := readyzURL(v.str("WORKER_HTTP_ADDR"))
	if err != nil {
		return fail(2, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(2, "%v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail(1, "not ready: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fail(1, "not ready: %s answered %d %s", url, resp.StatusCode, oneLine(string(body)))
	}
	fmt.Fprintf(stdout, "ready: %s answered %s\n", url, oneLine(string(body)))
	return 0
}

// readyzURL is the /readyz URL of a listener on addr, as seen from the same machine.
func readyzURL(addr string) (string, error) {
	if addr == "off" || addr == "" {
		return "", fmt.Errorf("WORKER_HTTP_ADDR=%q: this worker serves no /readyz to ask; give it a listener (e.g. 0.0.0.0:8080) or use no health check", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("WORKER_HTTP_ADDR=%q: want host:port, e.g. 127.0.0.1:8080", addr)
	}
	switch strings.Trim(host, "[]") {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
