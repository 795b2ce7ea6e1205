package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/readmetest"
)

const systemdUnitPath = "../../deploy/erpresync-worker.service"

// unitEntry is one `Key=value` line of a systemd unit; Commented marks a `#Key=value` line
// (an option the reader may switch on).
type unitEntry struct {
	Section, Key, Value string
	Commented           bool
}

// readUnit parses a systemd unit file: its entries, and the words of its comments.
func readUnit(t *testing.T, path string) (entries []unitEntry, comments string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		case regexp.MustCompile(`^#[A-Z][A-Za-z]+=`).MatchString(line):
			k, v, _ := strings.Cut(line[1:], "=")
			entries = append(entries, unitEntry{section, k, v, true})
		case strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			comments += line + "\n"
		case line != "":
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a unit line: %q", path, line)
			}
			entries = append(entries, unitEntry{section, strings.TrimSpace(k), strings.TrimSpace(v), false})
		}
	}
	return entries, comments
}

// TestSystemdUnit parses deploy/erpresync-worker.service: it starts the binary where the
// README installs it, reads its settings from a root-only EnvironmentFile that the README
// creates with mode 0600, names only settings the worker reads, is hardened, restarts a crash
// but not a configuration error (exit 2), and gives in-flight calls longer than
// WORKER_SHUTDOWN_TIMEOUT to finish. `systemd-analyze verify` checks it where installed.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	entries, comments := readUnit(t, systemdUnitPath)
	get := func(key string) (string, bool) {
		for _, e := range entries {
			if e.Section == "Service" && e.Key == key && !e.Commented {
				return e.Value, true
			}
		}
		return "", false
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.Env] = true
	}
	settingRE := regexp.MustCompile(`\b(?:SUPEROFFICE|WORKER|REDIS|INTAKE|DASHBOARD|NIGHTLY|LEDGER|LOG)_[A-Z0-9_]+\b`)
	for _, e := range entries {
		if e.Key == "Environment" {
			for _, kv := range strings.Fields(e.Value) {
				if k, _, _ := strings.Cut(strings.Trim(kv, `"`), "="); !known[k] {
					t.Errorf("the unit sets %s, which the worker does not read", k)
				}
			}
		}
	}
	for _, name := range settingRE.FindAllString(comments, -1) {
		if !known[name] {
			t.Errorf("the unit's comments name %s, which the worker does not read", name)
		}
	}

	exec0, _ := get("ExecStart")
	bin := strings.Fields(exec0 + " ")[0]
	envFile, ok := get("EnvironmentFile")
	if !ok || strings.HasPrefix(envFile, "-") {
		t.Errorf("EnvironmentFile=%q: want a required file for the settings and secrets", envFile)
	}
	for key, want := range map[string]string{
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "Restart": "on-failure",
		"ProtectHome": "yes", "CapabilityBoundingSet": "",
	} {
		if v, ok := get(key); !ok || v != want {
			t.Errorf("%s=%q (set %v), want %q", key, v, ok, want)
		}
	}
	if dyn, _ := get("DynamicUser"); dyn != "yes" {
		if user, _ := get("User"); user == "" || user == "root" {
			t.Error("the unit runs as root: want DynamicUser=yes or a User= of its own")
		}
	}
	if v, _ := get("RestartPreventExitStatus"); !slices.Contains(strings.Fields(v), "2") {
		t.Errorf("RestartPreventExitStatus=%q: a configuration error (exit 2) must not be restarted", v)
	}
	stop, _ := get("TimeoutStopSec")
	grace, err1 := time.ParseDuration(stop)
	shutdown, err2 := time.ParseDuration(settings[slices.IndexFunc(settings, func(s setting) bool { return s.Env == "WORKER_SHUTDOWN_TIMEOUT" })].Default)
	if err1 != nil || err2 != nil || grace <= shutdown {
		t.Errorf("TimeoutStopSec=%q: want longer than WORKER_SHUTDOWN_TIMEOUT's default %s", stop, shutdown)
	}

	// The README installs the binary where ExecStart finds it, the settings file with mode
	// 0600 where EnvironmentFile reads it, and the unit itself.
	blocks, err := readmetest.Blocks(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, b := range blocks {
		lines = append(lines, b.Lines()...)
	}
	has := func(what string, re *regexp.Regexp) {
		t.Helper()
		if !slices.ContainsFunc(lines, re.MatchString) {
			t.Errorf("the README has no command that %s (%s)", what, re)
		}
	}
	has("installs bin/worker as "+bin, regexp.MustCompile(`install .*\bbin/worker\b.* `+regexp.QuoteMeta(filepath.Dir(bin))+`/?$`))
	has("installs the settings file mode 0600 as "+envFile, regexp.MustCompile(`install -m 0?600 \S+ `+regexp.QuoteMeta(envFile)+`$`))
	has("installs the unit", regexp.MustCompile(`install .*deploy/erpresync-worker\.service /etc/systemd/system/?$`))

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd): the unit was not verified with it")
	}
	// verify wants ExecStart's binary to exist: point it at the test's build of the worker.
	raw, err := os.ReadFile(systemdUnitPath)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("ExecStart="+bin), []byte("ExecStart="+workerBinary(t)))
	// As shipped, and with its commented-out options (the private key's credential) on.
	optionsOn := regexp.MustCompile(`(?m)^#([A-Z][A-Za-z]+=)`).ReplaceAll(raw, []byte("$1"))
	for name, text := range map[string][]byte{"as shipped": raw, "with the commented options on": optionsOn} {
		unit := filepath.Join(t.TempDir(), "erpresync-worker.service")
		if err := os.WriteFile(unit, text, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify, %s: %v\n%s", name, err, out)
		}
	}
}
