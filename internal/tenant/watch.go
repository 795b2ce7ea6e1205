package tenant

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// settle is how long Watch waits after a change in the file's directory for more changes
// before it reads the file: an editor's save, or Kubernetes' swap of a ConfigMap's symlink,
// is several events, and the file is read once they are over.
const settle = 100 * time.Millisecond

// Watch reads the tenants file at path (Load) and hands its tenants to onChange (unless they
// are those of applied: below), then reads
// it again whenever the file changes and whenever reload delivers (the caller's SIGHUP; nil:
// file changes only), and calls onChange with the new tenants when they differ (Diff) from
// the last ones handed over. A file that no longer loads is logged at error level, naming
// the problem, and the previous tenants stay. Watch watches the file's directory, not the
// file, so that an editor's rename over the file and Kubernetes' symlink swap are seen.
//
// Watch returns at once with an error when the directory cannot be watched or the file does
// not load at the start (so the caller can refuse to start); otherwise it runs until ctx
// ends and returns nil. onChange runs on Watch's goroutine, one call at a time.
//
// applied, when not nil, are the tenants the caller read from path and applied before: when
// the file still says the same (Diff), they stay the last ones handed over and the first
// read is dropped (a worker of a thousand tenants keeps one parsed copy of them, not two).
func Watch(ctx context.Context, path string, getenv func(string) string, applied []Spec, reload <-chan os.Signal, onChange func([]Spec), log zerolog.Logger) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	defer fw.Close()
	if err := fw.Add(filepath.Dir(path)); err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	// Watching starts before the first read, so no change after it is missed.
	cur, err := Load(path, getenv)
	if err != nil {
		return err
	}
	if added, removed, changed := Diff(applied, cur); applied != nil && len(added)+len(removed)+len(changed) == 0 && len(applied) == len(cur) {
		cur = applied
	} else {
		onChange(cur)
	}
	w := watch{path: path, getenv: getenv, onChange: onChange, log: log.With().Str("tenants_config", path).Logger(), cur: cur}
	w.run(ctx, fw, reload)
	return nil
}

// watch is Watch's state between reads: the tenants last handed over.
type watch struct {
	path     string
	getenv   func(string) string
	onChange func([]Spec)
	log      zerolog.Logger
	cur      []Spec
}

// run reads the file on reload, and once the directory's events have settled, until ctx
// ends.
func (w *watch) run(ctx context.Context, fw *fsnotify.Watcher, reload <-chan os.Signal) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			w.read("signal")
		case _, ok := <-fw.Events:
			if !ok {
				return
			}
			timer.Reset(settle)
		case err, ok := <-fw.Errors:
			if !ok {
				return
			}
			w.log.Warn().Err(err).Msg("watching the tenants file: some changes may be missed; send SIGHUP to read it")
		case <-timer.C:
			w.read("change")
		}
	}
}

// read loads the file and hands over its tenants when they changed.
func (w *watch) read(why string) {
	next, err := Load(w.path, w.getenv)
	if err != nil {
		w.log.Error().Str("reason", why).Msgf("tenants file not applied, the %d tenants before stay: %v", len(w.cur), err)
		return
	}
	added, removed, changed := Diff(w.cur, next)
	if len(added)+len(removed)+len(changed) == 0 && len(next) == len(w.cur) {
		return
	}
	w.log.Info().Str("reason", why).Int("tenants", len(next)).Strs("added", added).Strs("removed", removed).Strs("changed", changed).Msg("tenants file applied")
	w.cur = next
	w.onChange(next)
}

// Diff compares two sets of tenants by ID: the IDs only in next (added), only in prev
// (removed), and in both but configured differently (changed, Spec.Equal), each in the
// order of its set. Linear in the sizes of the sets.
func Diff(prev, next []Spec) (added, removed, changed []string) {
	old := make(map[string]Spec, len(prev))
	for _, s := range prev {
		old[s.ID] = s
	}
	seen := make(map[string]bool, len(next))
	for _, s := range next {
		seen[s.ID] = true
		o, ok := old[s.ID]
		switch {
		case !ok:
			added = append(added, s.ID)
		case !o.Equal(s):
			changed = append(changed, s.ID)
		}
	}
	for _, s := range prev {
		if !seen[s.ID] {
			removed = append(removed, s.ID)
		}
	}
	return added, removed, changed
}
