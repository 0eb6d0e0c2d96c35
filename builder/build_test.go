package builder_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// cache is shared by the tests that do not test caching, so that each
// example is linked once per platform.
var cache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-builder-test-")
	if err != nil {
		panic(err)
	}
	cache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logWriter sends progress lines to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func root(t testing.TB) string {
	t.Helper()
	r, err := testbin.Root()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func build(t testing.TB, pkg string, o builder.Options) *builder.Result {
	t.Helper()
	res, err := tryBuild(t, pkg, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func tryBuild(t testing.TB, pkg string, o builder.Options) (*builder.Result, error) {
	t.Helper()
	if o.Dir == "" {
		o.Dir = root(t)
	}
	if o.CacheDir == "" {
		o.CacheDir = cache
	}
	o.Progress = logWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return builder.Build(ctx, pkg, o)
}

func digest(t testing.TB, res *builder.Result) v1.Hash {
	t.Helper()
	d, err := res.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestReproducible builds the same source twice, each time linking afresh
// into its own cache, and gets the same digest; a different
// SOURCE_DATE_EPOCH gives another digest, just as reproducible.
func TestReproducible(t *testing.T) {
	a := build(t, "./examples/hello", builder.Options{CacheDir: t.TempDir()})
	b := build(t, "./examples/hello", builder.Options{CacheDir: t.TempDir()})
	if da, db := digest(t, a), digest(t, b); da != db {
		t.Fatalf("two builds of the same source: %s and %s", da, db)
	}
	if a.Images[0].Binary.SHA256 != b.Images[0].Binary.SHA256 {
		t.Fatal("the binaries differ")
	}
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	c := build(t, "./examples/hello", builder.Options{Created: at})
	d := build(t, "./examples/hello", builder.Options{Created: at})
	if digest(t, c) != digest(t, d) || digest(t, c) == digest(t, a) {
		t.Fatalf("with SOURCE_DATE_EPOCH: %s and %s (epoch: %s)", digest(t, c), digest(t, d), digest(t, a))
	}
	if got := c.Annotations[ocispec.AnnotationCreated]; got != "2024-05-01T12:00:00Z" {
		t.Fatalf("created annotation %q", got)
	}
}

// TestImage checks what is in an image: one layer holding the binary
// alone, the config kiln promises, OCI media types and the annotations.
func TestImage(t *testing.T) {
	res := build(t, "./examples/kv", builder.Options{})
	if res.Name != "kv" || res.ImportPath != "github.com/kiln-dev/kiln/examples/kv" || len(res.Images) != 1 {
		t.Fatalf("result %+v", res)
	}
	pi := res.Images[0]
	img := pi.Image
	if pi.Platform != builder.HostPlatform() {
		t.Fatalf("platform %s, want the host's %s", pi.Platform, builder.HostPlatform())
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/kv" || cf.Config.Cmd != nil ||
		cf.OS != "linux" || cf.Architecture != pi.Platform.Arch || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Fatalf("config %+v", cf)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCIUncompressedLayer {
		t.Fatalf("manifest %+v", m)
	}
	want := map[string]string{
		ocispec.AnnotationCreated: "1970-01-01T00:00:00Z",
		ocispec.AnnotationSource:  "https://github.com/kiln-dev/kiln",
	}
	for _, s := range pi.Binary.Info.Settings {
		if s.Key == "vcs.revision" {
			want[ocispec.AnnotationRevision] = s.Value
		}
	}
	if _, ok := want[ocispec.AnnotationRevision]; !ok {
		t.Log("the binary has no VCS stamp (not built from a git checkout?): no revision annotation to check")
	}
	for k, v := range want {
		if m.Annotations[k] != v || cf.Config.Labels[k] != v {
			t.Errorf("%s: annotation %q, label %q, want %q", k, m.Annotations[k], cf.Config.Labels[k], v)
		}
	}
	if len(m.Annotations) != len(want) {
		t.Errorf("annotations %v, want %v", m.Annotations, want)
	}

	// The layer: /kv alone, root's, 0755, dated like the image.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	io.Copy(sum, tr)
	if h.Name != "kv" || h.Mode != 0o755 || h.Uid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) || hex.EncodeToString(sum.Sum(nil)) != pi.Binary.SHA256 {
		t.Fatalf("layer entry %+v", h)
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("the layer holds more than the binary: %v", err)
	}
	// The image is the binary plus a tar header and padding.
	size, _ := layers[0].Size()
	if float64(size) > 1.01*float64(pi.Binary.Size) {
		t.Fatalf("layer %d bytes for a %d-byte binary", size, pi.Binary.Size)
	}
}

// TestIndex builds for two platforms: an index whose manifests name the
// right platforms, holding images of binaries for those machines.
func TestIndex(t *testing.T) {
	plats, err := builder.ParsePlatforms("linux/amd64,linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	res := build(t, "./examples/hello", builder.Options{Platforms: plats})
	idx := res.Index()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 || digest(t, res) != must(idx.Digest()) {
		t.Fatalf("index %+v", im)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for i, d := range im.Manifests {
		arch := plats[i].Arch
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != arch {
			t.Fatalf("manifest %d: platform %+v, want linux/%s", i, d.Platform, arch)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil || cf.Architecture != arch || cf.OS != "linux" {
			t.Fatalf("image %d: config %+v, %v", i, cf, err)
		}
		f, err := elf.Open(res.Images[i].Binary.Path)
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machines[arch] {
			t.Errorf("the %s binary is for %s", arch, f.Machine)
		}
		f.Close()
	}
}

// TestImageBinaryIsNotDriver runs the binary an image holds without a
// role: it leaves the driver out, so it refuses in one line, with status 2.
func TestImageBinaryIsNotDriver(t *testing.T) {
	res := build(t, "./examples/hello", builder.Options{})
	cmd := exec.Command(res.Images[0].Binary.Path)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "serves roles only") || stdout.Len() != 0 {
		t.Fatalf("stdout %q, stderr %q: want one line saying it serves roles only", stdout.String(), stderr.String())
	}
}

// TestBase builds kv on top of the hello image, taken from an OCI layout.
func TestBase(t *testing.T) {
	hello := build(t, "./examples/hello", builder.Options{})
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(hello.Images[0].Image); err != nil {
		t.Fatal(err)
	}
	kv := build(t, "./examples/kv", builder.Options{Base: "oci:" + dir})
	img := kv.Images[0].Image
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	hm, _ := hello.Images[0].Image.Manifest()
	if len(m.Layers) != 2 || m.Layers[0].Digest != hm.Layers[0].Digest {
		t.Fatalf("layers %+v, want hello's then kv's", m.Layers)
	}
	if m.Annotations[ocispec.AnnotationBaseImageName] != "oci:"+dir || m.Annotations[ocispec.AnnotationBaseImageDigest] != digest(t, hello).String() {
		t.Fatalf("annotations %v", m.Annotations)
	}
	cf, _ := img.ConfigFile()
	if strings.Join(cf.Config.Entrypoint, " ") != "/kv" || len(cf.History) != 2 || len(cf.RootFS.DiffIDs) != 2 {
		t.Fatalf("config %+v", cf)
	}
	// The base has no arm64 image.
	_, err = tryBuild(t, "./examples/kv", builder.Options{Base: "oci:" + dir, Platforms: []builder.Platform{{OS: "linux", Arch: "arm64"}}})
	if err == nil || !strings.Contains(err.Error(), "not linux/arm64") {
		t.Fatalf("got %v, want an error about the base's platform", err)
	}
}

// TestErrors gives bad input and wants errors that name the problem and
// the fix.
func TestErrors(t *testing.T) {
	cgo := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":           "module example.com/cgoprog\n\ngo 1.24\n",
		"main.go":          "package main\n\nimport \"example.com/cgoprog/native\"\n\nfunc main() { native.F() }\n",
		"native/native.go": "package native\n\n// int one(void) { return 1; }\nimport \"C\"\n\nfunc F() { C.one() }\n",
	} {
		os.MkdirAll(filepath.Join(cgo, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(cgo, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	broken := t.TempDir()
	os.WriteFile(filepath.Join(broken, "go.mod"), []byte("module example.com/broken\n\ngo 1.24\n"), 0o644)
	os.WriteFile(filepath.Join(broken, "main.go"), []byte("package main\n\nfunc main() { nope() }\n"), 0o644)
	for _, tc := range []struct {
		name, pkg string
		o         builder.Options
		want      []string
	}{
		{"does not compile", ".", builder.Options{Dir: broken}, []string{"go build . failed:\n# example.com/broken\n./main.go:3:15: undefined: nope"}},
		{"not a package", "./no/such/dir", builder.Options{}, []string{"./no/such/dir is not a Go package that builds", "give the directory of a main package"}},
		{"not main", "./spec", builder.Options{}, []string{"./spec is package spec, not a main package", "point kiln at the directory whose main() calls sdk.Run"}},
		{"needs cgo", ".", builder.Options{Dir: cgo}, []string{`example.com/cgoprog needs cgo: package example.com/cgoprog/native imports "C" (in native.go)`, "use pure-Go replacements"}},
		{"unreachable base", "./examples/hello", builder.Options{Base: "127.0.0.1:1/nothing:latest"}, []string{"base image 127.0.0.1:1/nothing:latest is unreachable", "leave out --base to build FROM scratch"}},
		{"missing layout base", "./examples/hello", builder.Options{Base: "oci:/no/such/layout"}, []string{"base image oci:/no/such/layout is unreachable"}},
		{"bad base", "./examples/hello", builder.Options{Base: "Not A Ref"}, []string{"is not an image reference"}},
		{"layout base, engine back-end", "./examples/hello", builder.Options{Base: "oci:/x", Backend: builder.Docker}, []string{"works with --builder oci only"}},
		{"unknown back-end", "./examples/hello", builder.Options{Backend: "podman"}, []string{`--builder "podman": want oci (no daemon), docker or buildkit`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := tryBuild(t, tc.pkg, tc.o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
			t.Logf("%s in %s", err, time.Since(start).Round(time.Millisecond))
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestBuildKitDaemon builds with a buildkitd of its own (not the Docker
// engine's), which exports an OCI tarball: the image holds the binary and
// is as reproducible as the others.
func TestBuildKitDaemon(t *testing.T) {
	addr := e2e.BuildKitd(t)
	o := builder.Options{Backend: builder.BuildKit, BuildKitAddr: addr}
	a := build(t, "./examples/hello", o)
	b := build(t, "./examples/hello", o)
	if digest(t, a) != digest(t, b) {
		t.Fatalf("two builds: %s and %s", digest(t, a), digest(t, b))
	}
	img := a.Images[0].Image
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != builder.User || strings.Join(cf.Config.Entrypoint, " ") != "/hello" || len(cf.RootFS.DiffIDs) != 1 {
		t.Fatalf("config %+v", cf)
	}
	layers, _ := img.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no /hello in the layer: %v", err)
		}
		if strings.TrimPrefix(h.Name, "/") == "hello" {
			sum := sha256.New()
			io.Copy(sum, tr)
			if hex.EncodeToString(sum.Sum(nil)) != a.Images[0].Binary.SHA256 {
				t.Fatal("the layer's /hello is not the binary")
			}
			return
		}
	}
}

// TestCgoAfterCache builds a module, then adds a cgo file to a package it
// imports: the binary would not change (CGO_ENABLED=0 leaves the file out),
// but the check that kiln skips for unchanged imports must run again.
func TestCgoAfterCache(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":     "module example.com/m\n\ngo 1.24\n",
		"main.go":    "package main\n\nimport \"example.com/m/sub\"\n\nfunc main() { sub.F() }\n",
		"sub/sub.go": "package sub\n\nfunc F() {}\n",
	}
	write := func() {
		for name, text := range files {
			os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write()
	o := builder.Options{Dir: dir, CacheDir: t.TempDir()}
	build(t, ".", o)
	files["main.go"] = "package main\n\nimport \"example.com/m/sub\"\n\nfunc main() { sub.F(); sub.F() }\n"
	write()
	build(t, ".", o)
	files["sub/native.go"] = "package sub\n\n// int one(void) { return 1; }\nimport \"C\"\n\nfunc one() int { return int(C.one()) }\n"
	write()
	_, err := tryBuild(t, ".", o)
	if err == nil || !strings.Contains(err.Error(), "needs cgo: package example.com/m/sub imports \"C\" (in native.go)") {
		t.Fatalf("got %v, want the cgo error", err)
	}
}

// TestNoVCS builds with a git that fails, as git does in a repository that
// belongs to another user: the image is built without a revision.
func TestNoVCS(t *testing.T) {
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "git"), []byte("#!/bin/sh\necho 'fatal: detected dubious ownership' >&2\nexit 128\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", fake+string(os.PathListSeparator)+os.Getenv("PATH"))
	res := build(t, "./examples/hello", builder.Options{CacheDir: t.TempDir()})
	if _, ok := res.Annotations[ocispec.AnnotationRevision]; ok {
		t.Fatalf("annotations %v: a revision without git", res.Annotations)
	}
	if res.Annotations[ocispec.AnnotationSource] != "https://github.com/kiln-dev/kiln" {
		t.Fatalf("annotations %v", res.Annotations)
	}
}
