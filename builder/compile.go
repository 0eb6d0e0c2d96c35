// Package builder turns a Go main package into a static binary, and the
// binary into images.
//
// Build compiles a package for each platform and assembles one image per
// platform with one of three back-ends: go-containerregistry in process (no
// daemon, the default), a Docker engine's image build, or BuildKit. Writing
// the result somewhere (an OCI layout, a tarball, an engine, a registry) is
// the job of package builder/publish.
package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kiln-dev/kiln/internal/child"
)

// Package is what `go list` says about a package kiln is asked to build.
type Package struct {
	ImportPath string
	Dir        string
	Name       string
	Module     *struct{ Path, Dir string }
	GoFiles    []string // the files this build uses: build constraints applied, no tests
	CgoFiles   []string
	Standard   bool
	DepOnly    bool
}

// Load resolves pkg (a path like ./examples/kv or an import path) relative
// to dir and checks that it is a main package.
func Load(ctx context.Context, dir, pkg string) (*Package, error) {
	p, _, err := list(ctx, dir, pkg, false, nil)
	return p, err
}

// List is Load for a package of any name.
func List(ctx context.Context, dir, pkg string) (*Package, error) {
	p, _, err := listAny(ctx, dir, pkg, false, nil)
	return p, err
}

// list runs go list on pkg, with its dependencies as an image build sees
// them when deps is set, and checks that pkg is a main package.
func list(ctx context.Context, dir, pkg string, deps bool, env []string) (*Package, []Package, error) {
	p, all, err := listAny(ctx, dir, pkg, deps, env)
	if err != nil {
		return nil, nil, err
	}
	if p.Name != "main" {
		return nil, nil, fmt.Errorf("%s is package %s, not a main package: point kiln at the directory whose main() calls sdk.Run", pkg, p.Name)
	}
	return p, all, nil
}

func listAny(ctx context.Context, dir, pkg string, deps bool, env []string) (*Package, []Package, error) {
	if pkg == "" {
		pkg = "."
	}
	// Only the fields Package holds: the full -json costs go list three
	// times as much.
	const fields = "-json=ImportPath,Dir,Name,Module,GoFiles,CgoFiles,Standard,DepOnly"
	args := []string{"list", fields}
	if deps {
		args = []string{"list", "-deps", "-tags", ImageTag, fields}
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "--", pkg)...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, nil, fmt.Errorf("%s is not a Go package that builds: %s\n(give the directory of a main package, e.g. ./examples/kv)", pkg, msg)
	}
	var all []Package
	for d := json.NewDecoder(&stdout); ; {
		var p Package
		if err := d.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("go list %s: %w", pkg, err)
		}
		all = append(all, p)
	}
	// -deps lists dependencies first; the package asked for comes last.
	i := slices.IndexFunc(all, func(p Package) bool { return !p.DepOnly })
	if i < 0 || slices.ContainsFunc(all[i+1:], func(p Package) bool { return !p.DepOnly }) {
		return nil, nil, fmt.Errorf("%s names %d packages: give kiln one main package", pkg, len(all)-countDeps(all))
	}
	p := all[i]
	return &p, all, nil
}

func countDeps(all []Package) int {
	n := 0
	for _, p := range all {
		if p.DepOnly {
			n++
		}
	}
	return n
}

// checkCgo refuses a package that needs cgo. Images run FROM scratch, so
// their binaries are built with CGO_ENABLED=0, which silently leaves cgo
// files out. The standard library has pure-Go fallbacks (net, os/user);
// other packages with cgo files are assumed to need them.
func checkCgo(pkg string, deps []Package) error {
	var uses []string
	for _, p := range deps {
		if len(p.CgoFiles) > 0 && !p.Standard {
			uses = append(uses, fmt.Sprintf("package %s imports \"C\" (in %s)", p.ImportPath, strings.Join(p.CgoFiles, ", ")))
		}
	}
	if len(uses) == 0 {
		return nil
	}
	return fmt.Errorf("%s needs cgo: %s, but images run FROM scratch, so kiln builds them with CGO_ENABLED=0\n(use pure-Go replacements for those packages, or give them pure-Go fallbacks behind a !cgo build constraint)",
		pkg, strings.Join(uses, "; "))
}

// CompileOptions say how to compile a main package.
type CompileOptions struct {
	// Dir is where pkg is resolved; "" means the current directory.
	Dir string
	// Output is the binary's path.
	Output string
	// Image builds a binary for an image: static, trimmed, stripped,
	// stamped with VCS information, and without the driver (build tag
	// kiln_image).
	Image bool
	// GOOS and GOARCH cross-compile; empty means the host's.
	GOOS, GOARCH string
	// Env is added to the go command's environment, e.g. GOARM=7.
	Env []string
	// Overlay is a go build -overlay file: source files added or replaced
	// without touching the tree, such as the main package kiln generates
	// for an annotated package. "" means none.
	Overlay string
	// Tags are build tags an image's binary is built with beside
	// kiln_image, such as KubeTag.
	Tags []string
	// Log receives go build's standard output and kiln's notes; nil means
	// os.Stderr.
	Log io.Writer
}

func (o CompileOptions) log() io.Writer {
	if o.Log == nil {
		return os.Stderr
	}
	return o.Log
}

// OverlayEnv is the go command environment that applies the overlay file
// path, beside the user's own GOFLAGS; none when path is "". Through
// GOFLAGS, go list sees the overlay as go build does.
func OverlayEnv(path string) []string {
	if path == "" {
		return nil
	}
	return []string{"GOFLAGS=" + strings.TrimSpace(os.Getenv("GOFLAGS")+" -overlay="+path)}
}

// ImageTag is the build tag that leaves the driver out of a binary.
const ImageTag = "kiln_image"

// KubeTag links into an image the Kubernetes back-end of sdk.Lock and
// sdk.Lead, which client-go makes some 28 MB large: images get it only
// when one of their services declares a lease.
const KubeTag = "kiln_kube"

// Compile builds pkg with the go command. Its build cache makes an
// unchanged package a near no-op, and when Output already holds the binary
// it would link, go build leaves the file alone.
func Compile(ctx context.Context, pkg string, o CompileOptions) error {
	return compileNotify(ctx, pkg, o, nil)
}

// compileNotify is Compile that calls working (when not nil) as soon as
// go build compiles a package or fails: that is, unless the build is a
// no-op.
func compileNotify(ctx context.Context, pkg string, o CompileOptions, working func()) error {
	err := compile(ctx, pkg, o, "auto", working)
	if err != nil && o.Image && strings.Contains(err.Error(), "error obtaining VCS status") {
		// git could not read the repository (for example, it belongs to
		// another user): build without VCS stamping rather than fail.
		fmt.Fprintf(o.log(), "kiln: building %s without VCS information (git failed); the image gets no revision annotation\n", pkg)
		err = compile(ctx, pkg, o, "false", working)
	}
	return err
}

func compile(ctx context.Context, pkg string, o CompileOptions, buildvcs string, working func()) error {
	args := []string{"build", "-o", o.Output}
	env := os.Environ()
	if o.Image {
		// -buildvcs on the command line beats GOFLAGS=-buildvcs=false: the
		// revision annotation comes from the binary's VCS stamp. No
		// -buildid=: the build ID is a content hash, so it is reproducible,
		// and go build needs it to see that Output is up to date.
		tags := strings.Join(append([]string{ImageTag}, o.Tags...), ",")
		args = append(args, "-trimpath", "-buildvcs="+buildvcs, "-tags", tags, "-ldflags", "-s -w")
		env = append(env, "CGO_ENABLED=0")
	}
	if working != nil {
		args = append(args, "-v") // names each package it compiles
	}
	if o.GOOS != "" {
		env = append(env, "GOOS="+o.GOOS)
	}
	if o.GOARCH != "" {
		env = append(env, "GOARCH="+o.GOARCH)
	}
	env = append(env, o.Env...)
	env = append(env, OverlayEnv(o.Overlay)...)
	args = append(args, "--", pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.Dir
	child.OwnGroup(cmd)
	cmd.Env = env
	stderr := &notifyBuffer{notify: working}
	cmd.Stdout, cmd.Stderr = o.log(), stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("go build %s failed:\n%s", pkg, stderr.errors())
	}
	return nil
}

// notifyBuffer keeps go build's stderr and calls notify on its first write.
type notifyBuffer struct {
	bytes.Buffer
	notify func()
}

func (b *notifyBuffer) Write(p []byte) (int, error) {
	if b.notify != nil {
		b.notify()
		b.notify = nil
	}
	return b.Buffer.Write(p)
}

// errors is the output without the package names -v adds: lines of one
// word, where errors always have a colon.
func (b *notifyBuffer) errors() string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if strings.ContainsAny(l, ": \t") || strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// WriteOverlay writes files, keyed by the path go build should see each
// at, under dir, and beside them the -overlay file that maps them there;
// it returns the overlay file's path, for CompileOptions.Overlay. The tree
// those paths name is not touched.
func WriteOverlay(dir string, files map[string][]byte) (string, error) {
	replace := map[string]string{}
	i := 0
	for _, at := range slices.Sorted(maps.Keys(files)) {
		i++
		real := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(at)))
		if err := os.WriteFile(real, files[at], 0o644); err != nil {
			return "", err
		}
		replace[at] = real
	}
	b, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "overlay.json")
	return path, os.WriteFile(path, b, 0o644)
}
