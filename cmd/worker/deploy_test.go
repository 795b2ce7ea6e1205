package main

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/erpresync/erpresync/internal/nightly"
	"github.com/erpresync/erpresync/internal/readmetest"
	"github.com/erpresync/erpresync/internal/tenant"
	"github.com/erpresync/erpresync/tasks"
)

// composeService is the part of a docker-compose service the tests look at.
type composeService struct {
	Build       any               `yaml:"build"`
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Profiles    []string          `yaml:"profiles"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Restart     string            `yaml:"restart"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

func readCompose(t *testing.T) (raw []byte, services map[string]composeService) {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return raw, doc.Services
}

// fromEnv matches a compose value taken from the variable of the same name, as
// ${NAME}, ${NAME:-default}, ${NAME-default} or ${NAME:?message}.
func fromEnv(name, value string) bool {
	return regexp.MustCompile(`^\$\{` + name + `(:?[-?][^}]*)?\}$`).MatchString(value)
}

// TestComposeUsesOnlyWorkerSettings parses docker-compose.yml: every setting of the README's
// configuration table (generated from settings) can be passed to the worker from .env, and
// the dashboard gets those of its own; every variable set is one the worker reads; secrets
// are never written in the file; the worker scales (no host port), has a health check that
// works in the distroless image, and stops restarting after a configuration error; the
// images build; enqueue runs in the deployment with /exports; Redis persists with AOF.
func TestComposeUsesOnlyWorkerSettings(t *testing.T) {
	t.Parallel()
	_, svcs := readCompose(t)
	known := map[string]setting{}
	for _, s := range settings {
		known[s.Env] = s
	}
	// fixed are the settings compose sets itself for a service, and why.
	fixed := map[string]map[string]string{
		"dashboard": {"WORKER_HTTP_ADDR": "0.0.0.0:8080"}, // its port mapping and prometheus.yml use 8080
	}
	for _, tt := range []struct {
		service string
		in      scope
	}{
		{"worker", allSettings},
		{"dashboard", dashboardSettings},
	} {
		svc, ok := svcs[tt.service]
		if !ok {
			t.Fatalf("no %s service", tt.service)
		}
		for _, s := range settings {
			if !tt.in(s) {
				continue
			}
			v, set := svc.Environment[s.Env]
			switch want, isFixed := fixed[tt.service][s.Env]; {
			case isFixed && v != want:
				t.Errorf("%s: %s=%q, want %q", tt.service, s.Env, v, want)
			case !isFixed && !fromEnv(s.Env, v):
				t.Errorf("%s: %s cannot be passed from .env: want %s: ${%s:-}, got %q (set %v)", tt.service, s.Env, s.Env, s.Env, v, set)
			}
		}
		for k, v := range svc.Environment {
			s, ok := known[k]
			if !ok {
				t.Errorf("%s sets %s, which the worker does not read", tt.service, k)
			}
			if s.Secret && !regexp.MustCompile(`^\$\{[A-Z_]+(:?-)?\}$`).MatchString(v) {
				t.Errorf("%s: secret %s must come from the environment as ${%s:-}, not %q", tt.service, k, k, v)
			}
		}
		if svc.DependsOn["redis"].Condition != "service_healthy" {
			t.Errorf("%s does not wait for a healthy Redis", tt.service)
		}
		if svc.Healthcheck == nil || !slices.Equal(svc.Healthcheck.Test, []string{"CMD", "/usr/local/bin/worker", "healthcheck"}) {
			t.Errorf("%s: want the health check [CMD /usr/local/bin/worker healthcheck] (no shell in the image), got %+v", tt.service, svc.Healthcheck)
		}
		// Exit 2 (configuration) must not restart for ever: on-failure:N gives up.
		if !regexp.MustCompile(`^on-failure:[1-9][0-9]?$`).MatchString(svc.Restart) {
			t.Errorf("%s: restart %q: want on-failure:N, so that a configuration error does not restart for ever", tt.service, svc.Restart)
		}
	}
	worker := svcs["worker"]
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "`restart: "+worker.Restart+"`") {
		t.Errorf("the README does not say which restart policy the worker has (restart: %s)", worker.Restart)
	}
	if len(worker.Ports) > 0 {
		t.Errorf("worker publishes %v: a fixed host port breaks docker-compose up --scale worker=3", worker.Ports)
	}
	if len(svcs["dashboard"].Ports) == 0 || svcs["dashboard"].Command[0] != "dashboard" {
		t.Error("the dashboard service must run `worker dashboard` and publish its port")
	}
	for name, svc := range svcs {
		if svc.Image == "erpresync:latest" && svc.Build == nil {
			t.Errorf("%s uses erpresync:latest but does not build it (build: .)", name)
		}
	}
	enq, ok := svcs["enqueue"]
	if !ok || !slices.Contains(enq.Profiles, "tools") || !slices.Equal(enq.Entrypoint, []string{"/usr/local/bin/enqueue"}) {
		t.Errorf("want an enqueue service in the tools profile for docker-compose run --rm enqueue, got %+v", enq)
	}
	for k := range enq.Environment {
		if k != "ENQUEUE_QUEUE" && !strings.HasPrefix(k, "REDIS_") {
			t.Errorf("enqueue sets %s, which it does not read", k)
		}
	}
	for _, name := range []string{"worker", "enqueue"} {
		if !slices.ContainsFunc(svcs[name].Volumes, func(v string) bool { return strings.Contains(v, ":/exports") }) {
			t.Errorf("%s does not mount /exports", name)
		}
	}
	redisSvc := svcs["redis"]
	if !slices.Contains(redisSvc.Command, "--appendonly") || redisSvc.Healthcheck == nil {
		t.Errorf("redis: want AOF persistence and a health check, got %+v", redisSvc)
	}
	if !slices.Contains(svcs["simulator"].Profiles, "simulator") || !slices.Contains(svcs["prometheus"].Profiles, "prometheus") {
		t.Error("the simulator and Prometheus must be opt-in profiles")
	}
	if !slices.ContainsFunc(svcs["prometheus"].Volumes, func(v string) bool { return strings.HasPrefix(v, "./deploy/alerts.yml:") }) {
		t.Error("the prometheus profile does not load deploy/alerts.yml")
	}
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "USER nonroot") || strings.Count(string(dockerfile), "FROM ") < 2 {
		t.Error("Dockerfile: want a multi-stage build into a non-root image")
	}
	prom, err := os.ReadFile("../../deploy/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`names: ["worker"]`, "port: 8080", "dashboard:8080", "/etc/prometheus/alerts.yml"} {
		if !strings.Contains(string(prom), want) {
			t.Errorf("deploy/prometheus.yml lacks %q (every worker replica, the dashboard, the alert rules)", want)
		}
	}
	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if !regexp.MustCompile(`(?m)^#? ?` + s.Env + `=`).Match(example) {
			t.Errorf(".env.example does not show %s", s.Env)
		}
	}
}

// TestComposeConfig runs `docker-compose config` for the file alone and for each of its
// profiles, when docker-compose is installed (CI installs it).
func TestComposeConfig(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose is not installed; TestComposeUsesOnlyWorkerSettings still checks the file")
	}
	_, svcs := readCompose(t)
	profiles := map[string]bool{}
	for _, svc := range svcs {
		for _, p := range svc.Profiles {
			profiles[p] = true
		}
	}
	runs := [][]string{nil}
	for p := range profiles {
		runs = append(runs, []string{"--profile", p})
	}
	for _, args := range runs {
		cmd := exec.Command(bin, append(append([]string{"-f", "docker-compose.yml"}, args...), "config", "-q")...)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "SUPEROFFICE_URL=https://sod.superoffice.com/Cust12345")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker-compose %v config: %v\n%s", args, err, out)
		}
	}
	if !profiles["tools"] || !profiles["simulator"] || !profiles["prometheus"] {
		t.Errorf("profiles %v: want tools, simulator and prometheus", profiles)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for p := range profiles {
		if !strings.Contains(string(ci), "--profile "+p) {
			t.Errorf(".ci/run does not check the %s profile with docker-compose config", p)
		}
	}
}

// exportedMetrics are the names of the metrics the worker and the dashboard export.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	tasks.NewMetrics(reg)
	nightly.NewMetrics(reg)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: "127.0.0.1:1"})
	defer insp.Close()
	reg.MustRegister(newQueueCollector(insp), tenantStateCollector{tenants: func() []*tenant.Tenant { return nil }})
	// Describe names every metric, also label sets not yet observed.
	descs := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(descs)
		close(descs)
	}()
	names := map[string]bool{}
	for d := range descs {
		if m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// TestAlertRules: every erpresync_* metric the example alert rules use is exported (the
// breaker's, which rule guards for its absence, aside), and promtool checks and unit-tests
// the rules and the Prometheus configuration when it is installed (CI installs it).
func TestAlertRules(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../deploy/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("deploy/alerts.yml: %v", err)
	}
	// Metrics a rule may name before any erpresync component exports them: the rule must
	// then stay silent (an empty expression).
	notYet := map[string]bool{"erpresync_breaker_state": true}
	names := exportedMetrics(t)
	var alerts []string
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			for _, m := range regexp.MustCompile(`erpresync_[a-z_]+`).FindAllString(r.Expr, -1) {
				if !names[m] && !notYet[m] {
					t.Errorf("alert %s uses %s, which nothing exports", r.Alert, m)
				}
			}
		}
	}
	sort.Strings(alerts)
	for _, want := range []string{"ErpresyncDeadLettersRising", "ErpresyncAuthFailures", "ErpresyncBreakerHolds", "ErpresyncBreakerOpen", "ErpresyncQueueLatencyHigh"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("deploy/alerts.yml lacks %s (has %v)", want, alerts)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus): the rules were not checked with it; .ci/run installs it")
	}
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
	run("../../deploy", "check", "rules", "alerts.yml")
	run("../../deploy", "test", "rules", "alerts_test.yml")
	// prometheus.yml names the rules by their path in the container.
	dir := t.TempDir()
	conf, err := os.ReadFile("../../deploy/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	conf = bytes.ReplaceAll(conf, []byte("/etc/prometheus/alerts.yml"), []byte(filepath.Join(dir, "alerts.yml")))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	run(dir, "check", "config", "prometheus.yml")
}

// composeCommandLines returns the command lines that use the compose deployment: each
// README block, and the docker-compose.yml header's example commands as one more.
func composeCommandLines(t *testing.T) [][]string {
	t.Helper()
	blocks, err := readmetest.Blocks(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	var groups [][]string
	for _, b := range blocks {
		groups = append(groups, b.Lines())
	}
	raw, _ := readCompose(t)
	var header []string
	for _, l := range strings.Split(string(raw), "\n") {
		if c, ok := strings.CutPrefix(l, "#   "); ok {
			if c = readmetest.StripComment(c); c != "" {
				header = append(header, c)
			}
		}
	}
	return append(groups, header)
}

// TestComposeExportsExist: a `docker-compose run … enqueue --file /exports/NAME` of the
// README or the compose file reads a file that is in ./exports when it runs — shipped there
// (./exports ships empty) or copied there by an earlier `cp SRC exports/` of the same
// block, from a SRC that exists — and an `enqueue status RUN` asks for a run an earlier line
// named with --run.
func TestComposeExportsExist(t *testing.T) {
	t.Parallel()
	shipped := map[string]bool{}
	entries, err := os.ReadDir("../../exports")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		shipped[e.Name()] = true
	}
	reads := 0
	for _, lines := range composeCommandLines(t) {
		present := maps.Clone(shipped)
		runs := map[string]bool{}
		for _, line := range lines {
			if m := regexp.MustCompile(`^cp (\S+) exports/(\S*)$`).FindStringSubmatch(line); m != nil {
				if _, err := os.Stat(filepath.Join("../..", m[1])); err != nil {
					t.Errorf("%s: %v", line, err)
				}
				name := m[2]
				if name == "" {
					name = filepath.Base(m[1])
				}
				present[name] = true
				continue
			}
			if !strings.HasPrefix(line, "docker-compose run ") || !strings.Contains(line, " enqueue ") {
				continue
			}
			for _, m := range regexp.MustCompile(`--file /exports/(\S+)`).FindAllStringSubmatch(line, -1) {
				reads++
				if !present[m[1]] {
					t.Errorf("%s\nreads /exports/%s, but ./exports ships empty and no earlier line copies it there", line, m[1])
				}
			}
			for _, m := range regexp.MustCompile(`--run (\S+)`).FindAllStringSubmatch(line, -1) {
				runs[m[1]] = true
			}
			if m := regexp.MustCompile(` enqueue status (\S+)`).FindStringSubmatch(line); m != nil && !runs[m[1]] {
				t.Errorf("%s\nasks for run %s, which no earlier command submits", line, m[1])
			}
		}
	}
	if reads < 2 {
		t.Errorf("found %d `docker-compose run … enqueue --file /exports/…` commands, want the README's and the compose file's", reads)
	}
}
