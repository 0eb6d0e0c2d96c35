package builder

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/kiln-dev/kiln/internal/engine"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"
)

// buildKitBackend solves an LLB graph: scratch (or the base) plus a copy
// of the binary, with the image config kiln wants. The Docker engine's
// built-in BuildKit exports the image into the engine; a buildkitd
// exports an OCI tarball.
type buildKitBackend struct {
	c      *bkclient.Client
	docker *client.Client // nil with a buildkitd
	o      Options
	tmp    string
}

func newBuildKitBackend(ctx context.Context, o Options) (*buildKitBackend, error) {
	tmp, err := os.MkdirTemp("", "kiln-buildkit-")
	if err != nil {
		return nil, err
	}
	b := &buildKitBackend{o: o, tmp: tmp}
	if o.BuildKitAddr != "" {
		b.c, err = bkclient.New(ctx, o.BuildKitAddr)
		if err == nil {
			_, err = b.c.ListWorkers(ctx)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("no buildkitd answers at --buildkit-addr %s: %w\n(start buildkitd there, or leave out --buildkit-addr to use the Docker engine's BuildKit)", o.BuildKitAddr, err)
		}
		return b, nil
	}
	if b.docker, err = engine.Connect(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("--builder buildkit: %w\n(or run buildkitd and give its address with --buildkit-addr)", err)
	}
	// The engine serves BuildKit's gRPC API and its session on hijacked
	// HTTP connections (API 1.40 and later).
	d := b.docker
	b.c, err = bkclient.New(ctx, "",
		bkclient.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialHijack(ctx, "/grpc", "h2c", nil)
		}),
		bkclient.WithSessionDialer(func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return d.DialHijack(ctx, "/session", proto, meta)
		}))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("BuildKit in the Docker engine: %w", err)
	}
	return b, nil
}

func (b *buildKitBackend) Close() error {
	if b.c != nil {
		b.c.Close()
	}
	if b.docker != nil {
		b.docker.Close()
	}
	return os.RemoveAll(b.tmp)
}

func (b *buildKitBackend) image(ctx context.Context, j *job) (v1.Image, error) {
	// The build context is a directory holding just the binary, with the
	// fixed time that the copy keeps.
	dir, err := os.MkdirTemp(b.tmp, "context-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := os.ReadFile(j.binPath)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, j.name), bin, 0o755); err != nil {
		return nil, err
	}
	fs, err := fsutil.NewFS(dir)
	if err != nil {
		return nil, err
	}
	p := j.platform
	plat := ocispec.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant}
	st := llb.Scratch()
	if j.baseRef != "" {
		st = llb.Image(j.baseRef, llb.Platform(plat))
	}
	created := j.created
	st = st.File(llb.Copy(llb.Local("kiln", llb.IncludePatterns([]string{j.name})), j.name, j.entrypoint(),
		&llb.CopyInfo{CreatedTime: &created}), llb.WithCustomName("copy "+j.name+" to "+j.entrypoint()))
	def, err := st.Marshal(ctx, llb.Platform(plat))
	if err != nil {
		return nil, err
	}

	tag := engineTag(j)
	export := bkclient.ExportEntry{Type: "moby", Attrs: map[string]string{"name": tag}}
	ociTar := filepath.Join(b.tmp, "image-"+p.key()+".tar")
	if b.docker == nil {
		export = bkclient.ExportEntry{Type: bkclient.ExporterOCI, Output: func(map[string]string) (io.WriteCloser, error) {
			return os.Create(ociTar)
		}}
	}
	ch := make(chan *bkclient.SolveStatus)
	display, err := progressui.NewDisplay(b.o.Progress, progressui.AutoMode)
	if err != nil {
		return nil, err
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		_, err := display.UpdateFrom(context.WithoutCancel(ectx), ch)
		return err
	})
	eg.Go(func() error {
		_, err := b.c.Build(ectx, bkclient.SolveOpt{
			LocalMounts: map[string]fsutil.FS{"kiln": fs},
			Exports:     []bkclient.ExportEntry{export},
		}, "kiln", func(ctx context.Context, c gateway.Client) (*gateway.Result, error) {
			cfg, err := b.imageConfig(ctx, c, j, plat)
			if err != nil {
				return nil, err
			}
			res, err := c.Solve(ctx, gateway.SolveRequest{Definition: def.ToPB()})
			if err != nil {
				return nil, err
			}
			res.AddMeta(exptypes.ExporterImageConfigKey, cfg)
			return res, nil
		}, ch)
		return err
	})
	if err := eg.Wait(); err != nil {
		where := "the Docker engine's BuildKit"
		if b.docker == nil {
			where = "buildkitd at " + b.o.BuildKitAddr
		}
		return nil, fmt.Errorf("BuildKit build for %s failed in %s: %w", p, where, err)
	}
	var img v1.Image
	if b.docker != nil {
		defer b.docker.ImageRemove(context.WithoutCancel(ctx), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		img, err = engine.Save(ctx, b.docker, tag, b.tmp)
	} else {
		img, err = readOCITar(ociTar, filepath.Join(b.tmp, "layout-"+p.key()))
	}
	if err != nil {
		return nil, err
	}
	return normalize(img, j, b.o.Compression, b.o.CacheDir)
}

// imageConfig is the config BuildKit's exporter writes: the base's (which
// BuildKit resolves) with kiln's user, entrypoint, labels and history.
func (b *buildKitBackend) imageConfig(ctx context.Context, c gateway.Client, j *job, plat ocispec.Platform) ([]byte, error) {
	var img ocispec.Image
	if j.baseRef != "" {
		_, _, raw, err := c.ResolveImageConfig(ctx, j.baseRef, sourceresolver.Opt{Platform: &plat})
		if err != nil {
			return nil, fmt.Errorf("base image %s is unreachable from BuildKit: %w\n(check the name and that BuildKit can pull it, or leave out --base to build FROM scratch)", j.baseRef, err)
		}
		if err := json.Unmarshal(raw, &img); err != nil {
			return nil, fmt.Errorf("base image %s: %w", j.baseRef, err)
		}
	}
	created := j.created
	img.Platform = plat
	img.Created = &created
	img.Config.User = User
	img.Config.Entrypoint = []string{j.entrypoint()}
	img.Config.Cmd = nil
	if img.Config.Labels == nil {
		img.Config.Labels = map[string]string{}
	}
	for k, v := range j.annotations {
		img.Config.Labels[k] = v
	}
	h := j.history()
	img.History = append(img.History, ocispec.History{Created: &created, CreatedBy: h.CreatedBy, Comment: h.Comment})
	img.RootFS = ocispec.RootFS{Type: "layers"}
	return json.Marshal(img)
}

// readOCITar opens the single image of an OCI layout tarball, unpacking
// it into dir.
func readOCITar(file, dir string) (v1.Image, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading BuildKit's OCI tarball: %w", err)
		}
		target := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
			return nil, fmt.Errorf("BuildKit's OCI tarball has a bad path %q", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
				err = writeFile(target, tr)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("BuildKit's OCI tarball holds %d manifests, want 1", len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

func writeFile(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
