// Package engine talks to a Docker engine for the builder and the docker
// target: it connects, moves images in and out as tarballs, and reads the
// engine's JSON message streams.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// Connect returns a client for the engine that DOCKER_HOST names (the
// local socket by default), with the API version negotiated. Engines from
// Docker 19.03 (API 1.40) on work.
func Connect(ctx context.Context) (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("Docker engine: %w (check DOCKER_HOST)", err)
	}
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, fmt.Errorf("no Docker engine answers at %s: %w\n(start the engine (dockerd), or point DOCKER_HOST at one)", c.DaemonHost(), err)
	}
	return c, nil
}

// Save copies the engine's image ref into a file in dir and opens it.
func Save(ctx context.Context, c *client.Client, ref, dir string) (v1.Image, error) {
	rc, err := c.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, fmt.Errorf("saving %s from the Docker engine: %w", ref, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(dir, "saved-*.tar")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := io.Copy(f, rc); err != nil {
		return nil, fmt.Errorf("saving %s from the Docker engine: %w", ref, err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return nil, err
	}
	img, err := tarball.ImageFromPath(filepath.Clean(f.Name()), &tag)
	if err != nil {
		return nil, fmt.Errorf("reading %s as saved by the Docker engine: %w", ref, err)
	}
	return img, nil
}

// Load loads images into the engine under their tags.
func Load(ctx context.Context, c *client.Client, images map[name.Reference]v1.Image) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.MultiRefWrite(images, pw)) }()
	rc, err := c.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("loading into the Docker engine: %w", err)
	}
	defer rc.Close()
	if err := Messages(rc, nil); err != nil {
		return fmt.Errorf("loading into the Docker engine: %w", err)
	}
	return nil
}

// Messages reads an engine's JSON message stream, passing each line of
// output to line (when not nil), and returns the first error it reports.
func Messages(r io.Reader, line func(string)) error {
	d := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := d.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return errors.New(strings.TrimSpace(m.Error.Message))
		}
		if line == nil {
			continue
		}
		for _, s := range strings.Split(m.Stream+m.Status, "\n") {
			if s = strings.TrimSpace(s); s != "" {
				line(s)
			}
		}
	}
}
