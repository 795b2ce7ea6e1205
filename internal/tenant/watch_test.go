package tenant

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// lockedBuffer is a log sink tests read while Watch writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// watched runs Watch on path until the test ends; its tenants arrive on the channel.
type watched struct {
	sets   chan []Spec
	reload chan os.Signal
	logs   *lockedBuffer
}

func startWatch(t *testing.T, path string, getenv func(string) string) *watched {
	t.Helper()
	return startWatchApplied(t, path, getenv, nil)
}

// startWatchApplied is startWatch with the tenants the caller applied (Watch's applied).
func startWatchApplied(t *testing.T, path string, getenv func(string) string, applied []Spec) *watched {
	t.Helper()
	w := &watched{sets: make(chan []Spec, 16), reload: make(chan os.Signal, 1), logs: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, path, getenv, applied, w.reload, func(s []Spec) { w.sets <- s }, zerolog.New(w.logs))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	return w
}

// next waits for the next set of tenants.
func (w *watched) next(t *testing.T) []string {
	t.Helper()
	select {
	case s := <-w.sets:
		ids := make([]string, len(s))
		for i, sp := range s {
			ids[i] = sp.ID
		}
		return ids
	case <-time.After(20 * time.Second):
		t.Fatalf("no tenants handed over; log:\n%s", w.logs.String())
		return nil
	}
}

// waitLog waits until the log holds want.
func (w *watched) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(w.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", want, w.logs.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with the deadline above
	}
}

func tenantsYAML(ids ...string) string {
	var b strings.Builder
	b.WriteString("tenants:\n")
	for _, id := range ids {
		b.WriteString("  - id: " + id + "\n    url: https://online3.superoffice.com/" + id + "\n    auth: {ticket_env: T}\n")
	}
	return b.String()
}

// replace writes content to path as editors do: a new file renamed over the old.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var ticketEnv = testEnv(map[string]string{"T": "7T:x"})

// TestWatchFileChanges: a change of the file, renamed over it or written in place, hands the
// new tenants over; a broken file is logged and the tenants before stay, until it is fixed.
func TestWatchFileChanges(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	replace(t, path, tenantsYAML("a"))
	w := startWatch(t, path, ticketEnv)
	if got := w.next(t); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first tenants %v", got)
	}
	replace(t, path, tenantsYAML("a", "b"))
	if got := w.next(t); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after rename: %v", got)
	}
	replace(t, path, tenantsYAML("a", "b")+"  - id: c\n    url: https://x.example/c\n    auth: {password: hunter2-secret}\n")
	w.waitLog(t, `tenants file not applied, the 2 tenants before stay: `+path+`:10: tenant \"c\": auth.password: a secret is not written in the tenants file`)
	if err := os.WriteFile(path, []byte(tenantsYAML("b")), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after writing in place: %v", got)
	}
	if strings.Contains(w.logs.String(), "hunter2") {
		t.Errorf("the log shows a secret:\n%s", w.logs.String())
	}
	select {
	case s := <-w.sets:
		t.Errorf("a broken file handed over %d tenants", len(s))
	default:
	}
}

// TestWatchSymlinkSwap: Kubernetes updates a mounted ConfigMap by pointing the ..data
// symlink at a new directory; the file is a symlink through it and never changes itself.
func TestWatchSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "tenants.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", tenantsYAML("a"))
	path := filepath.Join(dir, "tenants.yaml")
	if err := os.Symlink("..data/tenants.yaml", path); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, path, ticketEnv)
	w.next(t)
	version("..v2", tenantsYAML("a", "k8s"))
	if got := w.next(t); !slices.Equal(got, []string{"a", "k8s"}) {
		t.Fatalf("after the swap: %v", got)
	}
}

// TestWatchReload: a signal reads the file again, which picks up what the file does not
// show: here a secret file it refers to.
func TestWatchReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretDir := t.TempDir() // elsewhere: its changes are not watched
	ticket := filepath.Join(secretDir, "ticket")
	if err := os.WriteFile(ticket, []byte("7T:one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tenants.yaml")
	replace(t, path, "tenants:\n  - id: a\n    url: https://x.example/a\n    auth: {ticket_file: "+ticket+"}\n")
	w := startWatch(t, path, ticketEnv)
	w.next(t)
	if err := os.WriteFile(ticket, []byte("7T:two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.reload <- syscall.SIGHUP
	select {
	case s := <-w.sets:
		if s[0].Ticket.Reveal() != "7T:two" {
			t.Errorf("ticket not re-read")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("SIGHUP handed nothing over:\n%s", w.logs.String())
	}
	if !strings.Contains(w.logs.String(), `"changed":["a"]`) {
		t.Errorf("log:\n%s", w.logs.String())
	}
}

// TestWatchRefusesBrokenStart: a file that does not load at the start is Watch's error.
func TestWatchRefusesBrokenStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	replace(t, path, "tenants:\n  - id: a\n")
	err := Watch(context.Background(), path, ticketEnv, nil, nil, func([]Spec) { t.Error("onChange called") }, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), `tenants.yaml:2: tenant "a": url is not set`) {
		t.Errorf("error %v", err)
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	a := Spec{ID: "a", URL: "https://x.example/a", Ticket: NewSecret("t1")}
	b := Spec{ID: "b", URL: "https://x.example/b"}
	c := Spec{ID: "c", URL: "https://x.example/c"}
	a2 := a
	a2.Ticket = NewSecret("t2")
	aMoved := a
	aMoved.Naming = &fileNames{file: "tenants.yaml", line: 40}
	for _, tt := range []struct {
		name                    string
		prev, next              []Spec
		added, removed, changed []string
	}{
		{name: "same", prev: []Spec{a, b}, next: []Spec{b, a}},
		{name: "moved in the file", prev: []Spec{a}, next: []Spec{aMoved}},
		{name: "secret changed", prev: []Spec{a, b}, next: []Spec{a2, b}, changed: []string{"a"}},
		{name: "added and removed", prev: []Spec{a, b}, next: []Spec{a, c}, added: []string{"c"}, removed: []string{"b"}},
		{name: "from none", next: []Spec{a}, added: []string{"a"}},
	} {
		added, removed, changed := Diff(tt.prev, tt.next)
		if !slices.Equal(added, tt.added) || !slices.Equal(removed, tt.removed) || !slices.Equal(changed, tt.changed) {
			t.Errorf("%s: %v %v %v, want %v %v %v", tt.name, added, removed, changed, tt.added, tt.removed, tt.changed)
		}
	}
}

// TestWatchApplied: tenants the caller applied that the file still says are not handed over
// again (the next change is the first set handed over); tenants that differ from the file's
// are replaced by the file's at once.
func TestWatchApplied(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	replace(t, path, tenantsYAML("a"))
	applied, err := Load(path, ticketEnv)
	if err != nil {
		t.Fatal(err)
	}
	w := startWatchApplied(t, path, ticketEnv, applied)
	replace(t, path, tenantsYAML("a", "b"))
	if got := w.next(t); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first tenants handed over %v, want the change [a b]", got)
	}

	path2 := filepath.Join(t.TempDir(), "tenants.yaml")
	replace(t, path2, tenantsYAML("c"))
	w2 := startWatchApplied(t, path2, ticketEnv, applied)
	if got := w2.next(t); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("first tenants %v, want the file's [c]", got)
	}
}
