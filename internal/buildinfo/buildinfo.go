// Package buildinfo answers --version for erpresync's commands (worker, enqueue,
// netserver-sim) from the build information the Go toolchain embeds: the module version and
// the VCS revision, time and modified flag that `go build` stamps in a git checkout.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Version is the one line a command prints for --version, e.g.
//
//	worker v0.0.0-20261201083000-ca8218d3e5a1 (revision ca8218d3e5a1, 2026-12-01T08:30:00Z, go1.26.8)
//
// The revision part is left out when the binary was built without VCS information (go run,
// go test, -buildvcs=false); "modified" marks a build from a checkout with local changes.
func Version(command string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return command + " (no build information)"
	}
	return Format(command, bi)
}

// Format renders bi as Version does; a nil bi says there is no build information.
func Format(command string, bi *debug.BuildInfo) string {
	if bi == nil {
		return command + " (no build information)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs.") {
			vcs[s.Key] = s.Value
		}
	}
	var details []string
	if rev := vcs["vcs.revision"]; rev != "" {
		details = append(details, "revision "+shortRevision(rev))
		if t := vcs["vcs.time"]; t != "" {
			details = append(details, t)
		}
		if vcs["vcs.modified"] == "true" {
			details = append(details, "modified")
		}
	}
	if bi.GoVersion != "" {
		details = append(details, bi.GoVersion)
	}
	out := command + " " + version
	if len(details) > 0 {
		out += " (" + strings.Join(details, ", ") + ")"
	}
	return out
}

// shortRevision is a git revision's first 12 hex digits, as Go's pseudo-versions show it.
func shortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// IsFlag reports whether arg asks for the version: --version or -version (the standard
// flag package accepts both spellings).
func IsFlag(arg string) bool { return arg == "--version" || arg == "-version" }
