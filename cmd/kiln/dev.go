package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/dashboard"
	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/dev"
	"github.com/kiln-dev/kiln/patterns"
)

func newDevCmd() *cobra.Command {
	var port int
	var target, repo string
	var poll, debounce, timeout time.Duration
	var board dashboard.Options
	var co kubernetes.ClientOptions
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

A build starts as soon as a file changes; one more change within
--debounce cancels it and starts another, so a burst of saves gives one
build. A build that fails prints the compiler's errors and leaves the last
good build serving; so does a new version that does not become ready in
time. An app with jobs is refused: run it with kiln run.

On the local target, dev serves the dashboard kiln run serves (see kiln
run --help), from the first build that starts; it also lists each build
with its phases and times, and shows the last compile error.

Editors' scratch files (vim's 4913 and .swp, *~, emacs's .#*, JetBrains'
___jb_tmp___) and .git never trigger a build. Where the system's file
events cannot be had (inotify limits, some shared file systems), dev says
so and polls; --poll forces polling.

With --target docker, each build's images are loaded into the Docker engine
and the app's changed pods are rolled over one at a time, backends before
their router. A pod whose program alone changed (its image or environment)
keeps its holder, and with it its socket, address and published port: the
new program container joins it, takes the same socket and says it serves
before the old one drains, so no connection is refused. Pods a build adds
(one more shard) start before their router is replaced and pods it drops
go after; a pod whose port or sidecars change is recreated. A new program
that exits or does not serve within 30 s is removed and the old one kept.
Ctrl-C removes the app's containers, network and volumes.

With --target kubernetes, each build's images are pushed to --repo and the
objects re-applied with the new digests (the cluster rolls the pods over),
waiting for the rollout; one that does not finish in --timeout re-applies
the last good build. Ctrl-C deletes the app from the cluster.`,
		Example: `  kiln dev ./examples/kv
  kiln dev ./examples/shop/kiln.hcl --port 8080
  kiln dev ./examples/kv --target kubernetes --repo registry.example/kv -n dev
  kiln dev ./examples/annotated/search --poll 1s`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPorts(port, board.Port); err != nil {
				return err
			}
			s := &devSession{arg: pkgArg(args), vars: varsOf(cmd)}
			var onBuild func(dev.Report)
			switch target {
			case "local":
				l, err := newLocalDev(port, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				l.board = board
				if !board.Off {
					l.builds = &dashboard.Builds{}
					onBuild = l.record
				}
				s.target = l
			case "docker":
				d, err := newDockerDev(cmd, port)
				if err != nil {
					return err
				}
				s.target = d
			case "kubernetes":
				if repo == "" {
					return fmt.Errorf("--target kubernetes: pass --repo REPO, where kiln pushes the images it builds")
				}
				k, err := newKubeDev(cmd, co, repo, timeout)
				if err != nil {
					return err
				}
				s.target = k
			default:
				return fmt.Errorf("--target %q: use local, docker or kubernetes", target)
			}
			defer s.target.stop()
			return dev.Run(cmd.Context(), s.build, dev.Options{Debounce: debounce, Poll: poll, Output: cmd.ErrOrStderr(), OnBuild: onBuild})
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "entry port of the first service on 127.0.0.1 (default: a free port)")
	dashboardFlags(cmd, &board)
	cmd.Flags().StringVar(&target, "target", "local", "where to run: local (processes), docker (containers on the Docker engine, changed pods rolled over one at a time) or kubernetes (images pushed to --repo, objects applied, each save re-applied with the new digests)")
	cmd.Flags().StringVar(&repo, "repo", "", "with --target kubernetes: the repository kiln pushes the images it builds to")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --target kubernetes: how long to wait for each rollout")
	kubeFlags(cmd, &co, "with --target kubernetes: ")
	cmd.Flags().DurationVar(&poll, "poll", 0, "look at the files at this interval instead of waiting for the system's file events")
	cmd.Flags().DurationVar(&debounce, "debounce", 100*time.Millisecond, "a change within this long of the last one cancels the build under way and starts another (a burst of saves gives one build)")
	return cmd
}

// devTarget is where kiln dev runs the app: prepare does the work of a
// build that belongs to the target (keeping binaries, building images) and
// returns what swaps the build in; stop ends the app.
type devTarget interface {
	prepare(ctx context.Context, pr *project, t *patterns.Topology) (func(context.Context) (string, error), error)
	stop()
}

// devSession is what kiln dev keeps between builds.
type devSession struct {
	arg    string
	vars   varFlags
	target devTarget
	// mainPkg is what go list said of arg at the last build, when it was
	// a main package.
	mainPkg *builder.Package
}

// build is dev's Builder: the project as it is now, compiled and checked,
// and the files it was built from. A main package's files are listed once
// the new code serves; an annotated package's or a descriptor's, which go
// list sees only through the overlays of this build, beside the compiler.
func (s *devSession) build(ctx context.Context) (*dev.Build, error) {
	var pr *project
	var err error
	if known := s.mainPkg; known != nil {
		// The last build found a main package here: compile it without
		// asking go list again. Should that fail, the full path below
		// tells a compile error from a package that changed kind.
		if pr, err = openMain(ctx, s.arg, known.ImportPath); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err() // a newer save cancelled it
			}
			s.mainPkg, pr = nil, nil
		}
	}
	if pr == nil {
		if pr, err = openProject(ctx, s.arg, s.vars); err != nil {
			return s.failed(ctx, nil, err)
		}
	}
	defer pr.close()
	for _, p := range pr.programs {
		if err := pr.prepare(ctx, p); err != nil {
			return s.failed(ctx, pr, err)
		}
	}
	b := &dev.Build{}
	if pr.file == nil && pr.programs[0].gen == nil {
		b.List = s.listMain
	} else {
		type listed struct {
			files []string
			err   error
		}
		early := make(chan listed, 1)
		go func() {
			f, err := sources(ctx, pr)
			early <- listed{f, err}
		}()
		defer func() {
			l := <-early
			b.Files = l.files
		}()
	}
	if err := pr.compile(ctx); err != nil {
		return s.failed(ctx, pr, err)
	}
	t, err := patterns.Build(pr.app)
	if err != nil {
		return b, pr.fieldError(err)
	}
	if len(t.Jobs) > 0 {
		w := t.Jobs[0]
		return b, dev.Stop(fmt.Errorf("service %q is a job: kiln dev swaps serving services and does not run jobs yet; run the app with kiln run, or kiln deploy", w.Service))
	}
	if b.Swap, err = s.target.prepare(ctx, pr, t); err != nil {
		return b, err
	}
	return b, nil
}

// listMain lists the files of arg, a main package, and remembers whether
// it still is one.
func (s *devSession) listMain(ctx context.Context) ([]string, error) {
	files, root, err := builder.Sources(ctx, ".", s.arg, "")
	if err != nil {
		return nil, err
	}
	s.mainPkg = nil
	if root != nil && root.Name == "main" {
		s.mainPkg = root
	}
	return files, nil
}

// localDev runs the app as local processes. It keeps each binary at a path
// named by its content, which Update compares: an unchanged program is
// not swapped.
type localDev struct {
	port     int
	out      io.Writer
	versions string // beside kiln's cache of binaries, to link them
	seed     maphash.Seed
	d        *local.Deployment
	board    dashboard.Options
	builds   *dashboard.Builds // nil without a dashboard
}

// record shows a build of the loop on the dashboard.
func (l *localDev) record(r dev.Report) {
	b := dashboard.Build{Time: r.Start, Change: r.Change, Result: r.Result,
		Phases: []dashboard.Phase{{Name: "build", Seconds: r.Build.Seconds()}}}
	if r.Swap > 0 {
		b.Phases = append(b.Phases, dashboard.Phase{Name: "swap", Seconds: r.Swap.Seconds()})
	}
	if r.Err != nil {
		b.Error = r.Err.Error()
	}
	l.builds.Add(b)
}

func newLocalDev(port int, out io.Writer) (*localDev, error) {
	cache, err := builder.DefaultCacheDir()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(cache, "dev")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	removeDeadSessions(root)
	dir, err := os.MkdirTemp(root, "session-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	return &localDev{port: port, out: out, versions: dir, seed: maphash.MakeSeed()}, nil
}

// removeDeadSessions removes the binaries kept by a kiln dev that was
// killed before it could: each session's directory names its pid.
func removeDeadSessions(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "session-%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // alive (or, after pid reuse, taken for alive)
		}
		os.RemoveAll(filepath.Join(root, e.Name()))
	}
}

func (l *localDev) stop() {
	if l.d != nil {
		l.d.Shutdown()
	}
	os.RemoveAll(l.versions)
}

func (l *localDev) prepare(ctx context.Context, pr *project, t *patterns.Topology) (func(context.Context) (string, error), error) {
	bins := map[string]string{}
	for svc, bin := range pr.binaries() {
		v, err := l.keep(bin)
		if err != nil {
			return nil, err
		}
		bins[svc] = v
	}
	return func(ctx context.Context) (string, error) { return l.swap(ctx, t, bins) }, nil
}

// failed is a failed build, with the files to wait on when they can be
// told: those of the project's programs, read without compiling them.
func (s *devSession) failed(ctx context.Context, pr *project, err error) (*dev.Build, error) {
	if p, ok := descriptorPath(s.arg); ok && (pr == nil || !pr.programs[0].prepared) {
		// A descriptor that does not parse: wait on it alone.
		abs, _ := filepath.Abs(p)
		return &dev.Build{Files: []string{abs}}, err
	}
	if pr == nil || (pr.file == nil && pr.programs[0].gen == nil) {
		return &dev.Build{List: s.listMain}, err
	}
	files, serr := sources(ctx, pr)
	if serr != nil {
		return nil, err
	}
	return &dev.Build{Files: files}, err
}

// sources lists every file pr's programs are built from, and its
// descriptor. The programs must be prepared.
func sources(ctx context.Context, pr *project) ([]string, error) {
	var files []string
	if pr.file != nil {
		files = append(files, pr.descriptor())
	}
	for _, p := range pr.programs {
		fs, _, err := builder.Sources(ctx, p.dir, p.pkg, p.overlay)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// descriptor is the absolute path of pr's kiln.hcl.
func (pr *project) descriptor() string {
	p, _ := descriptorPath(pr.arg)
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// keep links bin (or copies it, across file systems) to a path named by
// its content: the next go build replaces bin rather than writing into
// it, so the link keeps this build's bytes. maphash is enough to tell this
// session's builds apart, and costs a few milliseconds where sha256 cost
// tens.
func (l *localDev) keep(bin string) (string, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := maphash.Bytes(l.seed, b)
	out := filepath.Join(l.versions, strconv.FormatUint(sum, 16), filepath.Base(bin))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	if err := os.Link(bin, out); err == nil {
		return out, nil
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// swap starts the app the first time, and rolls it over after that.
func (l *localDev) swap(ctx context.Context, t *patterns.Topology, bins map[string]string) (string, error) {
	if l.d == nil {
		d, err := local.Start(ctx, t, local.Options{Binaries: bins, Port: l.port})
		if err != nil {
			return "", err
		}
		l.d = d
		for _, e := range d.Endpoints() {
			fmt.Fprintf(l.out, "kiln: %s serving at %s\n", e.Service, e.URL)
		}
		if !l.board.Off {
			// ctx is the loop's: the dashboard serves until Ctrl-C.
			if err := dashboard.Start(ctx, l.board.Port, &dashboard.Server{Source: d, Builds: l.builds}, l.out); err != nil {
				return "", err
			}
		}
		return "", nil
	}
	sw, err := l.d.Update(ctx, t, local.Options{Binaries: bins})
	l.prune(bins)
	if err != nil {
		return "", err
	}
	return summary("no process changed", swapPart{"replaced", sw.Replaced}, swapPart{"started", sw.Started}, swapPart{"stopped", sw.Stopped}), nil
}

// prune removes the kept binaries that nothing runs any more.
func (l *localDev) prune(bins map[string]string) {
	inUse := map[string]bool{}
	for _, b := range bins {
		inUse[filepath.Dir(b)] = true
	}
	for _, p := range l.d.Processes() {
		inUse[filepath.Dir(p.Binary)] = true
	}
	entries, _ := os.ReadDir(l.versions)
	for _, e := range entries {
		dir := filepath.Join(l.versions, e.Name())
		if !inUse[dir] {
			os.RemoveAll(dir)
		}
	}
}

// swapPart is one kind of change a swap made, and what it made it to.
type swapPart struct {
	verb  string // "replaced"
	names []string
}

// summary says what a swap did, in a few words ("replaced 2: kv/shard-0,
// kv/router-0; started 1: kv/shard-3"), or none when it did nothing.
func summary(none string, parts ...swapPart) string {
	var out []string
	for _, p := range parts {
		if len(p.names) > 0 {
			out = append(out, fmt.Sprintf("%s %d: %s", p.verb, len(p.names), strings.Join(p.names, ", ")))
		}
	}
	if len(out) == 0 {
		return none
	}
	return strings.Join(out, "; ")
}

// kubeDev deploys the app to a cluster: each build's images are pushed to
// repo and the objects re-applied with the new digests, waiting for the
// rollout. A rollout that does not finish re-applies the last good
// objects. Stopping deletes the app, as it was made for the session.
type kubeDev struct {
	cmd     *cobra.Command
	c       *kubernetes.Cluster
	repo    string
	timeout time.Duration
	app     string
	good    []metav1.Object // the objects of the last good build
}

func newKubeDev(cmd *cobra.Command, co kubernetes.ClientOptions, repo string, timeout time.Duration) (*kubeDev, error) {
	c, err := kubernetes.Connect(co, cmd.ErrOrStderr())
	if err != nil {
		return nil, err
	}
	return &kubeDev{cmd: cmd, c: c, repo: repo, timeout: timeout}, nil
}

func (k *kubeDev) prepare(ctx context.Context, pr *project, t *patterns.Topology) (func(context.Context) (string, error), error) {
	images, err := buildImages(k.cmd, pr, publish.Registry, k.repo, builder.OCI)
	if err != nil {
		return nil, err
	}
	objs, err := kubernetes.Render(pr.app, kubernetes.Options{Images: images})
	if err != nil {
		return nil, pr.fieldError(err)
	}
	app := pr.app.Name
	return func(ctx context.Context) (string, error) {
		if k.app == "" {
			k.app = app // stop deletes whatever the first apply made
		}
		res, err := k.c.Apply(ctx, app, objs)
		if err == nil {
			err = k.c.Wait(ctx, objs, k.timeout)
		}
		if err != nil {
			if k.good != nil && ctx.Err() == nil {
				if _, rerr := k.c.Apply(ctx, k.app, k.good); rerr != nil {
					return "", fmt.Errorf("%w; rolling back to the last good build failed too: %v", err, rerr)
				}
			}
			return "", err
		}
		first := k.good == nil
		k.good = objs
		if first {
			fmt.Fprintf(k.cmd.OutOrStdout(), "kiln: %s rolled out in namespace %s\n", app, k.c.Namespace)
			return "", nil
		}
		if len(res.Changed)+len(res.Pruned) == 0 {
			return "no object changed", nil
		}
		return fmt.Sprintf("rolled out in namespace %s: %d objects changed, %d pruned", k.c.Namespace, len(res.Changed), len(res.Pruned)), nil
	}, nil
}

func (k *kubeDev) stop() {
	if k.app == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deleted, err := k.c.Down(ctx, k.app)
	if err != nil {
		fmt.Fprintf(k.cmd.ErrOrStderr(), "kiln: deleting %s: %v\n", k.app, err)
		return
	}
	fmt.Fprintf(k.cmd.ErrOrStderr(), "kiln: %s deleted (%d objects)\n", k.app, len(deleted))
}
