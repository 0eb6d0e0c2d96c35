package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-dev/kiln/internal/runas"
)

// Backend names what assembles an image around the binary.
type Backend string

const (
	// OCI assembles images in process with go-containerregistry: no daemon.
	OCI Backend = "oci"
	// Docker runs a Docker engine's image build on a generated context.
	Docker Backend = "docker"
	// BuildKit solves an LLB graph with the engine's built-in BuildKit or
	// a buildkitd.
	BuildKit Backend = "buildkit"
)

// User is who the program runs as: the conventional unprivileged "nonroot"
// user, so that images pass restricted pod security without a user database.
const User = runas.User

// Options say how to build the images of a main package.
type Options struct {
	// Dir is where the package is resolved; "" means the current directory.
	Dir string
	// Overlay is a go build -overlay file (see CompileOptions.Overlay);
	// "" means none.
	Overlay string
	// Platforms to build for; none means the host's (HostPlatform).
	Platforms []Platform
	// Backend assembles the images; "" means OCI.
	Backend Backend
	// BuildKitAddr is a buildkitd address (unix:///run/buildkit/buildkitd.sock,
	// tcp://host:1234) for the BuildKit back-end; "" means the Docker
	// engine's built-in BuildKit.
	BuildKitAddr string
	// Base is the image to build on: a registry reference, or oci:DIR for
	// an OCI image layout. "" means scratch.
	Base string
	// Created is the images' creation time, and the time of every file in
	// their layers. Zero means the Unix epoch, for reproducible images.
	Created time.Time
	// Compression of the layers kiln makes: Uncompressed (the default)
	// suits local outputs, Gzip suits registries.
	Compression Compression
	// CacheDir keeps compiled binaries and compressed layers between
	// builds; "" means kiln's directory in the user cache directory.
	CacheDir string
	// Keychain finds registry credentials for the base image; nil means
	// authn.DefaultKeychain (the Docker config and credential helpers).
	Keychain authn.Keychain
	// Tags are build tags added to kiln_image (see CompileOptions.Tags).
	Tags []string
	// Progress receives progress lines; nil means none.
	Progress io.Writer
}

// DefaultCacheDir is where kiln keeps what it builds between runs:
// $KILN_CACHE, else kiln under the user's cache directory.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("KILN_CACHE"); d != "" {
		return d, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache directory: %w (set KILN_CACHE)", err)
	}
	return filepath.Join(dir, "kiln"), nil
}

// Result is what Build made.
type Result struct {
	// Name is the program's name: the binary's, at /Name in the image.
	Name string
	// ImportPath is the main package's.
	ImportPath string
	// Images has one image per platform, in the order asked for.
	Images []PlatformImage
	// Annotations are on every manifest and on the index.
	Annotations map[string]string
	// Created is the images' creation time.
	Created time.Time
}

// PlatformImage is one platform's image and the binary in it.
type PlatformImage struct {
	Platform Platform
	Image    v1.Image
	Binary   Binary
}

// Binary is a compiled program.
type Binary struct {
	// Path is the binary in kiln's cache.
	Path string
	// SHA256 is the hex digest of its content.
	SHA256 string
	Size   int64
	// Info is its build information: module graph and VCS stamp.
	Info *debug.BuildInfo
}

// Index is an OCI image index of every platform's image.
func (r *Result) Index() v1.ImageIndex {
	adds := make([]mutate.IndexAddendum, len(r.Images))
	for i, pi := range r.Images {
		p := pi.Platform
		adds[i] = mutate.IndexAddendum{Add: pi.Image, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
		}}
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	return mutate.Annotations(idx, r.Annotations).(v1.ImageIndex)
}

// Digest is the digest of what a single platform gives (an image) or of
// what several give (an index).
func (r *Result) Digest() (v1.Hash, error) {
	if len(r.Images) == 1 {
		return r.Images[0].Image.Digest()
	}
	return r.Index().Digest()
}

// Build compiles the main package pkg for each platform and assembles its
// images with the chosen back-end. Images on a registry base read the
// base's layers from the registry when they are written, so ctx must live
// until they are.
func Build(ctx context.Context, pkg string, o Options) (*Result, error) {
	if len(o.Platforms) == 0 {
		o.Platforms = []Platform{HostPlatform()}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Backend == "" {
		o.Backend = OCI
	}
	if o.Compression == "" {
		o.Compression = Uncompressed
	}
	if o.CacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		o.CacheDir = dir
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0)
	}
	o.Created = o.Created.UTC()
	progress := func(format string, args ...any) { fmt.Fprintf(o.Progress, "kiln build: "+format+"\n", args...) }

	if strings.HasPrefix(o.Base, "oci:") && o.Backend != OCI {
		return nil, fmt.Errorf("--base %s: an OCI layout base works with --builder oci only; the %s back-end pulls its base itself, so give a registry reference", o.Base, o.Backend)
	}
	be, err := newBackend(ctx, o, progress)
	if err != nil {
		return nil, err
	}
	defer be.Close()

	// Resolve the base first: an unreachable base fails before compiling.
	// The engine back-ends pull it themselves.
	var b *base
	if o.Base != "" && o.Backend == OCI {
		progress("resolving base image %s", o.Base)
		if b, err = resolveBase(ctx, o.Base, o.Keychain); err != nil {
			return nil, err
		}
	}

	absDir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	chk := newChecker(ctx, o.Dir, absDir, pkg, o.Platforms[0], o.CacheDir, OverlayEnv(o.Overlay))
	defer chk.close()

	res := &Result{Created: o.Created}
	for i, p := range o.Platforms {
		start := time.Now()
		progress("compiling %s for %s", pkg, p)
		bin := filepath.Join(o.CacheDir, "bin", cacheKey(absDir, pkg, p.String()), "program")
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			return nil, err
		}
		var binary Binary
		var layer *binaryLayer
		var working func()
		if i == 0 {
			working = chk.working
		}
		err := compileNotify(ctx, pkg, CompileOptions{Dir: o.Dir, Output: bin, Image: true, Env: p.goEnv(), Overlay: o.Overlay, Tags: o.Tags, Log: o.Progress}, working)
		if err == nil {
			binary, layer, err = loadBinary(bin, o.CacheDir, o.Created)
		}
		if i == 0 {
			if cerr := chk.verdict(err); cerr != nil {
				return nil, cerr // says more than a failed compile
			}
		}
		if err != nil {
			return nil, err
		}
		res.ImportPath = binary.Info.Path
		res.Name = programName(res.ImportPath)
		progress("compiled %s: %s, sha256:%.12s, in %s", p, mb(binary.Size), binary.SHA256, time.Since(start).Round(time.Millisecond))
		if i == 0 {
			res.Annotations = annotations(binary.Info, o.Created, b)
		}
		start = time.Now()
		img, err := be.image(ctx, &job{
			platform: p, name: res.Name, importPath: res.ImportPath, binPath: bin, layer: layer,
			created: o.Created, annotations: res.Annotations, base: b, baseRef: o.Base,
		})
		if err != nil {
			return nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		progress("image %s: %s (%s back-end, %s)", p, d, o.Backend, time.Since(start).Round(time.Millisecond))
		res.Images = append(res.Images, PlatformImage{Platform: p, Image: img, Binary: binary})
	}
	return res, nil
}

func mb(n int64) string { return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB" }

// cacheKey names a compiled binary's directory in the cache.
func cacheKey(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

// programName is the binary's name: the last element of the import path,
// skipping a major-version suffix (example.com/tool/v2 is "tool").
func programName(importPath string) string {
	name := path.Base(importPath)
	if regexp.MustCompile(`^v[0-9]+$`).MatchString(name) && path.Dir(importPath) != "." {
		name = path.Base(path.Dir(importPath))
	}
	return name
}

// SourceDateEpoch parses $SOURCE_DATE_EPOCH (seconds since 1970); "" means
// the epoch itself.
func SourceDateEpoch(s string) (time.Time, error) {
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%%ct)", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// annotations say where an image comes from: its source repository and
// revision (from the binary's VCS stamp), its creation time and its base.
func annotations(info *debug.BuildInfo, created time.Time, b *base) map[string]string {
	a := map[string]string{ocispec.AnnotationCreated: created.Format(time.RFC3339)}
	if src := sourceURL(info.Main.Path); src != "" {
		a[ocispec.AnnotationSource] = src
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			a[ocispec.AnnotationRevision] = s.Value
		}
	}
	if b != nil {
		a[ocispec.AnnotationBaseImageName] = b.ref
		if b.digest.Hex != "" {
			a[ocispec.AnnotationBaseImageDigest] = b.digest.String()
		}
	}
	return a
}

// sourceURL guesses a module's repository URL from its path: the first
// three elements on the big forges, the whole path elsewhere. A path whose
// first element is no host name gives none.
func sourceURL(mod string) string {
	elems := strings.Split(mod, "/")
	if !strings.Contains(elems[0], ".") {
		return ""
	}
	switch elems[0] {
	case "github.com", "gitlab.com", "bitbucket.org", "codeberg.org":
		if len(elems) > 3 {
			elems = elems[:3]
		}
	}
	return "https://" + strings.Join(elems, "/")
}

// job is one platform's image to make.
type job struct {
	platform    Platform
	name        string // the program: /name in the image
	importPath  string
	binPath     string
	layer       *binaryLayer // the binary as a layer
	created     time.Time
	annotations map[string]string
	base        *base  // the OCI back-end's resolved base; nil for scratch
	baseRef     string // the base as given, for the engine back-ends
}

// entrypoint is the program's path in the image.
func (j *job) entrypoint() string { return "/" + j.name }

// history is the record of kiln's layer.
func (j *job) history() v1.History {
	return v1.History{Created: v1.Time{Time: j.created}, CreatedBy: "kiln build " + j.importPath, Comment: "the program's static binary"}
}

// backend turns a binary into an image.
type backend interface {
	image(ctx context.Context, j *job) (v1.Image, error)
	Close() error
}

func newBackend(ctx context.Context, o Options, progress func(string, ...any)) (backend, error) {
	switch o.Backend {
	case OCI:
		return &ociBackend{compression: o.Compression, cacheDir: o.CacheDir}, nil
	case Docker:
		return newDockerBackend(ctx, o, progress)
	case BuildKit:
		return newBuildKitBackend(ctx, o)
	}
	return nil, fmt.Errorf("--builder %q: want oci (no daemon), docker or buildkit", o.Backend)
}

// ociBackend assembles images in process.
type ociBackend struct {
	compression Compression
	cacheDir    string
}

func (*ociBackend) Close() error { return nil }

func (b *ociBackend) image(_ context.Context, j *job) (v1.Image, error) {
	cf := &v1.ConfigFile{}
	var layers []v1.Layer
	if j.base != nil {
		bimg, err := j.base.forPlatform(j.platform)
		if err != nil {
			return nil, err
		}
		bcf, err := bimg.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("base image %s: %w", j.base.ref, err)
		}
		cf = bcf.DeepCopy()
		if layers, err = baseLayers(bimg); err != nil {
			return nil, fmt.Errorf("base image %s: %w", j.base.ref, err)
		}
	}
	l, err := encode(j.layer, b.compression, b.cacheDir)
	if err != nil {
		return nil, err
	}
	layers = append(layers, l)
	cf.History = append(cf.History, j.history())
	cf.Config.User = User
	cf.Config.Entrypoint = []string{j.entrypoint()}
	cf.Config.Cmd = nil
	return finish(layers, cf, j)
}

// finish makes the image from its layers and config: kiln's platform,
// creation time, labels and annotations, and OCI media types throughout.
func finish(layers []v1.Layer, cf *v1.ConfigFile, j *job) (v1.Image, error) {
	cf.OS, cf.Architecture, cf.Variant = j.platform.OS, j.platform.Arch, j.platform.Variant
	cf.Created = v1.Time{Time: j.created}
	cf.Container, cf.DockerVersion = "", ""
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	// Labels repeat the annotations: `docker load` keeps labels but drops
	// manifest annotations.
	for k, v := range j.annotations {
		cf.Config.Labels[k] = v
	}
	cf.RootFS = v1.RootFS{Type: "layers"}
	for _, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, d)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	return mutate.Annotations(img, j.annotations).(v1.Image), nil
}

// normalize rebuilds an image an engine made so that it is reproducible:
// the engine stamps the build time and its build container into the
// config, and labels a FROM scratch image with its own architecture.
// Layers and everything else stay the engine's.
func normalize(img v1.Image, j *job, c Compression, cacheDir string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	// The legacy builder records each step's parent, an image whose ID
	// depends on the build time.
	cf.Config.Image = ""
	for i := range cf.History {
		cf.History[i].Created = v1.Time{Time: j.created}
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	layers := make([]v1.Layer, len(ls))
	for i, l := range ls {
		if layers[i], err = encode(l, c, cacheDir); err != nil {
			return nil, err
		}
	}
	return finish(layers, cf, j)
}
