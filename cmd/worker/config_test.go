package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/ledger"
	"github.com/erpresync/erpresync/internal/tenant"
	"github.com/erpresync/erpresync/tasks"
)

// TestSettingsPrecedence: a flag wins over the environment, which wins over the default; a
// boolean setting's flag works alone.
func TestSettingsPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want map[string]string
	}{
		{name: "defaults", want: map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "WORKER_CONCURRENCY": "10", "DASHBOARD_READONLY": "true", "SUPEROFFICE_SOAP12": "false"}},
		{name: "env", env: map[string]string{"WORKER_CONCURRENCY": "4", "SUPEROFFICE_PASSWORD": "pw"}, want: map[string]string{"WORKER_CONCURRENCY": "4", "SUPEROFFICE_PASSWORD": "pw"}},
		{name: "flag wins", args: []string{"--concurrency", "7", "--redis-url=redis://r:1/2"}, env: map[string]string{"WORKER_CONCURRENCY": "4", "REDIS_URL": "redis://e:1/0"}, want: map[string]string{"WORKER_CONCURRENCY": "7", "REDIS_URL": "redis://r:1/2"}},
		{name: "empty flag wins", args: []string{"--nightly-config="}, env: map[string]string{"NIGHTLY_CONFIG": "/etc/nightly.json"}, want: map[string]string{"NIGHTLY_CONFIG": ""}},
		{name: "bool flag alone", args: []string{"--superoffice-soap12"}, want: map[string]string{"SUPEROFFICE_SOAP12": "true"}},
		{name: "bool flag false", args: []string{"--dashboard-readonly=false"}, env: map[string]string{"DASHBOARD_READONLY": "true"}, want: map[string]string{"DASHBOARD_READONLY": "false"}},
		{name: "trimmed", env: map[string]string{"WORKER_QUEUES": " a:2 "}, want: map[string]string{"WORKER_QUEUES": "a:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := parseTestSettings(t, tt.args, tt.env)
			for k, want := range tt.want {
				if v[k] != want {
					t.Errorf("%s = %q, want %q", k, v[k], want)
				}
			}
		})
	}
}

// TestHelpShowsNoEnvironmentValues: --help (exit 0) and a flag error (exit 2) print the
// settings' defaults, never what the environment holds, such as a password in REDIS_URL.
func TestHelpShowsNoEnvironmentValues(t *testing.T) {
	t.Parallel()
	env := envFunc(map[string]string{"REDIS_URL": "redis://:hunter2@redis:6379/0", "SUPEROFFICE_USERNAME": "someone-secretive"})
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"-h"}, 0},
		{[]string{"call", "--help"}, 0},
		{[]string{"demo", "-h"}, 0},
		{[]string{"dashboard", "-help"}, 0},
		{[]string{"call", "--no-such-flag"}, 2},
		{[]string{"--no-such-flag"}, 2},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr, env)
		out := stdout.String() + stderr.String()
		if code != tt.want {
			t.Errorf("%v: exit %d, want %d", tt.args, code, tt.want)
		}
		if strings.Contains(out, "hunter2") || strings.Contains(out, "someone-secretive") {
			t.Errorf("%v prints an environment value:\n%s", tt.args, out)
		}
		if !strings.Contains(out, "Usage") {
			t.Errorf("%v prints no usage:\n%s", tt.args, out)
		}
	}
}

// TestWorkerSettings: the defaults give a read-only dashboard and the documented values,
// and every bad value is refused with a message naming its setting.
func TestWorkerSettings(t *testing.T) {
	t.Parallel()
	parse := func(env map[string]string) (appConfig, error) { return workerSettings(parseTestSettings(t, nil, env)) }
	c, err := parse(nil)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if !c.DashboardRO || c.Concurrency != 10 || c.ShutdownTimeout != 30*time.Second || c.BatchSize != 100 || c.Queues["erpresync"] != 1 || c.HTTPAddr != "127.0.0.1:8080" ||
		c.LedgerRetention != ledger.DefaultLedgerRetention {
		t.Errorf("defaults: %+v", c)
	}
	// The password's minimum counts characters, not bytes.
	if _, err := parse(map[string]string{"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "påskeæggeløb"}); err != nil {
		t.Errorf("a 12-character password: %v", err)
	}
	for in, want := range map[string]time.Duration{"0": 0, "3d": 72 * time.Hour, "36h": 36 * time.Hour} {
		if c, err := parse(map[string]string{"LEDGER_RETENTION": in}); err != nil || c.LedgerRetention != want {
			t.Errorf("LEDGER_RETENTION=%s: %v, %v; want %v", in, c.LedgerRetention, err, want)
		}
	}

	for _, tt := range []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"REDIS_URL": "http://:hunter2@x/0"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://:hunter2@x/abc"}, "REDIS_URL"},
		{map[string]string{"REDIS_CLUSTER_ADDRS": "n1"}, "REDIS_CLUSTER_ADDRS"},
		{map[string]string{"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY"},
		{map[string]string{"WORKER_CONCURRENCY": "ten"}, "WORKER_CONCURRENCY"},
		{map[string]string{"WORKER_QUEUES": ":5"}, "WORKER_QUEUES"},
		{map[string]string{"WORKER_QUEUES": "a,a:3"}, "WORKER_QUEUES"},
		{map[string]string{"WORKER_QUEUES": "a:0"}, "WORKER_QUEUES"},
		{map[string]string{"WORKER_QUEUES": ","}, "WORKER_QUEUES"},
		{map[string]string{"WORKER_SHUTDOWN_TIMEOUT": "1500ms"}, "WORKER_SHUTDOWN_TIMEOUT"},
		{map[string]string{"WORKER_SHUTDOWN_TIMEOUT": "soon"}, "WORKER_SHUTDOWN_TIMEOUT"},
		{map[string]string{"WORKER_BUSINESS_RETRIES": "-1"}, "WORKER_BUSINESS_RETRIES"},
		{map[string]string{"WORKER_BUSINESS_RETRY_DELAY": "0s"}, "WORKER_BUSINESS_RETRY_DELAY"},
		{map[string]string{"WORKER_RESULT_RETENTION": "300ms"}, "WORKER_RESULT_RETENTION"},
		{map[string]string{"WORKER_BATCH_SIZE": "1001"}, "WORKER_BATCH_SIZE"},
		{map[string]string{"LEDGER_RETENTION": "30 days"}, "LEDGER_RETENTION"},
		{map[string]string{"LEDGER_RETENTION": "-1h"}, "LEDGER_RETENTION"},
		{map[string]string{"WORKER_TRICKLE_MAX_DELAY": "1.5s"}, "WORKER_TRICKLE_MAX_DELAY"},
		{map[string]string{"WORKER_TRICKLE_GRACE": "0"}, "WORKER_TRICKLE_GRACE"},
		{map[string]string{"DASHBOARD_READONLY": "maybe"}, "DASHBOARD_READONLY"},
		{map[string]string{"DASHBOARD_USER": "ops"}, "DASHBOARD_PASSWORD"},
		{map[string]string{"DASHBOARD_PASSWORD": "hunter2"}, "DASHBOARD_USER"},
		{map[string]string{"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "hunter2"}, "DASHBOARD_PASSWORD is too short (7 characters): want at least 12"},
		{map[string]string{"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "hunter2-abc"}, "DASHBOARD_PASSWORD is too short (11 characters)"},
		{map[string]string{"DASHBOARD_TRUSTED_ORIGINS": "ops.example.com"}, "DASHBOARD_TRUSTED_ORIGINS"},
		{map[string]string{"DASHBOARD_TRUSTED_ORIGINS": "https://ok.example.com,https://ops.example.com/monitoring/"}, `DASHBOARD_TRUSTED_ORIGINS: "https://ops.example.com/monitoring/"`},
	} {
		_, err := parse(tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: err = %v, want it to name %s", tt.env, err, tt.wantErr)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: the error shows the password: %v", tt.env, err)
		}
	}
}

func TestParseQueues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     map[string]int
	}{
		{name: "one", in: "erpresync", want: map[string]int{"erpresync": 1}},
		{name: "priorities and spaces", in: " high : 6 , low:1,, ", want: map[string]int{"high": 6, "low": 1}},
	}
	for _, tt := range tests {
		got, err := parseQueues(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
		for q, p := range tt.want {
			if got[q] != p {
				t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
			}
		}
	}
}

// TestBusinessPolicyDoubles: WORKER_BUSINESS_RETRY_DELAY is the first wait and each retry
// waits twice the one before, whatever the delay (the cap never cuts the doubling short).
func TestBusinessPolicyDoubles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		delay            time.Duration
		retries          int
		wantInit, wantMx time.Duration
	}{
		{name: "default", delay: 0, retries: 3, wantInit: tasks.DefaultBusinessPolicy().Initial, wantMx: tasks.DefaultBusinessPolicy().Max},
		{name: "1m, 3 retries: 1m 2m 4m", delay: time.Minute, retries: 3, wantInit: time.Minute, wantMx: 5 * time.Minute},
		{name: "2m, 3 retries: 2m 4m 8m", delay: 2 * time.Minute, retries: 3, wantInit: 2 * time.Minute, wantMx: 8 * time.Minute},
		{name: "10m, 4 retries", delay: 10 * time.Minute, retries: 4, wantInit: 10 * time.Minute, wantMx: 80 * time.Minute},
		{name: "no retries", delay: 10 * time.Minute, retries: -1, wantInit: 10 * time.Minute, wantMx: 10 * time.Minute},
		{name: "many retries stay bounded", delay: time.Hour, retries: 1000, wantInit: time.Hour, wantMx: 32 * time.Hour},
	}
	for _, tt := range tests {
		p := businessPolicy(tt.delay, tt.retries)
		if p.Initial != tt.wantInit || p.Max != tt.wantMx {
			t.Errorf("%s: Initial %s Max %s, want %s and %s", tt.name, p.Initial, p.Max, tt.wantInit, tt.wantMx)
		}
	}
}

func TestFlowConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string // error substring; "" for none
	}{
		{"defaults", nil, ""},
		{"decimal rate", map[string]string{"SUPEROFFICE_RATE_LIMIT": "2.5"}, ""},
		{"bad rate", map[string]string{"SUPEROFFICE_RATE_LIMIT": "fast"}, "SUPEROFFICE_RATE_LIMIT=\"fast\": want requests per second"},
		{"negative rate", map[string]string{"SUPEROFFICE_RATE_LIMIT": "-1"}, "SUPEROFFICE_RATE_LIMIT"},
		{"adaptive without rate", map[string]string{"SUPEROFFICE_RATE_ADAPTIVE": "true"}, "SUPEROFFICE_RATE_ADAPTIVE=true needs SUPEROFFICE_RATE_LIMIT"},
		{"probe max below probe", map[string]string{"SUPEROFFICE_BREAKER_PROBE": "10s", "SUPEROFFICE_BREAKER_PROBE_MAX": "5s"}, "SUPEROFFICE_BREAKER_PROBE_MAX=5s is shorter"},
		{"zero burst", map[string]string{"SUPEROFFICE_RATE_BURST": "0"}, "SUPEROFFICE_RATE_BURST"},
		{"no tenant", map[string]string{"SUPEROFFICE_URL": ""}, "SUPEROFFICE_URL is not set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"SUPEROFFICE_URL": "https://sod.superoffice.com/Cust12345", "SUPEROFFICE_TICKET": "7T:x"}
			maps.Copy(env, tt.env)
			c, err := specFromSettings(parseTestSettings(t, nil, env), true)
			if err == nil {
				err = c.Validate()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			case tt.name == "decimal rate" && c.RateLimit != 2.5:
				t.Errorf("rate %v", c.RateLimit)
			}
		})
	}
	if got := tenant.FlowName(tenant.Spec{URL: "https://SOD.superoffice.com/Cust12345/"}); got != "sod.superoffice.com/cust12345" {
		t.Errorf("FlowName = %q", got)
	}
}

// parseTestSettings parses args and env as the worker does; a parse error fails the test.
func parseTestSettings(t *testing.T, args []string, env map[string]string) values {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v, err := parseSettings(fs, args, envFunc(env))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
