package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

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
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	sim := startSim(t)
	env := map[string]string{"SUPEROFFICE_URL": sim.URL, "SUPEROFFICE_TICKET": sim.IssueTicket()}
	ran := 0
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		for _, line := range strings.Split(block[1], "\n") {
			line = strings.TrimSpace(regexp.MustCompile(`\s+#.*$`).ReplaceAllString(line, ""))
			if strings.HasPrefix(line, "export ") {
				for _, kv := range strings.Fields(strings.TrimPrefix(line, "export ")) {
					if k, _, ok := strings.Cut(kv, "="); ok {
						if _, known := env[k]; !known && !slices.ContainsFunc(settings, func(s setting) bool { return s.Env == k }) {
							t.Errorf("the README exports %s, which the worker does not read", k)
						}
					}
				}
				continue
			}
			args, ok := strings.CutPrefix(line, "go run ./cmd/worker ")
			if !ok || strings.HasPrefix(args, "demo") {
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
