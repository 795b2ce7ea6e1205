package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/erpresync/erpresync/internal/readmetest"
	"github.com/erpresync/erpresync/tasks"
)

var update = flag.Bool("update", false, "rewrite the generated parts of README.md")

const readmePath = "../../README.md"

// settingsTable renders the configuration table the README carries.
func settingsTable() string {
	var b strings.Builder
	b.WriteString("| env | flag | default | meaning |\n|---|---|---|---|\n")
	for _, s := range settings {
		fl := "—"
		if s.Flag != "" {
			fl = "`--" + s.Flag + "`"
		}
		def := "—"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		meaning := s.Meaning
		if s.Secret {
			meaning += " (secret: environment only)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.Env, fl, def, strings.ReplaceAll(meaning, "|", "\\|"))
	}
	return b.String()
}

// replaceSection swaps the text between "<!-- begin NAME..." and "<!-- end NAME -->".
func replaceSection(doc, name, body string) (string, bool) {
	re := regexp.MustCompile(`(?s)(<!-- begin ` + name + `[^\n]*-->\n).*?(<!-- end ` + name + ` -->)`)
	if !re.MatchString(doc) {
		return doc, false
	}
	return re.ReplaceAllLiteralString(doc, re.FindStringSubmatch(doc)[1]+body+"<!-- end "+name+" -->"), true
}

// TestREADMEGenerated checks that the README's configuration and error-class tables are
// exactly what the code says; -update rewrites them. Not parallel: with -update it writes
// the README, which parallel tests read, and sequential tests finish before those start.
func TestREADMEGenerated(t *testing.T) {
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	want := doc
	for name, body := range map[string]string{"settings": settingsTable(), "classes": tasks.ClassTableMarkdown()} {
		var ok bool
		if want, ok = replaceSection(want, name, body); !ok {
			t.Fatalf("README has no %q section markers", name)
		}
	}
	if want == doc {
		return
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("README.md's generated tables are out of date; run: go test ./cmd/worker -run TestREADMEGenerated -update")
}

// TestSettingsAreDocumented: every setting has a meaning and a unique name, and secrets
// have no flag (flags show up in ps).
func TestSettingsAreDocumented(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, s := range settings {
		if s.Env == "" || s.Meaning == "" || seen[s.Env] {
			t.Errorf("setting %+v: empty or duplicate", s)
		}
		seen[s.Env] = true
		if s.Secret && s.Flag != "" {
			t.Errorf("secret %s has a flag", s.Env)
		}
	}
}

// TestREADMEWorkerCommands runs the README's `go run ./cmd/worker …` lines other than the
// demo (TestDemoOnce runs that) against the simulator, with the README's own exports
// pointed at it.
func TestREADMEWorkerCommands(t *testing.T) {
	t.Parallel()
	blocks, err := readmetest.Blocks(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	sim := startSim(t)
	env := map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_TICKET": sim.IssueTicket()}
	ran := 0
	checkVar := func(how, k string) {
		t.Helper()
		i := slices.IndexFunc(settings, func(s setting) bool { return s.Env == k })
		if _, known := env[k]; !known && i < 0 {
			t.Errorf("the README %s %s, which the worker does not read", how, k)
		}
		// Credentials exported into the shell outlive their section and contradict the next
		// section's (the worker refuses two ways to authenticate): give them with env.
		if how == "exports" && strings.HasPrefix(k, "SUPEROFFICE_") {
			t.Errorf("the README exports %s; give it to one command with `env %s=... command`", k, k)
		}
	}
	for _, block := range blocks {
		if block.NotRun != "" {
			t.Logf("README block not run (%s):\n%s", block.NotRun, block.Text)
		}
		// The settings of blocks that are not run are checked all the same.
		for _, line := range block.Lines() {
			if strings.HasPrefix(line, "export ") {
				for _, kv := range strings.Fields(strings.TrimPrefix(line, "export ")) {
					if k, _, ok := strings.Cut(kv, "="); ok {
						checkVar("exports", k)
					}
				}
				continue
			}
			if rest, ok := strings.CutPrefix(line, "env "); ok {
				fields := strings.Fields(rest)
				for len(fields) > 0 && strings.Contains(fields[0], "=") {
					k, _, _ := strings.Cut(fields[0], "=")
					checkVar("sets", k)
					fields = fields[1:]
				}
				line = strings.Join(fields, " ")
			}
			args, ok := strings.CutPrefix(line, "go run ./cmd/worker ")
			if !ok || strings.HasPrefix(args, "demo") || block.NotRun != "" {
				continue
			}
			var stdout, stderr strings.Builder
			code := run(t.Context(), strings.Fields(args), &stdout, &stderr, envFunc(env))
			if code != 0 {
				t.Errorf("README command %q: exit %d\n%s%s", line, code, stdout.String(), stderr.String())
			}
			ran++
		}
	}
	if ran == 0 {
		t.Fatal("the README shows no `go run ./cmd/worker` command besides the demo")
	}
}

// TestREADMETrial: the trial starts a Redis on loopback only, and says how to stop what it
// started; `make trial` and `make trial-stop` exist and do the same.
func TestREADMETrial(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var sh []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		sh = append(sh, strings.Split(strings.ReplaceAll(block[1], "\\\n", " "), "\n")...)
	}
	servers := 0
	for _, line := range append(sh, strings.Split(string(mk), "\n")...) {
		if strings.Contains(line, "redis-server --") {
			servers++
			if !strings.Contains(line, "--bind 127.0.0.1") {
				t.Errorf("redis-server listens on every interface: %s", strings.TrimSpace(line))
			}
		}
	}
	if servers < 2 {
		t.Errorf("found %d redis-server commands in the README and Makefile, want the trial's in both", servers)
	}
	for _, target := range []string{"trial", "trial-stop"} {
		if !regexp.MustCompile(`(?m)^` + target + `:`).Match(mk) {
			t.Errorf("the Makefile has no %s target", target)
		}
		if !slices.ContainsFunc(sh, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "make "+target) }) {
			t.Errorf("the README does not show `make %s`", target)
		}
	}
	for _, want := range []string{"redis-cli -p 6391 shutdown", "WORKER_HTTP_ADDR=127.0.0.1:9090"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the README's trial does not say %q (how to stop it, how to move the worker's port)", want)
		}
	}
}

// TestREADMENotRunMarkers: every readme-test marker of the README sits directly before a
// ```sh block and gives a reason, so that the tests that run the README's commands see it
// (a misspelt one would make them run a block that needs a real tenant, or a mistyped
// fence silently skip one).
func TestREADMENotRunMarkers(t *testing.T) {
	t.Parallel()
	all, recognised, err := readmetest.Markers(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	if all != recognised {
		t.Errorf("the README has %d readme-test markers, %d of them directly before a ```sh block as `<!-- readme-test: not run: REASON -->`", all, recognised)
	}
}
