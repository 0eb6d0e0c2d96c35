package dev

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
)

func TestIgnored(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/src/app/main.go", false},
		{"/src/app/go.mod", false},
		{"/src/app/kiln.hcl", false},
		{"/src/app/4913", true},         // vim's write probe
		{"/src/app/.main.go.swp", true}, // vim
		{"/src/app/.main.go.swx", true}, // vim
		{"/src/app/main.go~", true},     // vim and emacs backups
		{"/src/app/.#main.go", true},    // emacs lock
		{"/src/app/#main.go#", true},    // emacs autosave
		{"/src/app/main.go___jb_tmp___", true},
		{"/src/app/main.go___jb_old___", true},
		{"/src/app/.git/index", true},
		{"/src/app/.git/refs/heads/main", true},
		{"/src/app/gitops/main.go", false},
	} {
		if got := Ignored(tc.path); got != tc.want {
			t.Errorf("Ignored(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestFileSetMatters(t *testing.T) {
	s := newFileSet([]string{"/m/main.go", "/m/store/kv.go", "/m/go.mod", "/m/static/index.html"})
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/m/main.go", true},
		{"/m/store/kv.go", true},
		{"/m/static/index.html", true}, // embedded
		{"/m/store/new.go", true},      // a new file of a package
		{"/m/store/kv_test.go", false}, // tests are not built
		{"/m/store/notes.txt", false},
		{"/m/static/other.html", false}, // not embedded
		{"/m/README.md", false},
		{"/m/cmd/tool/main.go", false}, // a package the build does not read
		{"/m/store/.#kv.go", false},
	} {
		if got := s.matters(tc.path, Ignored); got != tc.want {
			t.Errorf("matters(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

// loop runs Run over a real directory with a Builder that records each
// build, and returns a function that waits for the nth build.
type loop struct {
	dir    string
	mu     sync.Mutex
	builds int
	fail   bool
	hook   func(ctx context.Context) // when set, what each build does
	swaps  int
	out    testbin.Buffer
	cancel context.CancelFunc
	done   chan error
}

func startLoop(t *testing.T, o Options) *loop {
	t.Helper()
	l := &loop{dir: t.TempDir(), done: make(chan error, 1)}
	for _, f := range []string{"main.go", "go.mod"} {
		os.WriteFile(filepath.Join(l.dir, f), []byte("package main\n"), 0o644)
	}
	files := []string{filepath.Join(l.dir, "main.go"), filepath.Join(l.dir, "go.mod")}
	build := func(ctx context.Context) (*Build, error) {
		l.mu.Lock()
		l.builds++
		hook := l.hook
		l.mu.Unlock()
		if hook != nil {
			hook(ctx)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.fail {
			return &Build{Files: files}, errors.New("main.go:3:1: syntax error")
		}
		return &Build{Files: files, Swap: func(context.Context) (string, error) {
			l.mu.Lock()
			l.swaps++
			l.mu.Unlock()
			return "swapped", nil
		}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	o.Output = &l.out
	go func() { l.done <- Run(ctx, build, o) }()
	t.Cleanup(func() { cancel(); <-l.done })
	l.waitBuilds(t, 1)
	time.Sleep(100 * time.Millisecond) // the watcher is set up
	return l
}

func (l *loop) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.builds
}

func (l *loop) swapCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.swaps
}

// waitSwaps waits until n builds have been swapped in.
func (l *loop) waitSwaps(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.swapCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d swaps, want %d; output:\n%s", l.swapCount(), n, l.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *loop) waitBuilds(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d builds, want %d; output:\n%s", l.count(), n, l.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *loop) output() string { return l.out.String() }

func (l *loop) write(t *testing.T, name, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(l.dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunBuildsOncePerBurst: on either watcher, a burst of saves gives one
// build; a save by rename is seen; scratch files, .git and files the build
// does not read give none.
func TestRunBuildsOncePerBurst(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"events", Options{Debounce: 150 * time.Millisecond}},
		{"polling", Options{Debounce: 150 * time.Millisecond, Poll: 50 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startLoop(t, tc.o)
			for i := range 5 {
				l.write(t, "main.go", "package main // "+strings.Repeat("x", i+1)+"\n")
				time.Sleep(20 * time.Millisecond)
			}
			l.waitSwaps(t, 2)
			time.Sleep(500 * time.Millisecond)
			if n := l.swapCount(); n != 2 {
				t.Fatalf("a burst of 5 saves gave %d builds swapped in, want 1", n-1)
			}
			// vim: write 4913, rename main.go to main.go~, write a new main.go.
			l.write(t, "4913", "")
			os.Remove(filepath.Join(l.dir, "4913"))
			os.Rename(filepath.Join(l.dir, "main.go"), filepath.Join(l.dir, "main.go~"))
			l.write(t, "main.go", "package main // by rename\n")
			l.waitSwaps(t, 3)
			time.Sleep(300 * time.Millisecond)
			built := l.count()
			for _, name := range []string{".main.go.swp", "main.go~", ".#main.go", ".git/index", "README.md", "main_test.go", "sub/other.go"} {
				l.write(t, name, "x")
			}
			time.Sleep(600 * time.Millisecond)
			if n := l.count(); n != built {
				t.Fatalf("scratch files and files outside the build gave %d builds, want none:\n%s", n-built, l.output())
			}
			// A new Go file in the package is part of the build.
			l.write(t, "util.go", "package main\n")
			l.waitSwaps(t, 4)
			// The line is printed once the swap is done, a moment later.
			l.waitOutput(t, "/util.go → build", 1)
		})
	}
}

// waitOutput waits until the loop's output holds n lines containing sub.
func (l *loop) waitOutput(t *testing.T, sub string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(l.output(), sub) < n {
		if time.Now().After(deadline) {
			t.Fatalf("output has %d lines with %q, want %d:\n%s", strings.Count(l.output(), sub), sub, n, l.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunKeepsGoingAfterAFailedBuild: a failed build is reported with its
// error, and the next save builds again.
func TestRunKeepsGoingAfterAFailedBuild(t *testing.T) {
	l := startLoop(t, Options{Debounce: 50 * time.Millisecond})
	l.mu.Lock()
	l.fail = true
	l.mu.Unlock()
	l.write(t, "main.go", "package main\nfunc")
	l.waitOutput(t, "build failed after", 1)
	if out := l.output(); !strings.Contains(out, "main.go:3:1: syntax error") {
		t.Fatalf("output:\n%s\nwant the compiler's position", out)
	}
	l.mu.Lock()
	l.fail = false
	l.mu.Unlock()
	l.write(t, "main.go", "package main\n")
	l.waitOutput(t, "→ serving (swapped)", 1)
}

// TestASaveDuringABuildStartsAnother: once the sources have been quiet for
// the debounce, the build under way is kept, and a save made meanwhile
// gets a build of its own when it ends; a save within the debounce
// restarts the build instead.
func TestASaveDuringABuildStartsAnother(t *testing.T) {
	l := startLoop(t, Options{Debounce: 50 * time.Millisecond})
	l.mu.Lock()
	l.hook = func(ctx context.Context) {
		select {
		case <-ctx.Done():
		case <-time.After(700 * time.Millisecond):
		}
	}
	l.mu.Unlock()
	l.write(t, "main.go", "package main // 1\n")
	time.Sleep(300 * time.Millisecond) // the build is under way, and kept
	l.write(t, "main.go", "package main // 2\n")
	l.waitSwaps(t, 2)
	if n := l.swapCount(); n != 2 {
		t.Fatalf("%d swaps while the second save waits, want the first build's alone", n-1)
	}
	l.waitSwaps(t, 3)
	time.Sleep(1500 * time.Millisecond)
	if n := l.swapCount(); n != 3 {
		t.Fatalf("%d builds swapped in after a save during a build, want 2", n-1)
	}
}

// TestAQuickSecondSaveRestartsTheBuild: a save within the debounce of the
// last one cancels the build of the older sources.
func TestAQuickSecondSaveRestartsTheBuild(t *testing.T) {
	l := startLoop(t, Options{Debounce: 300 * time.Millisecond})
	var cancelled []bool
	var mu sync.Mutex
	l.mu.Lock()
	l.hook = func(ctx context.Context) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		mu.Lock()
		cancelled = append(cancelled, ctx.Err() != nil)
		mu.Unlock()
	}
	l.mu.Unlock()
	l.write(t, "main.go", "package main // 1\n")
	time.Sleep(100 * time.Millisecond)
	l.write(t, "main.go", "package main // 2\n")
	l.waitSwaps(t, 2)
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if n := l.swapCount(); n != 2 || len(cancelled) < 2 || !cancelled[0] || cancelled[len(cancelled)-1] {
		t.Fatalf("%d swaps; builds cancelled: %v; want the first build cancelled and the last one swapped in alone", n-1, cancelled)
	}
}
