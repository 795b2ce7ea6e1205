package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCommandsPrintVersion builds the three commands as a user does (go build in the git
// checkout, which stamps the VCS revision; -buildvcs=true in case GOFLAGS turns it off) and
// runs each with --version.
func TestCommandsPrintVersion(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds three commands")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-buildvcs=true", "-o", dir+string(filepath.Separator), "./cmd/worker", "./cmd/enqueue", "./cmd/netserver-sim")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The go command finds a git checkout by its .git directory; a git worktree (where .git
	// is a file) or a copy without .git builds without VCS information.
	revision := ""
	if fi, err := os.Stat("../../.git"); err != nil || !fi.IsDir() {
		t.Log("not a git clone (no .git directory): only the version's shape is checked")
	} else if out, err := exec.Command("git", "-C", "../..", "rev-parse", "HEAD").Output(); err == nil {
		revision = strings.TrimSpace(string(out))[:12]
	} else {
		t.Logf("no git revision (%v): only the version's shape is checked", err)
	}
	for _, name := range []string{"worker", "enqueue", "netserver-sim"} {
		t.Run(name, func(t *testing.T) {
			for _, flag := range []string{"--version", "-version"} {
				out, err := exec.Command(filepath.Join(dir, name), flag).Output()
				if err != nil {
					t.Fatalf("%s %s: %v", name, flag, err)
				}
				line := strings.TrimSpace(string(out))
				if !regexp.MustCompile(`^` + regexp.QuoteMeta(name) + ` \S+ \(.*go1\.[0-9]+.*\)$`).MatchString(line) {
					t.Errorf("%s %s = %q, want %q followed by the module version and (..., go version)", name, flag, line, name)
				}
				if revision != "" && !strings.Contains(line, "revision "+revision) {
					t.Errorf("%s %s = %q, want the revision %s", name, flag, line, revision)
				}
			}
		})
	}
}
