package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/dev"
	"github.com/kiln-dev/kiln/patterns"
)

func newDevCmd() *cobra.Command {
	var port int
	var target string
	var poll, debounce time.Duration
	cmd := &cobra.Command{
		Use:   "dev [package | kiln.hcl]",
		Short: "Run an app and swap in each change as you save",
		Long: `dev runs an app as kiln run does, then watches every file it is built from:
the Go files of each main package and of every package it imports from the
same module, embedded files, go.mod, go.sum and kiln.hcl. On a save it
rebuilds, and rolls the running topology over to the new build service by
service, backends before their router: each new process starts on the
socket of the one it replaces and is ready before the old one drains, so
the entry port stays the same and no connection is refused. Only the
processes whose binary or spec changed are touched.

A build that fails prints the compiler's errors and leaves the last good
build serving; so does a new version that does not become ready in time.
Editors' scratch files (vim's 4913 and .swp, *~, emacs's .#*, JetBrains'
___jb_tmp___) and .git never trigger a build. Where the system's file
events cannot be had (inotify limits, some shared file systems), dev says
so and polls; --poll forces polling.`,
		Example: `  kiln dev ./examples/kv
  kiln dev ./examples/shop/kiln.hcl --port 8080
  kiln dev ./examples/annotated/search --poll 1s`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d: want a port number in 1–65535", port)
			}
			if target != "local" {
				return fmt.Errorf("--target %q: kiln dev runs on the local target (processes); use kiln run or kiln deploy for the others", target)
			}
			s, err := newDevSession(pkgArg(args), varsOf(cmd), port, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer s.close()
			err = dev.Run(cmd.Context(), s.build, dev.Options{Debounce: debounce, Poll: poll, Output: cmd.ErrOrStderr()})
			if s.d != nil {
				s.d.Shutdown()
			}
			return err
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "entry port of the first service on 127.0.0.1 (default: a free port)")
	cmd.Flags().StringVar(&target, "target", "local", "where to run: local (processes)")
	cmd.Flags().DurationVar(&poll, "poll", 0, "look at the files at this interval instead of waiting for the system's file events")
	cmd.Flags().DurationVar(&debounce, "debounce", 100*time.Millisecond, "how long the sources must stay unchanged before a build starts")
	return cmd
}

// devSession is what kiln dev keeps between builds: the running
// deployment, and the binaries it runs, each at a path named by its
// content, so that an unchanged program is not swapped.
type devSession struct {
	arg      string
	vars     varFlags
	port     int
	out      io.Writer
	versions string // directory of the binaries, by content
	d        *local.Deployment
}

func newDevSession(arg string, vars varFlags, port int, out io.Writer) (*devSession, error) {
	dir, err := os.MkdirTemp("", "kiln-dev-")
	if err != nil {
		return nil, err
	}
	return &devSession{arg: arg, vars: vars, port: port, out: out, versions: dir}, nil
}

func (s *devSession) close() { os.RemoveAll(s.versions) }

// build is dev's Builder for the local target.
func (s *devSession) build(ctx context.Context) (*dev.Build, error) {
	pr, err := openProject(ctx, s.arg, s.vars)
	if err != nil {
		return s.failed(ctx, nil, err)
	}
	defer pr.close()
	if err := pr.compile(ctx); err != nil {
		return s.failed(ctx, pr, err)
	}
	files, err := sources(ctx, pr)
	if err != nil {
		return nil, err
	}
	t, err := patterns.Build(pr.app)
	if err != nil {
		return &dev.Build{Files: files}, pr.fieldError(err)
	}
	bins := map[string]string{}
	for svc, bin := range pr.binaries() {
		v, err := s.keep(bin)
		if err != nil {
			return nil, err
		}
		bins[svc] = v
	}
	return &dev.Build{Files: files, Swap: func(ctx context.Context) (string, error) {
		return s.swap(ctx, t, bins)
	}}, nil
}

// failed is a failed build, with the files to wait on when they can be
// told: those of the project's programs, read without compiling them.
func (s *devSession) failed(ctx context.Context, pr *project, err error) (*dev.Build, error) {
	if pr == nil {
		if p, ok := descriptorPath(s.arg); ok {
			// A descriptor that does not parse: wait on it alone.
			abs, _ := filepath.Abs(p)
			return &dev.Build{Files: []string{abs}}, err
		}
		var perr error
		if pr, perr = openPackage(ctx, s.arg); perr != nil {
			return nil, err
		}
		defer pr.close()
	}
	files, serr := sources(ctx, pr)
	if serr != nil {
		return nil, err
	}
	return &dev.Build{Files: files}, err
}

// sources lists every file pr's programs are built from, and its
// descriptor.
func sources(ctx context.Context, pr *project) ([]string, error) {
	var files []string
	if pr.file != nil {
		if p, ok := descriptorPath(pr.arg); ok {
			abs, err := filepath.Abs(p)
			if err != nil {
				return nil, err
			}
			files = append(files, abs)
		}
	}
	for _, p := range pr.programs {
		if !p.prepared {
			if err := pr.prepare(ctx, p); err != nil {
				return nil, err
			}
		}
		fs, err := builder.Sources(ctx, p.dir, p.pkg, p.overlay)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// keep copies bin to a path named by its content, which Update compares.
func (s *devSession) keep(bin string) (string, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	out := filepath.Join(s.versions, hex.EncodeToString(sum[:8]), filepath.Base(bin))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// swap starts the app the first time, and rolls it over after that.
func (s *devSession) swap(ctx context.Context, t *patterns.Topology, bins map[string]string) (string, error) {
	if s.d == nil {
		d, err := local.Start(ctx, t, local.Options{Binaries: bins, Port: s.port})
		if err != nil {
			return "", err
		}
		s.d = d
		for _, e := range d.Endpoints() {
			fmt.Fprintf(s.out, "kiln: %s serving at %s\n", e.Service, e.URL)
		}
		return "", nil
	}
	sw, err := s.d.Update(ctx, t, local.Options{Binaries: bins})
	s.prune(bins)
	if err != nil {
		return "", err
	}
	return summary(sw), nil
}

// prune removes the kept binaries that nothing runs any more.
func (s *devSession) prune(bins map[string]string) {
	inUse := map[string]bool{}
	for _, b := range bins {
		inUse[filepath.Dir(b)] = true
	}
	for _, p := range s.d.Processes() {
		inUse[filepath.Dir(p.Binary)] = true
	}
	entries, _ := os.ReadDir(s.versions)
	for _, e := range entries {
		dir := filepath.Join(s.versions, e.Name())
		if !inUse[dir] {
			os.RemoveAll(dir)
		}
	}
}

// summary says what a swap did, in a few words.
func summary(sw local.Swap) string {
	if !sw.Changed() {
		return "no process changed"
	}
	var parts []string
	for _, p := range []struct {
		verb  string
		names []string
	}{{"replaced", sw.Replaced}, {"started", sw.Started}, {"stopped", sw.Stopped}} {
		if len(p.names) > 0 {
			parts = append(parts, fmt.Sprintf("%s %d: %s", p.verb, len(p.names), strings.Join(p.names, ", ")))
		}
	}
	return strings.Join(parts, "; ")
}
