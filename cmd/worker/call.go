package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/tenant"
)

// cmdCall makes one synchronous ForceResyncExternal call and prints the response as JSON.
// Exit status: 0 IsOk; 1 IsOk=false; 2 anything else. With 1 and 2, stderr says why in one
// line.
func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("worker call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := fs.String("erp-connection", "", "ERP connection id (a positive number)")
	actor := fs.String("actor-type", "", "ErpActorType: Customer, Supplier, Partner, Person, Project, Employee or Sale")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: worker call --erp-connection N --actor-type TYPE KEY...

One synchronous ForceResyncExternal call; prints SuperOffice's response as JSON on stdout.
Exit status: 0 IsOk; 1 IsOk=false; 2 usage, configuration or transport error.
Secrets come from the environment only: %s.

Flags:
`, strings.Join(secretSettings(callSettings), ", "))
		fs.PrintDefaults()
	}
	v, err := parseScoped(callSettings, fs, args, getenv)
	if err != nil {
		return parseExit(err)
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "worker call: "+format+"\n", a...)
		return 2
	}
	id, err := strconv.Atoi(*conn)
	if err != nil || id <= 0 {
		return fail("--erp-connection %q: want a positive whole number", *conn)
	}
	at, err := erpsync.ParseActorType(*actor)
	if err != nil {
		return fail("--actor-type: %v", err)
	}
	keys := fs.Args()
	if len(keys) == 0 {
		return fail("no keys given (this command never sends an empty key list, which would resync everything)")
	}
	for i, k := range keys {
		if err := erpsync.ValidateKey(k); err != nil {
			return fail("key %d: %v", i+1, err)
		}
	}
	s, err := implicitTenant(v, false, tenant.BuildOptions{})
	if err != nil {
		return fail("%v", err)
	}
	resp, err := s.Resyncer.ForceResyncExternal(ctx, id, at, keys)
	if err != nil {
		return fail("%s", s.Spec.WithFix(err))
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(resp); err != nil {
		return fail("print response: %v", err)
	}
	if !resp.IsOk {
		reason := resp.ErrorCode
		if resp.UserExplanation != "" {
			reason += ": " + resp.UserExplanation
		}
		fmt.Fprintf(stderr, "worker call: SuperOffice answered IsOk=false (%s)\n", oneLine(reason))
		return 1
	}
	return 0
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
