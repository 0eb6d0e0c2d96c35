// Package dev is kiln's development loop: it watches the files an app is
// built from and, on a change, rebuilds the app and swaps the running
// topology over to the new build, which goes into service only once it is
// ready. A build that fails leaves the last good one serving.
//
// What a build is and how it is swapped in belong to the caller (the CLI
// builds packages and descriptors, and swaps on each target): the loop
// owns watching, debouncing, ordering and reporting.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A Build is one build of the app.
type Build struct {
	// Files are the files the build read: the next change to one of them
	// (or a new Go file in one of their packages) starts the next build.
	Files []string
	// List, when set, lists Files instead. The loop calls it once the
	// build is in service, or has failed, so that listing the files does
	// not hold up the new code.
	List func(ctx context.Context) ([]string, error)
	// Swap puts the build into service (the first one starts the app)
	// and says in a few words what it did. nil for a failed build.
	Swap func(ctx context.Context) (string, error)
}

// A Builder builds the app as its sources are now. When the build fails it
// returns the error and, when it knows them, the files to wait on for a
// fix, in a Build with no Swap.
type Builder func(ctx context.Context) (*Build, error)

// Options configure the loop.
type Options struct {
	// Debounce: a change within this long of the last one cancels the
	// build under way and starts another, so that a burst of saves gives
	// one build; 0 means 100ms.
	Debounce time.Duration
	// Ignore says which paths never trigger a build; nil means Ignored.
	Ignore func(path string) bool
	// Poll, when positive, looks at the files at this interval instead of
	// asking the system for events (for file systems that give none, such
	// as some network and VM-shared ones).
	Poll time.Duration
	// Output receives one line per build; nil means os.Stderr.
	Output io.Writer
	// OnBuild, when set, is told of each build once it has ended, the
	// first one included.
	OnBuild func(Report)
}

// Report is what one build of the loop did.
type Report struct {
	Start  time.Time
	Change string        // the changed files, briefly; "" for the first build
	Build  time.Duration // compiling and preparing
	Swap   time.Duration // putting it into service; 0 when the build failed
	Result string        // "serving", "build failed" or "swap failed"
	Err    error         // why it does not serve; nil when it does
}

// Run builds and starts the app, then rebuilds and swaps it on every
// change, until ctx ends. It returns an error only if the first build
// cannot say which files to watch, the first swap (the start) fails, or
// the watcher cannot be set up at all.
func Run(ctx context.Context, build Builder, o Options) error {
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Ignore == nil {
		o.Ignore = Ignored
	}
	if o.Output == nil {
		o.Output = os.Stderr
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Output, "kiln: "+format+"\n", args...) }
	report := func(r Report) {
		if o.OnBuild != nil {
			o.OnBuild(r)
		}
	}

	start := time.Now()
	b, err := build(ctx)
	if ctx.Err() != nil {
		return nil
	}
	built := time.Since(start)
	var files []string
	switch {
	case err == nil:
		if _, err := b.Swap(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		report(Report{Start: start, Build: built, Swap: time.Since(start) - built, Result: "serving"})
		if files, err = b.files(ctx); err != nil {
			return err
		}
		say("built and started in %s; watching %d files for changes", seconds(time.Since(start)), len(files))
	case b != nil && !errors.As(err, new(*stopError)):
		if files, _ = b.files(ctx); len(files) == 0 {
			return err
		}
		say("the first build failed; fix it and save, and kiln builds again:\n%s", err)
		report(Report{Start: start, Build: built, Result: "build failed", Err: err})
	default:
		return err
	}

	w, err := newWatcher(files, o.Ignore, o.Poll, func(msg string) { say("%s", msg) })
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go w.run(wctx, func(msg string) { say("%s", msg) })

	for {
		changed, b, err, took, ok := buildSettled(ctx, w.changes, o.Debounce, build)
		if !ok {
			return nil
		}
		what := "change " + describe(changed)
		r := Report{Start: time.Now().Add(-took), Change: describe(changed), Build: took, Result: "serving"}
		if err != nil {
			say("%s → build failed after %s; the last good build keeps serving:\n%s", what, seconds(took), strings.TrimRight(err.Error(), "\n"))
			r.Result, r.Err = "build failed", err
			report(r)
			rewatch(ctx, w, b, say)
			continue
		}
		t1 := time.Now()
		summary, err := b.Swap(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.Swap = time.Since(t1)
		rewatch(ctx, w, b, say)
		if err != nil {
			say("%s → build %s → swap failed after %s, rolled back; the last good build keeps serving:\n%s", what, seconds(took), seconds(r.Swap), strings.TrimRight(err.Error(), "\n"))
			r.Result, r.Err = "swap failed", err
			report(r)
			continue
		}
		if summary != "" {
			summary = " (" + summary + ")"
		}
		say("%s → build %s → swap %s → serving%s", what, seconds(took), seconds(r.Swap), summary)
		report(r)
	}
}

// Stop marks a build error that waiting for the next save cannot mend,
// such as an app the target cannot run: when the first build fails with
// it, Run returns it instead of waiting for a fix. Later builds that fail
// with it leave the last good build serving, as any failed build does.
func Stop(err error) error { return &stopError{err} }

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// files are the files b read.
func (b *Build) files(ctx context.Context) ([]string, error) {
	if b.List != nil {
		return b.List(ctx)
	}
	return b.Files, nil
}

// rewatch has w watch what b read, when b knows.
func rewatch(ctx context.Context, w *watcher, b *Build, say func(string, ...any)) {
	if b == nil {
		return
	}
	files, err := b.files(ctx)
	if err == nil && len(files) > 0 {
		err = w.watch(files)
	}
	if err != nil && ctx.Err() == nil {
		say("%s", err)
	}
}

// buildSettled waits for a change and starts building at once. A change
// within quiet of the last one cancels that build and starts another, so
// that a burst of saves gives one build, and the wait for quiet overlaps
// the compiler's work instead of coming before it. It returns once the
// sources have stayed unchanged for quiet and the build of that state has
// ended; changes after that wait for the next call. ok is false once ctx
// has ended.
func buildSettled(ctx context.Context, changes <-chan string, quiet time.Duration, build Builder) (paths []string, b *Build, err error, took time.Duration, ok bool) {
	add := func(p string) {
		if p != "" && !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	select {
	case <-ctx.Done():
		return nil, nil, nil, 0, false
	case p := <-changes:
		add(p)
	}
	type result struct {
		b    *Build
		err  error
		took time.Duration
	}
	for {
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan result, 1)
		go func() {
			t0 := time.Now()
			b, err := build(bctx)
			done <- result{b, err, time.Since(t0)}
		}()
		timer := time.NewTimer(quiet)
		var res *result
		settled, again := false, false
		for !settled && !again {
			select {
			case <-ctx.Done():
				cancel()
				if res == nil {
					<-done
				}
				timer.Stop()
				return nil, nil, nil, 0, false
			case p := <-changes:
				add(p)
				cancel()
				if res == nil {
					<-done
				}
				timer.Stop()
				again = true
			case r := <-done:
				res, done = &r, nil
			case <-timer.C:
				settled = true
			}
		}
		if again {
			continue
		}
		if res == nil {
			r := <-done
			res = &r
		}
		cancel()
		if ctx.Err() != nil {
			return nil, nil, nil, 0, false
		}
		return paths, res.b, res.err, res.took, true
	}
}

// describe names the changed files briefly, relative to the working
// directory when they are under it.
func describe(paths []string) string {
	if len(paths) == 0 {
		return "(events lost)"
	}
	name := paths[0]
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, name); err == nil && !strings.HasPrefix(rel, "..") {
			name = rel
		}
	}
	if len(paths) > 1 {
		name += " and " + strconv.Itoa(len(paths)-1) + " more"
	}
	return name
}

// seconds prints d as "0.41 s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
}
