package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-dev/kiln/builder/sbom"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// registry pushes the image (or index) under its tag, then each
// platform's SBOM as an OCI 1.1 referrer of that platform's image. A
// registry without the referrers API gets the fallback tag
// (sha256-DIGEST), which go-containerregistry maintains.
func (p *publisher) registry(ctx context.Context) (unchanged bool, err error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(p.o.Keychain)}
	fail := func(err error) error {
		return fmt.Errorf("pushing to %s: %w\n(check --repo, that the registry answers from here, and your credentials: docker login %s)", p.tag.Context(), err, p.tag.RegistryStr())
	}
	if d, err := remote.Head(p.tag, opts...); err == nil && d.Digest == p.digest {
		p.progress("%s already is %s: unchanged", p.tag, p.digest)
		return true, nil
	}
	p.progress("pushing %s", p.tag)
	if len(p.res.Images) == 1 {
		err = remote.Write(p.tag, p.res.Images[0].Image, opts...)
	} else {
		err = remote.WriteIndex(p.tag, p.res.Index(), opts...)
	}
	if err != nil {
		return false, fail(err)
	}
	for _, pi := range p.res.Images {
		doc, err := p.sbomDoc(pi)
		if err != nil {
			return false, err
		}
		subject, err := partial.Descriptor(pi.Image)
		if err != nil {
			return false, err
		}
		a, err := newArtifact(doc, *subject, p.res.Name+"."+platformKey(pi.Platform)+".spdx.json", p.res.Annotations[ocispec.AnnotationCreated])
		if err != nil {
			return false, err
		}
		d, err := a.Digest()
		if err != nil {
			return false, err
		}
		if err := remote.Write(p.tag.Context().Digest(d.String()), a, opts...); err != nil {
			return false, fail(fmt.Errorf("attaching the SBOM of %s: %w", pi.Platform, err))
		}
		p.progress("attached SBOM %s to %s (%s)", d, subject.Digest, pi.Platform)
	}
	p.progress("pushed %s@%s", p.tag, p.digest)
	return false, nil
}

// emptyJSON is the OCI empty descriptor's content: the config of an
// artifact that needs none.
var emptyJSON = []byte("{}")

// artifactManifest is an OCI 1.1 image manifest that carries an artifact
// (not an image) and refers to its subject.
type artifactManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// artifact is an SBOM as a v1.Image, which remote.Write pushes: the SPDX
// document is its one layer.
type artifact struct {
	manifest []byte
	doc      v1.Layer
	config   v1.Layer
}

func newArtifact(doc []byte, subject v1.Descriptor, title, created string) (v1.Image, error) {
	a := &artifact{doc: static.NewLayer(doc, sbom.MediaType), config: static.NewLayer(emptyJSON, "application/vnd.oci.empty.v1+json")}
	docDesc, err := partial.Descriptor(a.doc)
	if err != nil {
		return nil, err
	}
	docDesc.Annotations = map[string]string{ocispec.AnnotationTitle: title}
	cfgDesc, err := partial.Descriptor(a.config)
	if err != nil {
		return nil, err
	}
	cfgDesc.Data = emptyJSON
	subject = v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := artifactManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  sbom.MediaType,
		Config:        *cfgDesc,
		Layers:        []v1.Descriptor{*docDesc},
		Subject:       &subject,
	}
	if created != "" {
		m.Annotations = map[string]string{ocispec.AnnotationCreated: created}
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(a)
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return emptyJSON, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(a.manifest))
	return h, err
}
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range []v1.Layer{a.doc, a.config} {
		if d, _ := l.Digest(); d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("artifact has no blob %s", h)
}
