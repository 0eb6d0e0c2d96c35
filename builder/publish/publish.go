// Package publish writes the images that package builder made: into an OCI
// image layout, a tarball that `docker load` reads, a Docker engine, or a
// registry. Each output also gets the images' SBOMs: pushed as OCI referrers
// to a registry, written beside a layout or tarball.
//
// Writing what is already there is a no-op: the output is checked by digest
// first.
package publish

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/sbom"
)

// Kind is a kind of output.
type Kind string

const (
	Layout   Kind = "oci"      // an OCI image layout directory
	Tarball  Kind = "tar"      // a docker-load tarball that is also an OCI layout
	Engine   Kind = "docker"   // the local Docker engine
	Registry Kind = "registry" // a registry, with --repo
)

// Target is where images go.
type Target struct {
	Kind Kind
	Path string // the directory or file of Layout and Tarball
}

func (t Target) String() string {
	if t.Path != "" {
		return string(t.Kind) + ":" + t.Path
	}
	return string(t.Kind)
}

// ParseTarget parses --output: oci:DIR, tar:FILE, docker or registry.
func ParseTarget(s string) (Target, error) {
	kind, path, _ := strings.Cut(s, ":")
	t := Target{Kind: Kind(kind), Path: path}
	switch t.Kind {
	case Layout, Tarball:
		if path == "" {
			return Target{}, fmt.Errorf("--output %s: name the %s, e.g. --output %s:%s", s, map[Kind]string{Layout: "directory", Tarball: "file"}[t.Kind], kind, map[Kind]string{Layout: "out/image", Tarball: "image.tar"}[t.Kind])
		}
		return t, nil
	case Engine, Registry:
		if path != "" {
			return Target{}, fmt.Errorf("--output %s: %s takes no path (the registry comes from --repo)", s, kind)
		}
		return t, nil
	}
	return Target{}, fmt.Errorf("--output %q: want oci:DIR, tar:FILE, docker or registry", s)
}

// Options say how to name and publish the images.
type Options struct {
	// Repo is the image repository, e.g. ghcr.io/you/kv. It is required for
	// registries; elsewhere it defaults to kiln.local/NAME.
	Repo string
	// Tag defaults to latest.
	Tag string
	// SBOM, when set, is where the SBOM is written (with the platform
	// before .spdx.json when there are several). By default SBOMs go beside
	// a layout or tarball, and are only pushed to registries.
	SBOM string
	// Keychain finds registry credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
	// Progress receives progress lines; nil means none.
	Progress io.Writer
}

// Published says what Publish did.
type Published struct {
	// Ref is the image's reference with its digest: repo:tag@sha256:...
	Ref string
	// Digest is the image's (one platform) or index's (several) digest.
	Digest v1.Hash
	// Unchanged is set when the output already held the image.
	Unchanged bool
	// SBOMs are the files written.
	SBOMs []string
}

// Publish writes res to t.
func Publish(ctx context.Context, res *builder.Result, t Target, o Options) (*Published, error) {
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Tag == "" {
		o.Tag = "latest"
	}
	if o.Repo == "" {
		if t.Kind == Registry {
			return nil, fmt.Errorf("--output registry needs --repo: the repository to push to, e.g. --repo ghcr.io/you/%s", res.Name)
		}
		o.Repo = "kiln.local/" + strings.ToLower(res.Name)
	}
	tag, err := name.NewTag(o.Repo + ":" + o.Tag)
	if err != nil {
		return nil, fmt.Errorf("--repo %s --tag %s: not an image name: %w", o.Repo, o.Tag, err)
	}
	digest, err := res.Digest()
	if err != nil {
		return nil, err
	}
	p := &publisher{res: res, o: o, tag: tag, digest: digest}
	pub := &Published{Ref: tag.String() + "@" + digest.String(), Digest: digest}
	switch t.Kind {
	case Layout:
		pub.Unchanged, err = p.layout(t.Path)
	case Tarball:
		pub.Unchanged, err = p.tarball(t.Path)
	case Engine:
		// The engine gets one platform's image: its digest is the one to
		// print.
		var loaded v1.Hash
		if pub.Unchanged, loaded, err = p.engine(ctx); err == nil {
			pub.Ref, pub.Digest = tag.String()+"@"+loaded.String(), loaded
		}
	case Registry:
		pub.Unchanged, err = p.registry(ctx)
	default:
		err = fmt.Errorf("unknown output %q", t)
	}
	if err != nil {
		return nil, err
	}
	sbomPath := o.SBOM
	if sbomPath == "" && (t.Kind == Layout || t.Kind == Tarball) {
		sbomPath = strings.TrimSuffix(filepath.Clean(t.Path), ".tar") + ".spdx.json"
	}
	if sbomPath != "" {
		if pub.SBOMs, err = p.writeSBOMs(sbomPath); err != nil {
			return nil, err
		}
	}
	return pub, nil
}

type publisher struct {
	res    *builder.Result
	o      Options
	tag    name.Tag
	digest v1.Hash
}

func (p *publisher) progress(format string, args ...any) {
	fmt.Fprintf(p.o.Progress, "kiln build: "+format+"\n", args...)
}

// artifact is what a single platform gives (an image) or several give (an
// index).
func (p *publisher) artifact() partial.Describable {
	if len(p.res.Images) == 1 {
		return p.res.Images[0].Image
	}
	return p.res.Index()
}

// sbomDoc is the SPDX document of one platform's binary.
func (p *publisher) sbomDoc(pi builder.PlatformImage) ([]byte, error) {
	return sbom.SPDX(sbom.Binary{Name: p.res.Name, Platform: pi.Platform.String(), SHA256: pi.Binary.SHA256, Info: pi.Binary.Info}, p.res.Created)
}

// sbomFile names one platform's SBOM file: path itself for one platform,
// path with the platform before .spdx.json for several.
func (p *publisher) sbomFile(path string, pl builder.Platform) string {
	if len(p.res.Images) == 1 {
		return path
	}
	base := strings.TrimSuffix(strings.TrimSuffix(path, ".json"), ".spdx")
	return base + "." + strings.ReplaceAll(pl.String(), "/", "-") + ".spdx.json"
}

func (p *publisher) writeSBOMs(path string) ([]string, error) {
	var files []string
	for _, pi := range p.res.Images {
		doc, err := p.sbomDoc(pi)
		if err != nil {
			return nil, err
		}
		f := p.sbomFile(path, pi.Platform)
		if old, err := os.ReadFile(f); err == nil && string(old) == string(doc) {
			files = append(files, f)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(f, doc, 0o644); err != nil {
			return nil, fmt.Errorf("writing the SBOM: %w", err)
		}
		p.progress("wrote SBOM %s", f)
		files = append(files, f)
	}
	return files, nil
}
