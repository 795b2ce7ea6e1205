package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/tenant"
)

// setting is one configuration value: an environment variable, the flag that mirrors it,
// its default and what it means. The README's configuration table is checked against this
// list by a test, and so are the variables docker-compose.yml sets.
type setting struct {
	Env, Flag, Default, Meaning string
	Secret                      bool // never printed, never a flag (flags show up in ps)
	// Flow marks flow control's settings: they bound all workers together, so `worker call`
	// (one call, no flow control) takes none of them.
	Flow bool
	// Spec is the field of the implicit tenant the setting feeds (0: none): the tenant's
	// errors name that field by the setting (implicitNames).
	Spec tenant.Field
}

var settings = []setting{
	{Env: "REDIS_URL", Flag: "redis-url", Default: "redis://127.0.0.1:6379/0", Meaning: "Redis: `redis://[[user]:password@]host:port/db`, `rediss://` for TLS, `redis-sentinel://[:password@]h1:port,h2:port/db?master=NAME` for Sentinel (the password is used for the sentinels and the master)"},
	{Env: "REDIS_CLUSTER_ADDRS", Flag: "redis-cluster-addrs", Default: "", Meaning: "Redis Cluster node list `host:port,host:port`; when set, REDIS_URL only supplies password and TLS"},
	{Env: "TENANTS_CONFIG", Flag: "tenants-config", Default: "", Meaning: "file (YAML or JSON) of the SuperOffice tenants this fleet serves, re-read on SIGHUP and whenever it changes (see [The tenants file](#the-tenants-file)); with it the SUPEROFFICE_* settings are optional: when SUPEROFFICE_URL or SUPEROFFICE_ENVIRONMENT is set they describe one more tenant, the implicit one, whose runs have no tenant name"},
	{Env: "SUPEROFFICE_URL", Flag: "superoffice-url", Default: "", Meaning: "tenant base URL, e.g. `https://sod.superoffice.com/Cust12345`; `/Remote/Services88/ErpSync.svc` (SOAP) or `/api/v1/Agents/ErpSync/ForceResyncExternal` (REST) is appended; password logins go to `/Remote/Services88/SoPrincipal.svc` with either", Spec: tenant.FieldURL},
	{Env: "SUPEROFFICE_ENVIRONMENT", Flag: "superoffice-environment", Default: "", Meaning: "SuperOffice Online environment: `online`, `sod`, `stage` (`https://{name}.superoffice.com`) or a base URL; with SUPEROFFICE_CONTEXT_ID the worker asks its state API where the tenant lives, follows moves, holds batches while the tenant is not running, and takes state-change notifications at `/superoffice/state-change`; SUPEROFFICE_URL is then optional (the system-user login defaults to the environment's)", Spec: tenant.FieldEnvironment},
	{Env: "SUPEROFFICE_API", Flag: "superoffice-api", Default: "soap", Meaning: "transport: `soap` (NetServer's ErpSync.svc, SOAP 1.1) or `rest` (the WebAPI's ErpSync agent, JSON; SuperOffice is phasing SOAP out); the same logins serve both", Spec: tenant.FieldAPI},
	{Env: "SUPEROFFICE_APP_TOKEN", Default: "", Meaning: "application token (the app's client secret); required by Online, ignored on-site", Secret: true, Spec: tenant.FieldAppToken},
	{Env: "SUPEROFFICE_TICKET", Default: "", Meaning: "a fixed ticket (auth mode 1)", Secret: true, Spec: tenant.FieldTicket},
	{Env: "SUPEROFFICE_USERNAME", Flag: "superoffice-username", Default: "", Meaning: "on-site user for `SoPrincipal.AuthenticateUsernamePassword` (auth mode 2)", Spec: tenant.FieldUsername},
	{Env: "SUPEROFFICE_PASSWORD", Default: "", Meaning: "that user's password", Secret: true, Spec: tenant.FieldPassword},
	{Env: "SUPEROFFICE_SYSTEM_TOKEN", Default: "", Meaning: "Online system-user token (auth mode 3)", Secret: true, Spec: tenant.FieldSystemToken},
	{Env: "SUPEROFFICE_PRIVATE_KEY_FILE", Flag: "superoffice-private-key-file", Default: "", Meaning: "PEM file with the app's RSA private key that signs the system-user token", Spec: tenant.FieldPrivateKey},
	{Env: "SUPEROFFICE_CONTEXT_ID", Flag: "superoffice-context-id", Default: "", Meaning: "Online tenant id, e.g. `Cust12345` (the system-user login's, and the tenant SUPEROFFICE_ENVIRONMENT follows)", Spec: tenant.FieldContextID},
	{Env: "SUPEROFFICE_LOGIN_URL", Flag: "superoffice-login-url", Default: "", Meaning: "PartnerSystemUser endpoint, e.g. `https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate`", Spec: tenant.FieldLoginURL},
	{Env: "SUPEROFFICE_SOAP12", Flag: "superoffice-soap12", Default: "false", Meaning: "send SOAP 1.2 envelopes (only for installations that expose such a binding; SOAP only)", Spec: tenant.FieldSOAP12},
	{Env: "SUPEROFFICE_TIMEOUT", Flag: "superoffice-timeout", Default: "60s", Meaning: "timeout of one SuperOffice call (SOAP or REST)", Spec: tenant.FieldTimeout},
	{Env: "SUPEROFFICE_RATE_LIMIT", Flag: "rate-limit", Default: "0", Meaning: "requests per second to the tenant from all workers on this Redis together (every HTTP request: calls, logins, repeats); decimals allowed, e.g. `2.5`; `0` = no limit", Flow: true, Spec: tenant.FieldRateLimit},
	{Env: "SUPEROFFICE_RATE_BURST", Flag: "rate-burst", Default: "1", Meaning: "requests that may go out at once after a quiet spell, on top of the rate", Flow: true, Spec: tenant.FieldRateBurst},
	{Env: "SUPEROFFICE_RATE_ADAPTIVE", Flag: "rate-adaptive", Default: "false", Meaning: "on throttling (429, or 503 with Retry-After) halve the rate for all workers, then grow it back by a sixtieth of SUPEROFFICE_RATE_LIMIT per second", Flow: true, Spec: tenant.FieldRateAdaptive},
	{Env: "SUPEROFFICE_MAX_CONCURRENCY", Flag: "max-concurrency", Default: "0", Meaning: "requests in flight per ERP connection from all workers together (a login counts under the connection of the call that needed it); `0` = no cap beyond each worker's WORKER_CONCURRENCY", Flow: true, Spec: tenant.FieldMaxConcurrency},
	{Env: "SUPEROFFICE_SLOT_LEASE", Flag: "slot-lease", Default: "30s", Meaning: "lease of a concurrency slot, renewed while its request runs: a killed worker's slots come back after at most this long", Flow: true, Spec: tenant.FieldSlotLease},
	{Env: "SUPEROFFICE_BREAKER_FAILURES", Flag: "breaker-failures", Default: "5", Meaning: "systemic failures in a row (transport errors, 5xx, maintenance pages), seen by any worker, that open the tenant's circuit breaker", Flow: true, Spec: tenant.FieldBreakerFailures},
	{Env: "SUPEROFFICE_BREAKER_PROBE", Flag: "breaker-probe", Default: "5s", Meaning: "first wait of an open circuit breaker before one probe call; doubles after every failed probe", Flow: true, Spec: tenant.FieldBreakerProbe},
	{Env: "SUPEROFFICE_BREAKER_PROBE_MAX", Flag: "breaker-probe-max", Default: "5m", Meaning: "longest wait between probes of an open circuit breaker", Flow: true, Spec: tenant.FieldBreakerProbeMax},
	{Env: "WORKER_HTTP_ADDR", Flag: "http-addr", Default: "127.0.0.1:8080", Meaning: "listener for `/metrics`, `/healthz`, `/readyz`, the dashboard at `/monitoring/`, the runs page at `/runs/` and the intake API at `/v1/`; `off` disables it"},
	{Env: "WORKER_HTTP_IDLE_TIMEOUT", Flag: "http-idle-timeout", Default: "2m", Meaning: "how long the listener keeps an idle keep-alive connection open (request headers must arrive within 10s)"},
	{Env: "WORKER_CONCURRENCY", Flag: "concurrency", Default: "10", Meaning: "batches processed at once (concurrent SuperOffice calls)"},
	{Env: "WORKER_QUEUES", Flag: "queues", Default: "erpresync", Meaning: "asynq queues to serve, `name[:priority],...`"},
	{Env: "WORKER_TRICKLE_QUEUE", Flag: "trickle-queue", Default: "erpresync-trickle", Meaning: "queue of trickle keys, served strictly before WORKER_QUEUES (asynq StrictPriority), so a trickled key never waits behind a bulk backlog; `off` serves no trickle queue"},
	{Env: "WORKER_SHUTDOWN_TIMEOUT", Flag: "shutdown-timeout", Default: "30s", Meaning: "on SIGTERM, how long in-flight calls may finish before their tasks go back to Redis"},
	{Env: "WORKER_BUSINESS_RETRIES", Flag: "business-retries", Default: "3", Meaning: "retries of a single-key batch that SuperOffice answers `IsOk=false` before it is dead-lettered"},
	{Env: "WORKER_BUSINESS_RETRY_DELAY", Flag: "business-retry-delay", Default: "1m", Meaning: "first delay between those retries (doubles each time)"},
	{Env: "WORKER_RESULT_RETENTION", Flag: "result-retention", Default: "168h", Meaning: "how long a completed task and its result stay visible in the dashboard"},
	{Env: "LEDGER_RETENTION", Flag: "ledger-retention", Default: fmt.Sprintf("%dd", ledger.DefaultLedgerRetention/(24*time.Hour)), Meaning: "how long a finished run stays in the run ledger (counts, change items, dead letters) before the worker removes it; `30d`, `72h`, or `0` to keep runs for ever"},
	{Env: "WORKER_BATCH_SIZE", Flag: "batch-size", Default: "100", Meaning: "largest batch the trickle aggregator builds"},
	{Env: "WORKER_TRICKLE_MAX_DELAY", Flag: "trickle-max-delay", Default: "5s", Meaning: "longest a trickled key waits for its batch to fill"},
	{Env: "WORKER_TRICKLE_GRACE", Flag: "trickle-grace", Default: "1s", Meaning: "a trickle batch is sent once no key arrived for this long"},
	{Env: "NIGHTLY_CONFIG", Flag: "nightly-config", Default: "", Meaning: "file with the nightly bulk-resync schedule; empty disables it"},
	{Env: "DASHBOARD_USER", Flag: "dashboard-user", Default: "", Meaning: "HTTP basic-auth user for the dashboard and the runs page; with DASHBOARD_PASSWORD"},
	{Env: "DASHBOARD_PASSWORD", Default: "", Meaning: fmt.Sprintf("HTTP basic-auth password for the dashboard and the runs page, at least %d characters; without it they have no login", minDashboardPassword), Secret: true},
	{Env: "DASHBOARD_READONLY", Flag: "dashboard-readonly", Default: "true", Meaning: "dashboard in view-only mode; `false` allows retry/delete/archive from the UI"},
	{Env: "DASHBOARD_TRUSTED_ORIGINS", Flag: "dashboard-trusted-origins", Default: "", Meaning: "comma-separated origins, e.g. `https://ops.example.com`, whose pages may change things on the dashboard although a reverse proxy gives it another host name; others' are refused with 403"},
	{Env: "INTAKE_TOKENS", Default: "", Meaning: "comma-separated bearer tokens of the HTTP intake API at `/v1/` (each at least 16 characters); unset: no intake API", Secret: true},
	{Env: "INTAKE_MAX_BODY", Flag: "intake-max-body", Default: "256MiB", Meaning: "largest body of `PUT /v1/runs/{run}/keys` (bytes, or with KiB, MiB, GiB); a bigger one is refused with 413"},
	{Env: "INTAKE_BODY_TIMEOUT", Flag: "intake-body-timeout", Default: "30s", Meaning: "longest pause within a request body of the intake API: a client that sends no byte for this long (a hung export job, a stuck proxy) is answered 408 and nothing is enqueued; a long but steady body is not cut. Any other request must arrive whole within 10s + this, so a client stalling in a body nothing reads costs only its own connection"},
	{Env: "INTAKE_SLOT_WAIT", Flag: "intake-slot-wait", Default: "30s", Meaning: "how long a received `PUT` body waits for one of the 4 submission slots before it is answered 503 with Retry-After (bodies are received before they wait, so slow clients hold no slot)"},
	{Env: "INTAKE_QUEUE", Flag: "intake-queue", Default: "erpresync", Meaning: "asynq queue the intake API enqueues into (as `enqueue --queue`)"},
	{Env: "LOG_FORMAT", Flag: "log-format", Default: "auto", Meaning: "`json`, `console`, or `auto` (console on a terminal, JSON otherwise)"},
	{Env: "LOG_LEVEL", Flag: "log-level", Default: "info", Meaning: "`debug`, `info`, `warn` or `error`"},
}

// values holds resolved settings: flag > environment > default.
type values map[string]string

// settingFlag is a setting's flag. Its default is the setting's own default, never the
// environment's value: --help and flag errors print the default, and an environment value
// (REDIS_URL with a password) must not show up there. A setting whose default is true or
// false is a boolean flag, so --superoffice-soap12 alone means true.
type settingFlag struct {
	value  string
	isBool bool
}

func (f *settingFlag) String() string {
	if f == nil {
		return ""
	}
	return f.value
}

func (f *settingFlag) Set(s string) error { f.value = s; return nil }

func (f *settingFlag) IsBoolFlag() bool { return f != nil && f.isBool }

// A scope is the settings a sub-command takes as flags, so that its -h lists only what
// applies to it. Settings outside the scope still have their values (environment, else
// default), they are only no flags of that command.
type scope func(setting) bool

var (
	// allSettings: the worker itself and the demo.
	allSettings scope = func(setting) bool { return true }
	// callSettings: one SuperOffice call (worker call) needs the tenant and credentials, not
	// flow control.
	callSettings scope = func(s setting) bool { return strings.HasPrefix(s.Env, "SUPEROFFICE_") && !s.Flow }
	// dashboardSettings: Redis, the listener, the dashboard's login and the log.
	dashboardSettings scope = func(s setting) bool {
		return strings.HasPrefix(s.Env, "REDIS_") || strings.HasPrefix(s.Env, "DASHBOARD_") || strings.HasPrefix(s.Env, "LOG_") || strings.HasPrefix(s.Env, "WORKER_HTTP_")
	}
	// healthcheckSettings: the listener to ask.
	healthcheckSettings scope = func(s setting) bool { return s.Env == "WORKER_HTTP_ADDR" }
)

// secretSettings lists the environment variables of the secrets in scope.
func secretSettings(in scope) []string {
	var out []string
	for _, s := range settings {
		if s.Secret && in(s) {
			out = append(out, s.Env)
		}
	}
	return out
}

// parseSettings is parseScoped with every setting a flag.
func parseSettings(fs *flag.FlagSet, args []string, getenv func(string) string) (values, error) {
	return parseScoped(allSettings, fs, args, getenv)
}

// parseScoped registers every setting in scope that has a flag on fs, plus extra flags the
// caller registered already, parses args and returns the values of all settings by env
// name: a flag given on the command line wins, then a non-empty environment variable, then
// the default. A flag.ErrHelp error means --help was asked for (see parseExit).
func parseScoped(in scope, fs *flag.FlagSet, args []string, getenv func(string) string) (values, error) {
	flags := map[string]*settingFlag{}
	for _, s := range settings {
		if s.Flag == "" || !in(s) {
			continue
		}
		f := &settingFlag{value: s.Default, isBool: s.Default == "true" || s.Default == "false"}
		fs.Var(f, s.Flag, strings.ReplaceAll(s.Meaning, "`", "")+" (env "+s.Env+")") // backticks would name the argument in -h
		flags[s.Flag] = f
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	out := values{}
	for _, s := range settings {
		v := s.Default
		switch {
		case flags[s.Flag] != nil && given[s.Flag]:
			v = flags[s.Flag].value
		case getenv(s.Env) != "":
			v = getenv(s.Env)
		}
		out[s.Env] = strings.TrimSpace(v)
	}
	return out, nil
}

// parseExit is the exit status for a parseSettings error: 0 for --help, else 2 (the flag
// package has printed the problem and the usage).
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// noArgs reports arguments left after the flags of a command that takes none, e.g. the
// "false" of "--dashboard-readonly false" (write --dashboard-readonly=false).
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() == 0 {
		return nil
	}
	return fmt.Errorf("unexpected argument %q (a flag's value goes after =, as in --dashboard-readonly=false)", fs.Arg(0))
}

func (v values) str(env string) string { return v[env] }

func (v values) int(env string, min int) (int, error) {
	n, err := strconv.Atoi(v[env])
	if err != nil || n < min {
		return 0, fmt.Errorf("%s=%q: want a whole number >= %d", env, v[env], min)
	}
	return n, nil
}

func (v values) bool(env string) (bool, error) {
	b, err := strconv.ParseBool(v[env])
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", env, v[env])
	}
	return b, nil
}

// size parses a byte count: a whole number, optionally with KiB, MiB or GiB.
func (v values) size(env string, min int64) (int64, error) {
	s := v[env]
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult || n*mult < min {
		return 0, fmt.Errorf("%s=%q: want a size such as 268435456, 512KiB, 256MiB or 1GiB, at least %d bytes", env, s, min)
	}
	return n * mult, nil
}

// duration parses a Go duration; asynq keeps whole seconds, so wholeSeconds rejects
// anything finer, which asynq would silently round down.
func (v values) duration(env string, min time.Duration, wholeSeconds bool) (time.Duration, error) {
	d, err := time.ParseDuration(v[env])
	if err != nil || d < min {
		return 0, fmt.Errorf("%s=%q: want a duration such as 30s or 5m, at least %s", env, v[env], min)
	}
	if wholeSeconds && d%time.Second != 0 {
		return 0, fmt.Errorf("%s=%q: asynq keeps whole seconds; use e.g. %s", env, v[env], d.Round(time.Second))
	}
	return d, nil
}

// printSettings writes the configuration table (for --help and the README).
func printSettings(w io.Writer) {
	fmt.Fprintln(w, "\nConfiguration (flags win over environment):")
	for _, s := range settings {
		flagName := "-"
		if s.Flag != "" {
			flagName = "--" + s.Flag
		}
		def := s.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  %-30s %-30s default %s\n      %s\n", s.Env, flagName, def, strings.ReplaceAll(s.Meaning, "`", ""))
	}
}
