package publish

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kiln-dev/kiln/internal/engine"
	"github.com/moby/moby/client"
)

// engine loads the image into the local Docker engine under its tag. An
// engine tag holds one platform, so with several the engine's own platform
// is loaded (the others go to the other outputs).
func (p *publisher) engine(ctx context.Context) (unchanged bool, digest v1.Hash, err error) {
	c, err := engine.Connect(ctx)
	if err != nil {
		return false, v1.Hash{}, fmt.Errorf("--output docker: %w\n(or write a tarball with --output tar:FILE and docker load it elsewhere)", err)
	}
	defer c.Close()
	pi := p.res.Images[0]
	if len(p.res.Images) > 1 {
		v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
		if err != nil {
			return false, v1.Hash{}, fmt.Errorf("asking the Docker engine its platform: %w", err)
		}
		i := -1
		var have []string
		for j, cand := range p.res.Images {
			if cand.Platform.OS == v.Os && cand.Platform.Arch == v.Arch {
				i = j
			}
			have = append(have, cand.Platform.String())
		}
		if i < 0 {
			return false, v1.Hash{}, fmt.Errorf("--output docker: the engine runs %s/%s and the images are for %s; add %s/%s to --platform, or use --output oci:DIR or registry for an index", v.Os, v.Arch, strings.Join(have, ", "), v.Os, v.Arch)
		}
		pi = p.res.Images[i]
		p.progress("the engine keeps one platform per tag: loading %s, the engine's", pi.Platform)
	}
	id, err := pi.Image.ConfigName()
	if err != nil {
		return false, v1.Hash{}, err
	}
	digest, err = pi.Image.Digest()
	if err != nil {
		return false, v1.Hash{}, err
	}
	if ins, err := c.ImageInspect(ctx, p.tag.String()); err == nil && ins.ID == id.String() {
		p.progress("the Docker engine already has %s as %s: unchanged", p.tag, id)
		return true, digest, nil
	}
	p.progress("loading %s into the Docker engine", p.tag)
	if err := engine.Load(ctx, c, map[name.Reference]v1.Image{p.tag: pi.Image}); err != nil {
		return false, v1.Hash{}, err
	}
	ins, err := c.ImageInspect(ctx, p.tag.String())
	if err != nil {
		return false, v1.Hash{}, fmt.Errorf("the Docker engine did not keep %s: %w", p.tag, err)
	}
	if ins.ID != id.String() {
		return false, v1.Hash{}, fmt.Errorf("the Docker engine holds %s as %s, want %s", p.tag, ins.ID, id)
	}
	p.progress("loaded %s (image ID %s)", p.tag, id)
	return false, digest, nil
}
