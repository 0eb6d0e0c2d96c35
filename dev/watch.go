package dev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Ignored reports whether path is an editor's or a tool's scratch file, or
// lies under a .git directory: vim's 4913 probe and swap files, backups
// ending in ~, emacs's .#locks and #autosaves#, JetBrains' safe-write
// temporaries. Such files never trigger a build, even where their names
// end in .go.
func Ignored(path string) bool {
	for _, part := range strings.Split(filepath.ToSlash(path), "/") {
		if part == ".git" {
			return true
		}
	}
	base := filepath.Base(path)
	switch {
	case base == "4913",
		strings.HasSuffix(base, "~"),
		strings.HasPrefix(base, ".#"),
		strings.HasPrefix(base, "#") && strings.HasSuffix(base, "#"),
		strings.HasSuffix(base, ".swp"), strings.HasSuffix(base, ".swx"), strings.HasSuffix(base, ".swo"),
		strings.HasSuffix(base, "___jb_tmp___"), strings.HasSuffix(base, "___jb_old___"),
		strings.HasSuffix(base, ".tmp"):
		return true
	}
	return false
}

// fileSet is what a build was made from: the files, and the directories of
// the packages among them, where a new Go file joins the build.
type fileSet struct {
	files map[string]bool
	dirs  map[string]bool
}

func newFileSet(files []string) fileSet {
	s := fileSet{files: map[string]bool{}, dirs: map[string]bool{}}
	for _, f := range files {
		s.files[f] = true
		s.dirs[filepath.Dir(f)] = true
	}
	return s
}

// matters reports whether a change to path can change the build.
func (s fileSet) matters(path string, ignore func(string) bool) bool {
	if ignore(path) {
		return false
	}
	if s.files[path] {
		return true
	}
	// A Go file added to (or renamed into) one of the build's packages.
	return s.dirs[filepath.Dir(path)] && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go")
}

// A watcher sends the paths of changes that matter on changes. It watches
// directories, not files, so that an editor that saves by writing a new
// file and renaming it over the old one is seen.
type watcher struct {
	changes chan string
	ignore  func(string) bool

	mu  sync.Mutex
	set fileSet

	fs   *fsnotify.Watcher // nil when polling
	poll time.Duration
	// For polling: what each file looked like, and each directory's Go
	// files.
	stamps map[string]stamp
}

type stamp struct {
	size    int64
	modTime time.Time
	exists  bool
}

// newWatcher watches files with fsnotify or, if it cannot be set up or
// poll > 0, by looking at every file each poll interval. warn hears why
// it polls.
func newWatcher(files []string, ignore func(string) bool, poll time.Duration, warn func(string)) (*watcher, error) {
	w := &watcher{changes: make(chan string, 64), ignore: ignore, poll: poll}
	if poll <= 0 {
		fw, err := fsnotify.NewWatcher()
		if err == nil {
			w.fs = fw
			if err = w.watch(files); err == nil {
				return w, nil
			}
			fw.Close()
			w.fs = nil
		}
		w.poll = defaultPoll
		warn(fmt.Sprintf("cannot watch the sources for changes (%v); polling them every %s instead%s", err, w.poll, limitHint(err)))
	}
	if err := w.watch(files); err != nil {
		return nil, err
	}
	return w, nil
}

const defaultPoll = 500 * time.Millisecond

// limitHint says how to raise inotify's limits, when err is theirs.
func limitHint(err error) string {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) {
		return " (raise the limits: sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512)"
	}
	return ""
}

// watch makes files the set to watch, adding and removing directory
// watches as the set's directories change.
func (w *watcher) watch(files []string) error {
	set := newFileSet(files)
	w.mu.Lock()
	old := w.set
	w.set = set
	w.mu.Unlock()
	if w.fs == nil {
		w.mu.Lock()
		if w.stamps == nil {
			w.stamps = w.snapshot(set)
		}
		w.mu.Unlock()
		return nil
	}
	for d := range set.dirs {
		if !old.dirs[d] {
			if err := w.fs.Add(d); err != nil {
				return fmt.Errorf("watching %s: %w", d, err)
			}
		}
	}
	for d := range old.dirs {
		if !set.dirs[d] {
			w.fs.Remove(d)
		}
	}
	return nil
}

// run sends changes until ctx ends.
func (w *watcher) run(ctx context.Context, warn func(string)) {
	if w.fs == nil {
		w.runPolling(ctx)
		return
	}
	defer w.fs.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			// Chmod alone changes no content (and Spotlight, antivirus
			// and backup tools send it all day).
			if ev.Op == fsnotify.Chmod {
				continue
			}
			w.mu.Lock()
			matters := w.set.matters(ev.Name, w.ignore)
			w.mu.Unlock()
			if matters {
				w.send(ev.Name)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			// An overflowed queue lost events: build, to be sure.
			warn(fmt.Sprintf("watching the sources: %v; rebuilding to be safe", err))
			w.send("")
		}
	}
}

func (w *watcher) send(path string) {
	select {
	case w.changes <- path:
	default: // a build is coming anyway
	}
}

func (w *watcher) runPolling(ctx context.Context) {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		set := w.set
		w.mu.Unlock()
		now := w.snapshot(set)
		w.mu.Lock()
		prev := w.stamps
		w.stamps = now
		w.mu.Unlock()
		for p, st := range now {
			if prev[p] != st && set.matters(p, w.ignore) {
				w.send(p)
			}
		}
		for p := range prev {
			if _, ok := now[p]; !ok && set.matters(p, w.ignore) {
				w.send(p)
			}
		}
	}
}

// snapshot stamps every file of set and every Go file in its directories.
func (w *watcher) snapshot(set fileSet) map[string]stamp {
	out := map[string]stamp{}
	for f := range set.files {
		out[f] = stampOf(f)
	}
	for d := range set.dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if e.Type().IsRegular() && set.matters(p, w.ignore) {
				out[p] = stampOf(p)
			}
		}
	}
	return out
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{size: fi.Size(), modTime: fi.ModTime(), exists: true}
}
