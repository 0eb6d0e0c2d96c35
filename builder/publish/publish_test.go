package publish_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/builder/sbom"
	"github.com/kiln-dev/kiln/internal/testbin"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var cache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-publish-test-")
	if err != nil {
		panic(err)
	}
	cache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func build(t *testing.T, pkg string, o builder.Options) *builder.Result {
	t.Helper()
	root, err := testbin.Root()
	if err != nil {
		t.Fatal(err)
	}
	o.Dir, o.CacheDir, o.Progress = root, cache, logWriter{t}
	// The test's context, not one canceled on return: images on a registry
	// base read its layers when they are written.
	res, err := builder.Build(t.Context(), pkg, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func publishTo(t testing.TB, res *builder.Result, target string, o publish.Options) *publish.Published {
	t.Helper()
	tg, err := publish.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	o.Progress = logWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pub, err := publish.Publish(ctx, res, tg, o)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func platforms(t testing.TB, s string) []builder.Platform {
	t.Helper()
	p, err := builder.ParsePlatforms(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want publish.Target
		err  string
	}{
		{"oci:out/kv", publish.Target{Kind: publish.Layout, Path: "out/kv"}, ""},
		{"tar:kv.tar", publish.Target{Kind: publish.Tarball, Path: "kv.tar"}, ""},
		{"docker", publish.Target{Kind: publish.Engine}, ""},
		{"registry", publish.Target{Kind: publish.Registry}, ""},
		{"oci:", publish.Target{}, "name the directory, e.g. --output oci:out/image"},
		{"tar", publish.Target{}, "name the file, e.g. --output tar:image.tar"},
		{"docker:x", publish.Target{}, "docker takes no path"},
		{"zip:x", publish.Target{}, "want oci:DIR, tar:FILE, docker or registry"},
	} {
		got, err := publish.ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: got %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestLayout writes an OCI layout, finds a second write a no-op, and
// replaces the tag's image when it changes, dropping the old blobs.
func TestLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hello")
	res := build(t, "./examples/hello", builder.Options{})
	pub := publishTo(t, res, "oci:"+dir, publish.Options{})
	if pub.Unchanged || !strings.HasPrefix(pub.Ref, "kiln.local/hello:latest@sha256:") {
		t.Fatalf("first write: %+v", pub)
	}
	if again := publishTo(t, res, "oci:"+dir, publish.Options{}); !again.Unchanged || again.Ref != pub.Ref {
		t.Fatalf("second write: %+v, want unchanged %s", again, pub.Ref)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != pub.Digest || m.Manifests[0].Annotations[ocispec.AnnotationRefName] != "latest" {
		t.Fatalf("index.json %+v", m)
	}
	if _, err := os.Stat(dir + ".spdx.json"); err != nil {
		t.Fatalf("no SBOM beside the layout: %v", err)
	}
	// A lost layer is written again.
	layers, _ := res.Images[0].Image.Layers()
	ld, _ := layers[0].Digest()
	os.Remove(filepath.Join(dir, "blobs", "sha256", ld.Hex))
	if again := publishTo(t, res, "oci:"+dir, publish.Options{}); again.Unchanged {
		t.Fatal("a layout without its layer counted as unchanged")
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", ld.Hex)); err != nil {
		t.Fatalf("the layer was not written again: %v", err)
	}

	// A changed image under the same tag replaces the old one.
	changed := build(t, "./examples/hello", builder.Options{Created: time.Unix(1e9, 0)})
	pub2 := publishTo(t, changed, "oci:"+dir, publish.Options{})
	if pub2.Unchanged || pub2.Digest == pub.Digest {
		t.Fatalf("changed image: %+v", pub2)
	}
	blobs, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if len(blobs) != 3 { // manifest, config, layer
		t.Fatalf("%d blobs after replacing the image, want 3", len(blobs))
	}

	if err := os.WriteFile(filepath.Join(t.TempDir(), "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "notes.txt"), []byte("mine"), 0o644)
	tg, _ := publish.ParseTarget("oci:" + busy)
	if _, err := publish.Publish(context.Background(), res, tg, publish.Options{}); err == nil || !strings.Contains(err.Error(), "is not an OCI image layout") {
		t.Fatalf("writing into a non-layout directory: %v", err)
	}
}

// TestTarball writes a two-platform tarball: an OCI layout archive whose
// index is the image index, plus the manifest.json of docker load.
func TestTarball(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hello.tar")
	res := build(t, "./examples/hello", builder.Options{Platforms: platforms(t, "linux/amd64,linux/arm64")})
	pub := publishTo(t, res, "tar:"+file, publish.Options{Repo: "example.com/hello", Tag: "v1"})
	if again := publishTo(t, res, "tar:"+file, publish.Options{Repo: "example.com/hello", Tag: "v1"}); !again.Unchanged {
		t.Fatal("second write was not a no-op")
	}
	dir := t.TempDir()
	files := untar(t, file, dir)
	for _, f := range []string{"oci-layout", "index.json", "manifest.json"} {
		if !files[f] {
			t.Fatalf("the tarball lacks %s: %v", f, files)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != pub.Digest || m.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("index.json %+v, want the image index %s", m, pub.Digest)
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	b, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(b, &docker); err != nil {
		t.Fatal(err)
	}
	if len(docker) != 2 || strings.Join(docker[0].RepoTags, " ") != "example.com/hello:v1 example.com/hello:v1-linux-amd64" ||
		strings.Join(docker[1].RepoTags, " ") != "example.com/hello:v1-linux-arm64" {
		t.Fatalf("manifest.json %s", b)
	}
	for _, f := range append(docker[1].Layers, docker[0].Config) {
		if !files[f] {
			t.Errorf("manifest.json names %s, which the tarball lacks", f)
		}
	}
	for _, p := range []string{"linux-amd64", "linux-arm64"} {
		if _, err := os.Stat(strings.TrimSuffix(file, ".tar") + "." + p + ".spdx.json"); err != nil {
			t.Errorf("SBOM of %s: %v", p, err)
		}
	}
}

func untar(t *testing.T, file, dir string) map[string]bool {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		} else if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(path, 0o755)
			continue
		}
		files[h.Name] = true
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(out, tr)
		out.Close()
	}
}

// registryHost starts go-containerregistry's in-process registry, with the
// OCI referrers API.
func registryHost(t *testing.T) string {
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestRegistry pushes an image and an index, pulls them back with the same
// digests, and finds each platform's SBOM among its referrers.
func TestRegistry(t *testing.T) {
	host := registryHost(t)
	for _, tc := range []struct {
		name, platforms string
		compression     builder.Compression
		layer           types.MediaType
	}{
		{"image", "", builder.Gzip, types.OCILayer},
		{"index", "linux/amd64,linux/arm64", builder.Gzip, types.OCILayer},
		// What a library caller gets with the default options.
		{"uncompressed", "", builder.Uncompressed, types.OCIUncompressedLayer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := build(t, "./examples/hello", builder.Options{Platforms: platforms(t, tc.platforms), Compression: tc.compression})
			repo := host + "/kiln/hello-" + tc.name
			pub := publishTo(t, res, "registry", publish.Options{Repo: repo, Tag: "v1"})
			if pub.Ref != repo+":v1@"+pub.Digest.String() {
				t.Fatalf("ref %s", pub.Ref)
			}
			ref, err := name.ParseReference(repo + ":v1")
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Get(ref)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != pub.Digest {
				t.Fatalf("pulled %s, pushed %s", desc.Digest, pub.Digest)
			}
			for _, pi := range res.Images {
				want, _ := pi.Image.Digest()
				img, err := remote.Image(ref.Context().Digest(want.String()))
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := img.Digest(); got != want {
					t.Fatalf("pulled image %s, want %s", got, want)
				}
				m, _ := img.Manifest()
				if m.Layers[0].MediaType != tc.layer {
					t.Errorf("pushed layer is %s, want %s", m.Layers[0].MediaType, tc.layer)
				}
				checkSBOM(t, ref.Context(), want, pi.Platform)
			}
			if again := publishTo(t, res, "registry", publish.Options{Repo: repo, Tag: "v1"}); !again.Unchanged || again.Digest != pub.Digest {
				t.Fatalf("second push: %+v, want unchanged", again)
			}
		})
	}
	tg, _ := publish.ParseTarget("registry")
	res := build(t, "./examples/hello", builder.Options{})
	if _, err := publish.Publish(context.Background(), res, tg, publish.Options{}); err == nil || !strings.Contains(err.Error(), "needs --repo") {
		t.Fatalf("push without --repo: %v", err)
	}
}

func checkSBOM(t *testing.T, repo name.Repository, subject v1.Hash, p builder.Platform) {
	t.Helper()
	refs, err := remote.Referrers(repo.Digest(subject.String()))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := refs.IndexManifest()
	if len(m.Manifests) != 1 {
		t.Fatalf("referrers of %s: %+v, want one SBOM", subject, m.Manifests)
	}
	// The in-process registry lists a referrer's config media type as its
	// artifact type, so the manifest itself is checked.
	art, err := remote.Image(repo.Digest(m.Manifests[0].Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	am, err := art.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if am.ArtifactType != sbom.MediaType || am.Subject == nil || am.Subject.Digest != subject || am.Layers[0].MediaType != sbom.MediaType {
		t.Fatalf("SBOM manifest %+v", am)
	}
	layers, err := art.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("SBOM artifact layers %v, %v", layers, err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var doc struct {
		Name     string
		Packages []struct{ Name, VersionInfo string }
	}
	if err := json.NewDecoder(rc).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range doc.Packages {
		found = found || p.Name == "github.com/prometheus/client_golang" && p.VersionInfo != ""
	}
	if doc.Name != "hello "+p.String() || !found {
		t.Fatalf("SBOM %+v", doc)
	}
}
