package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kiln-dev/kiln/internal/engine"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerBackend runs the Docker engine's own image build (the classic
// builder) on a generated context: a Dockerfile and the binary.
type dockerBackend struct {
	c        *client.Client
	o        Options
	progress func(string, ...any)
	tmp      string // saved images
}

func newDockerBackend(ctx context.Context, o Options, progress func(string, ...any)) (*dockerBackend, error) {
	c, err := engine.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("--builder docker: %w", err)
	}
	tmp, err := os.MkdirTemp("", "kiln-docker-")
	if err != nil {
		c.Close()
		return nil, err
	}
	return &dockerBackend{c: c, o: o, progress: progress, tmp: tmp}, nil
}

func (b *dockerBackend) Close() error {
	os.RemoveAll(b.tmp)
	return b.c.Close()
}

// dockerfile is the build's recipe.
func dockerfile(j *job) []byte {
	from := "scratch"
	if j.baseRef != "" {
		from = j.baseRef
	}
	ep, _ := json.Marshal([]string{j.entrypoint()})
	df := fmt.Appendf(nil, "FROM %s\nCOPY %s %s\nUSER %s\nENTRYPOINT %s\n", from, j.name, j.entrypoint(), User, ep)
	// One LABEL, sorted: the history records the instruction, so its text
	// must not depend on map order.
	keys := slices.Sorted(maps.Keys(j.annotations))
	if len(keys) > 0 {
		df = append(df, "LABEL"...)
		for _, k := range keys {
			df = fmt.Appendf(df, " %s=%s", k, strconv.Quote(j.annotations[k]))
		}
		df = append(df, '\n')
	}
	return df
}

// buildContext is a tar of the Dockerfile and the binary, with fixed
// times so that the layer Docker makes of the binary is reproducible.
func buildContext(j *job) ([]byte, error) {
	bin, err := os.ReadFile(j.binPath)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile(j)}, {j.name, 0o755, bin}} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: j.created, Format: tar.FormatPAX})
		tw.Write(f.data)
	}
	tw.Close()
	return buf.Bytes(), nil
}

// engineTag names an image while an engine back-end builds it; the
// process ID keeps concurrent builds apart.
func engineTag(j *job) string {
	return fmt.Sprintf("kiln-build/%s:%s-%d", strings.ToLower(j.name), j.platform.key(), os.Getpid())
}

func (b *dockerBackend) image(ctx context.Context, j *job) (v1.Image, error) {
	tag := engineTag(j)
	p := j.platform
	bctx, err := buildContext(j)
	if err != nil {
		return nil, err
	}
	resp, err := b.c.ImageBuild(ctx, bytes.NewReader(bctx), client.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
		Platforms:   []ocispec.Platform{{OS: p.OS, Architecture: p.Arch, Variant: p.Variant}},
	})
	if err != nil {
		return nil, fmt.Errorf("docker build for %s: %w", p, err)
	}
	defer resp.Body.Close()
	if err := engine.Messages(resp.Body, func(s string) { b.progress("docker: %s", s) }); err != nil {
		if j.baseRef != "" {
			return nil, fmt.Errorf("docker build for %s failed: %w\n(if the base image %s is the problem: check the name, that the engine can pull it (docker pull %s), or leave out --base to build FROM scratch)", p, err, j.baseRef, j.baseRef)
		}
		return nil, fmt.Errorf("docker build for %s failed: %w", p, err)
	}
	// The engine's image is an intermediate: kiln takes it out, makes it
	// reproducible, and hands it to the output.
	defer b.c.ImageRemove(context.WithoutCancel(ctx), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	img, err := engine.Save(ctx, b.c, tag, b.tmp)
	if err != nil {
		return nil, err
	}
	return normalize(img, j, b.o.Compression, b.o.CacheDir)
}
