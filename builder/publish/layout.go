package publish

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// containerdName is the annotation containerd and nerdctl read an image's
// full name from when importing a layout.
const containerdName = "io.containerd.image.name"

// layout writes the image into the OCI image layout dir under its tag
// (the org.opencontainers.image.ref.name annotation), replacing an older
// image of that tag and dropping blobs nothing refers to any more.
func (p *publisher) layout(dir string) (unchanged bool, err error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		if entries, rerr := os.ReadDir(dir); rerr == nil && len(entries) > 0 {
			return false, fmt.Errorf("--output oci:%s: the directory exists and is not an OCI image layout (it has no index.json): give a new or empty directory", dir)
		}
		if lp, err = layout.Write(dir, empty.Index); err != nil {
			return false, fmt.Errorf("--output oci:%s: %w", dir, err)
		}
	} else if has, err := p.hasDigest(lp, p.o.Tag, p.digest); err != nil {
		return false, fmt.Errorf("--output oci:%s: %w", dir, err)
	} else if has {
		p.progress("OCI layout %s already holds %s: unchanged", dir, p.digest)
		return true, nil
	}
	anns := layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: p.o.Tag, containerdName: p.tag.String()})
	mine := match.Annotation(ocispec.AnnotationRefName, p.o.Tag)
	if len(p.res.Images) == 1 {
		err = lp.ReplaceImage(p.res.Images[0].Image, mine, anns)
	} else {
		err = lp.ReplaceIndex(p.res.Index(), mine, anns)
	}
	if err != nil {
		return false, fmt.Errorf("writing the OCI layout %s: %w", dir, err)
	}
	unused, err := lp.GarbageCollect()
	if err != nil {
		return false, err
	}
	for _, h := range unused {
		if err := lp.RemoveBlob(h); err != nil {
			return false, err
		}
	}
	p.progress("wrote OCI layout %s", dir)
	return false, nil
}

// hasDigest reports whether lp's index lists digest under tag and holds
// every blob of it.
func (p *publisher) hasDigest(lp layout.Path, tag string, digest v1.Hash) (bool, error) {
	idx, err := lp.ImageIndex()
	if err != nil {
		return false, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return false, err
	}
	for _, d := range m.Manifests {
		if d.Digest != digest || d.Annotations[ocispec.AnnotationRefName] != tag {
			continue
		}
		blobs, err := p.blobs()
		if err != nil {
			return false, err
		}
		for _, h := range blobs {
			_, err := os.Stat(filepath.Join(string(lp), "blobs", h.Algorithm, h.Hex))
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			} else if err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return false, nil
}

// blobs are the digests of everything the images are made of: the index,
// manifests, configs and layers.
func (p *publisher) blobs() ([]v1.Hash, error) {
	out := []v1.Hash{p.digest}
	for _, pi := range p.res.Images {
		for _, f := range []func() (v1.Hash, error){pi.Image.Digest, pi.Image.ConfigName} {
			h, err := f()
			if err != nil {
				return nil, err
			}
			out = append(out, h)
		}
		ls, err := pi.Image.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			h, err := l.Digest()
			if err != nil {
				return nil, err
			}
			out = append(out, h)
		}
	}
	return out, nil
}
