package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{name: "no build info", bi: nil, want: "worker (no build information)"},
		{name: "go run", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, want: "worker (devel) (go1.26.8)"},
		{
			name: "git checkout",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261201083000-ca8218d3e5a1"}, Settings: []debug.BuildSetting{
				{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "ca8218d3e5a1b2c3d4e5f60718293a4b5c6d7e8f"},
				{Key: "vcs.time", Value: "2026-12-01T08:30:00Z"}, {Key: "vcs.modified", Value: "false"},
			}},
			want: "worker v0.0.0-20261201083000-ca8218d3e5a1 (revision ca8218d3e5a1, 2026-12-01T08:30:00Z, go1.26.8)",
		},
		{
			name: "local changes",
			bi: &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0+dirty"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"},
			}},
			want: "worker v1.2.0+dirty (revision abc, modified)",
		},
		{name: "empty version", bi: &debug.BuildInfo{}, want: "worker (devel)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Format("worker", tt.bi); got != tt.want {
				t.Errorf("Format = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsFlag(t *testing.T) {
	t.Parallel()
	for arg, want := range map[string]bool{"--version": true, "-version": true, "version": false, "-v": false, "--versions": false} {
		if got := IsFlag(arg); got != want {
			t.Errorf("IsFlag(%q) = %v, want %v", arg, got, want)
		}
	}
}
