// Command netserver-sim runs the SuperOffice NetServer simulator (package netserversim) as a
// standalone HTTP server, for process-level tests and demos.
//
// It prints the tenant base URL (e.g. http://127.0.0.1:8081/Cust12345) as the first line on
// stdout once it listens, details on stderr, and serves until SIGINT or SIGTERM. Every flag
// has an environment mirror, NETSERVER_SIM_<FLAG> with dashes as underscores (-app-token ↔
// NETSERVER_SIM_APP_TOKEN); a flag given on the command line wins.
//
// Exit codes: 0 after a clean shutdown; 2 for usage, configuration or listen errors.
package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/erpresync/erpresync/internal/buildinfo"
	"github.com/erpresync/erpresync/internal/netserversim"
)

const envPrefix = "NETSERVER_SIM_"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "netserver-sim:", err)
		os.Exit(2)
	}
}

// options are the parsed flags.
type options struct {
	cfg        netserversim.Config
	users      string
	sysKeyPath string
	jwtKeyPath string
	faults     netserversim.FaultRequest
	poison     string
	latency    string
	slowChunk  int
	faultRate  float64
	faultKinds string
	grace      time.Duration
}

// The trial login the simulator accepts when -users is not given, so that a first run
// works without reading the flags. It guards nothing: the simulator holds no data.
const (
	defaultUser     = "ERPSYNC"
	defaultPassword = "erpsync"
	DefaultUsers    = defaultUser + ":" + defaultPassword
)

// parse reads flags, then fills flags not given from the environment.
func parse(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("netserver-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &o.cfg
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8081", "listen address (port 0 picks a free port)")
	fs.StringVar(&c.Tenant, "tenant", netserversim.DefaultTenant, `tenant path before /Remote/Services88/; "/" serves at the site root`)
	fs.StringVar(&o.users, "users", DefaultUsers, "SoPrincipal users as name:password[,name:password...]; the default is a trial login, set your own for anything shared")
	fs.BoolVar(&c.Online, "online", false, "Online mode: require ApplicationToken = -app-token on every SOAP call")
	fs.StringVar(&c.AppToken, "app-token", "", "application token (client secret); required with -online")
	fs.DurationVar(&c.TicketTTL, "ticket-ttl", netserversim.DefaultTicketTTL, "ticket lifetime")
	fs.BoolVar(&c.SlidingTickets, "sliding-tickets", false, "extend a ticket by -ticket-ttl on each use")
	fs.BoolVar(&c.OmitStatus, "omit-status", false, "leave PluginResponse.Status out (servers before 10.1.9)")
	fs.StringVar(&c.ExceptionType, "exception-type", netserversim.DefaultExceptionType, "ExceptionType for bad tickets (our assumption)")
	fs.StringVar(&c.ExceptionMessage, "exception-message", netserversim.DefaultExceptionMessage, "ExceptionInfo Message for bad tickets (our assumption)")
	fs.StringVar(&c.ErrorCode, "error-code", netserversim.DefaultErrorCode, "ErrorCode of batches holding a poison key")
	fs.BoolVar(&c.ErpSyncNotGranted, "not-granted", false, "answer every resync as an app not granted the ErpSync agent")
	fs.StringVar(&o.sysKeyPath, "system-user-key", "", "PEM file with the partner app's RSA public key (system-user login)")
	fs.StringVar(&c.SystemUserToken, "system-user-token", "", "the only system user token accepted (default: any)")
	fs.StringVar(&o.jwtKeyPath, "jwt-key", "", "PEM file with the RSA private key that signs login JWTs (default: generated)")
	fs.IntVar(&c.Hosts, "hosts", 0, "tenant hosts to serve besides the environment's (0: the tenant lives on -addr); the tenant starts on the first, POST /_sim/state moves it")
	fs.DurationVar(&c.StateValidFor, "state-valid-for", netserversim.DefaultStateValidFor, "how far ahead the state API puts ValidUntil (our assumption)")
	fs.BoolVar(&c.Admin, "admin", true, "serve the JSON admin API under /_sim/")
	fs.StringVar(&o.poison, "poison", "", "comma-separated poison keys")
	fs.StringVar(&o.latency, "latency", "0s", "latency added to every ErpSync reply")
	fs.IntVar(&o.slowChunk, "slow-chunk", 0, "write ErpSync replies in chunks of this many bytes (0 = off)")
	fs.StringVar(&o.faults.SlowDelay, "slow-delay", "0s", "delay between slow chunks")
	fs.Float64Var(&o.faultRate, "fault-rate", 0, "probability in [0,1] that an ErpSync call fails at random")
	fs.Uint64Var(&o.faults.FaultSeed, "fault-seed", 1, "seed of the random fault generator")
	fs.StringVar(&o.faultKinds, "fault-kinds", "unavailable,throttle,drop", "random fault kinds, comma-separated")
	fs.StringVar(&o.faults.RetryAfter, "retry-after", "1s", "Retry-After of throttled (429) replies (our assumption)")
	fs.DurationVar(&o.grace, "shutdown-grace", 5*time.Second, "how long shutdown waits for requests in flight")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: netserver-sim [flags]

Runs the SuperOffice NetServer simulator: ErpSync.ForceResyncExternal and SoPrincipal over
SOAP 1.1, the Online system-user login, and (with -admin) a JSON admin API:
  GET /_sim/counts   POST /_sim/faults   GET /_sim/faults   POST /_sim/reset
  POST /_sim/tickets   POST /_sim/expire-tickets
  POST /_sim/state   {"state":"OfflineMaintenance","host":1,"notify":URL,"change":5}
Prints the tenant base URL on stdout. Every flag has an environment mirror
%s<FLAG> (dashes become underscores); flags win.
Exit codes: 0 clean shutdown, 2 usage/configuration/listen error.
"netserver-sim --version" prints the module version and VCS revision of this build.

Flags:
`, envPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookupEnv(env); ok && !given[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, o.finish()
}

// finish turns the string-valued flags into configuration.
func (o *options) finish() error {
	var errs []error
	if o.users != "" {
		o.cfg.Users = map[string]string{}
		for i, pair := range strings.Split(o.users, ",") {
			name, pw, ok := strings.Cut(strings.TrimSpace(pair), ":")
			if !ok || name == "" {
				// Not quoted: a malformed entry may be a password with the wrong separator.
				errs = append(errs, fmt.Errorf("-users: entry %d is not name:password", i+1))
				continue
			}
			o.cfg.Users[name] = pw
		}
	}
	if o.sysKeyPath != "" {
		k, err := readPublicKey(o.sysKeyPath)
		if err != nil {
			errs = append(errs, fmt.Errorf("-system-user-key: %w", err))
		}
		o.cfg.SystemUserPublicKey = k
	}
	if o.jwtKeyPath != "" {
		k, err := readPrivateKey(o.jwtKeyPath)
		if err != nil {
			errs = append(errs, fmt.Errorf("-jwt-key: %w", err))
		}
		o.cfg.JWTKey = k
	}
	o.faults.Latency = &o.latency
	if o.slowChunk > 0 {
		o.faults.SlowChunk = &o.slowChunk
	}
	zero := 0
	o.faults.Throttle = &zero // sets Retry-After for random throttles
	if p := splitList(o.poison); len(p) > 0 {
		o.faults.Poison = &p
	}
	if o.faultRate != 0 {
		o.faults.FaultRate = &o.faultRate
		for _, k := range splitList(o.faultKinds) {
			o.faults.FaultKinds = append(o.faults.FaultKinds, netserversim.FaultKind(k))
		}
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func readPEM(path string) (*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return blk, nil
}

// readPublicKey accepts "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS#1) or a "CERTIFICATE".
func readPublicKey(path string) (*rsa.PublicKey, error) {
	blk, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var pub any
	switch blk.Type {
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(blk.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA public key", path)
	}
	return k, nil
}

// readPrivateKey accepts "RSA PRIVATE KEY" (PKCS#1) or "PRIVATE KEY" (PKCS#8).
func readPrivateKey(path string) (*rsa.PrivateKey, error) {
	blk, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if blk.Type == "RSA PRIVATE KEY" {
		return x509.ParsePKCS1PrivateKey(blk.Bytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA private key", path)
	}
	return rk, nil
}

// run starts the simulator, prints its URL and serves until ctx is done.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) > 0 && buildinfo.IsFlag(args[0]) {
		fmt.Fprintln(stdout, buildinfo.Version("netserver-sim"))
		return nil
	}
	o, err := parse(args, lookupEnv, stderr)
	if err != nil {
		return err
	}
	sim, err := netserversim.Start(o.cfg)
	if err != nil {
		return err
	}
	if err := sim.ApplyFaults(o.faults); err != nil {
		sim.Close()
		return fmt.Errorf("fault flags: %w", err)
	}
	fmt.Fprintln(stdout, sim.URL)
	fmt.Fprintf(stderr, "netserver-sim: ErpSync %s\nnetserver-sim: ErpSync REST %s\nnetserver-sim: SoPrincipal %s\nnetserver-sim: system-user login %s\n",
		sim.ErpSyncURL(), sim.RESTURL(), sim.SoPrincipalURL(), sim.LoginURL())
	if o.cfg.Admin {
		fmt.Fprintf(stderr, "netserver-sim: admin %s/_sim/counts\n", sim.RootURL)
	}
	names := make([]string, 0, len(o.cfg.Users))
	for name := range o.cfg.Users {
		names = append(names, name)
	}
	sort.Strings(names)
	switch {
	case o.users == DefaultUsers:
		fmt.Fprintf(stderr, "netserver-sim: log in with SUPEROFFICE_URL=%s SUPEROFFICE_USERNAME=%s SUPEROFFICE_PASSWORD=%s (the default -users)\n",
			sim.URL, defaultUser, defaultPassword)
	case len(names) > 0:
		fmt.Fprintf(stderr, "netserver-sim: users %s (passwords as given in -users)\n", strings.Join(names, ", "))
	default:
		fmt.Fprintln(stderr, "netserver-sim: no users: password logins are refused; mint a ticket with POST /_sim/tickets")
	}

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := sim.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
