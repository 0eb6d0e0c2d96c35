package builder

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// base is a resolved --base: an image, or an index with one image per
// platform.
type base struct {
	ref    string  // as given
	digest v1.Hash // of what ref names
	image  v1.Image
	index  v1.ImageIndex
}

// resolveBase finds ref, an image reference in a registry or oci:DIR (an
// OCI image layout on disk).
func resolveBase(ctx context.Context, ref string, kc authn.Keychain) (*base, error) {
	unreachable := func(err error) error {
		return fmt.Errorf("base image %s is unreachable: %w\n(check the name, that its registry answers from this machine and that you are logged in to it (docker login), or leave out --base to build FROM scratch)", ref, err)
	}
	if dir, ok := strings.CutPrefix(ref, "oci:"); ok {
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			return nil, unreachable(err)
		}
		b := &base{ref: ref, index: idx}
		// A layout written by kiln holds one image or one index: use it
		// directly, so that its platforms are the base's platforms.
		if m, err := idx.IndexManifest(); err == nil && len(m.Manifests) == 1 {
			d := m.Manifests[0]
			b.digest = d.Digest
			switch {
			case d.MediaType.IsIndex():
				b.index, err = idx.ImageIndex(d.Digest)
			case d.MediaType.IsImage():
				b.index = nil
				b.image, err = idx.Image(d.Digest)
			}
			if err != nil {
				return nil, unreachable(err)
			}
		}
		return b, nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("--base %q is not an image reference like registry.example/repo:tag or oci:DIR: %w", ref, err)
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return nil, unreachable(err)
	}
	b := &base{ref: ref, digest: desc.Digest}
	if desc.MediaType.IsIndex() {
		b.index, err = desc.ImageIndex()
	} else {
		b.image, err = desc.Image()
	}
	if err != nil {
		return nil, unreachable(err)
	}
	return b, nil
}

// forPlatform is the base's image for p.
func (b *base) forPlatform(p Platform) (v1.Image, error) {
	if b.image != nil {
		cf, err := b.image.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("base image %s: %w", b.ref, err)
		}
		if got := (Platform{OS: cf.OS, Arch: cf.Architecture, Variant: cf.Variant}); !samePlatform(got, p) {
			return nil, fmt.Errorf("base image %s is %s, not %s: pick a base built for %s, or an index that has it", b.ref, got, p, p)
		}
		return b.image, nil
	}
	m, err := b.index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", b.ref, err)
	}
	var have []string
	for _, d := range m.Manifests {
		if !d.MediaType.IsImage() || d.Platform == nil {
			continue
		}
		got := Platform{OS: d.Platform.OS, Arch: d.Platform.Architecture, Variant: d.Platform.Variant}
		if samePlatform(got, p) {
			return b.index.Image(d.Digest)
		}
		have = append(have, got.String())
	}
	return nil, fmt.Errorf("base image %s has no %s image (it has %s): pick a base built for %s", b.ref, p, strings.Join(have, ", "), p)
}

// samePlatform compares platforms, treating a missing variant as a match:
// many images leave it out.
func samePlatform(a, b Platform) bool {
	return a.OS == b.OS && a.Arch == b.Arch && (a.Variant == "" || b.Variant == "" || a.Variant == b.Variant)
}

// baseLayers are base's layers with OCI media types.
func baseLayers(img v1.Image) ([]v1.Layer, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = ociTyped{l}
	}
	return out, nil
}
