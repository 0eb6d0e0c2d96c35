package publish

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-dev/kiln/builder"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarball writes file: an OCI image layout in a tar (oci-archive) that
// also carries the manifest.json `docker load` reads. The bytes depend on
// the images alone, so an unchanged file is left alone.
func (p *publisher) tarball(file string) (unchanged bool, err error) {
	h := sha256.New()
	if err := p.writeTar(h); err != nil {
		return false, err
	}
	want := h.Sum(nil)
	if f, err := os.Open(file); err == nil {
		h.Reset()
		_, err := io.Copy(h, f)
		f.Close()
		if err == nil && bytes.Equal(h.Sum(nil), want) {
			p.progress("tarball %s already holds %s: unchanged", file, p.digest)
			return true, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".tmp-")
	if err != nil {
		return false, fmt.Errorf("--output tar:%s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if err := p.writeTar(tmp); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return false, err
	}
	p.progress("wrote tarball %s (docker load -i %s)", file, file)
	return false, nil
}

// dockerManifest is one entry of the manifest.json of `docker save`.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// dockerTags are the tags each platform's image gets in the engine: a
// tag holds one platform, so with several each gets tag-os-arch, and the
// first also gets the tag itself.
func (p *publisher) dockerTags(i int, pl builder.Platform) []string {
	if len(p.res.Images) == 1 {
		return []string{p.tag.String()}
	}
	key := p.tag.Context().Tag(p.tag.TagStr() + "-" + platformKey(pl))
	if i == 0 {
		return []string{p.tag.String(), key.String()}
	}
	return []string{key.String()}
}

func platformKey(pl builder.Platform) string {
	s := pl.OS + "-" + pl.Arch
	if pl.Variant != "" {
		s += "-" + pl.Variant
	}
	return s
}

func (p *publisher) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	mtime := p.res.Created
	seen := map[v1.Hash]bool{}
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	blob := func(h v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
		if seen[h] {
			return nil
		}
		seen[h] = true
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: blobPath(h), Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err = io.Copy(tw, rc)
		return err
	}
	raw := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	var docker []dockerManifest
	for i, pi := range p.res.Images {
		img := pi.Image
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		dm := dockerManifest{RepoTags: p.dockerTags(i, pi.Platform)}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			size, err := l.Size()
			if err != nil {
				return err
			}
			if err := blob(d, size, l.Compressed); err != nil {
				return err
			}
			dm.Layers = append(dm.Layers, blobPath(d))
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			return err
		}
		cfgName, err := img.ConfigName()
		if err != nil {
			return err
		}
		if err := blob(cfgName, int64(len(cfg)), raw(cfg)); err != nil {
			return err
		}
		dm.Config = blobPath(cfgName)
		docker = append(docker, dm)
		if err := rawBlob(img, blob, raw); err != nil {
			return err
		}
	}
	top := p.artifact()
	if len(p.res.Images) > 1 {
		if err := rawBlob(top.(partial.WithRawManifest), blob, raw); err != nil {
			return err
		}
	}
	desc, err := partial.Descriptor(top)
	if err != nil {
		return err
	}
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: p.o.Tag, containerdName: p.tag.String()}
	index, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{*desc}})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", manifest},
	} {
		if err := put(f.name, f.b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// rawBlob writes m's manifest as a blob.
func rawBlob(m partial.WithRawManifest, blob func(v1.Hash, int64, func() (io.ReadCloser, error)) error, raw func([]byte) func() (io.ReadCloser, error)) error {
	b, err := m.RawManifest()
	if err != nil {
		return err
	}
	h, size, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return blob(h, size, raw(b))
}
