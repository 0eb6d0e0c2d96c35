package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/unikernel"
	"github.com/kiln-dev/kiln/unikernel/kubevirt"
	"github.com/spf13/cobra"
)

func newBuildCmd() *cobra.Command {
	var (
		platforms, backend, bkAddr, base string
		output, repo, tag, sbomPath      string
		unikernelImage                   bool
		vm                               vmFlags
	)
	cmd := &cobra.Command{
		Use:   "build [package | kiln.hcl]",
		Short: "Build an app's main packages into reproducible container images",
		Long: `build compiles the main package (default "."), or each main package a
kiln.hcl names (one image per program: oci:DIR/NAME, kiln.local/NAME or
--repo/NAME when there are several), as a static binary for each
platform (CGO_ENABLED=0, -trimpath, without the driver) and makes an image
FROM scratch, or FROM --base: the binary is the entrypoint, at /NAME, run as
user 65532:65532. Several platforms give an image index. The same source
gives the same digest: every timestamp is SOURCE_DATE_EPOCH, else 1970.

Back-ends (--builder): oci assembles the image in process, with no daemon;
docker runs the Docker engine's image build; buildkit solves an LLB graph
with the engine's BuildKit, or with a buildkitd at --buildkit-addr.

Outputs (--output): oci:DIR (an OCI image layout), tar:FILE (for docker
load; also an OCI layout archive), docker (the local engine), registry
(pushed to --repo, credentials from the Docker config). Layers are kept
uncompressed locally and gzipped for registries. An SPDX SBOM of the Go
modules in the binary goes beside a layout or tarball, and is attached to
a pushed image as an OCI referrer.

build prints the image reference with its digest; progress goes to stderr.
When the output already holds that digest, nothing is written. Compiled
binaries and layer digests are cached in $KILN_CACHE (default
~/.cache/kiln), and go build's own cache does the compiling.`,
		Example: `  kiln build ./examples/kv --output docker
  docker run -e KILN_ROLE=leaf -e KILN_SERVICE=kv -p 8080:8080 kiln.local/kv
  kiln build ./examples/kv --platform linux/amd64,linux/arm64 --output oci:out/kv
  kiln build ./examples/kv --repo ghcr.io/you/kv --tag v1
  kiln build ./examples/kv --builder buildkit --output tar:kv.tar`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if unikernelImage {
				return buildUnikernel(cmd, pkgArg(args), output, vm)
			}
			plats, err := builder.ParsePlatforms(platforms)
			if err != nil {
				return err
			}
			created, err := builder.SourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
			if err != nil {
				return err
			}
			var target *publish.Target
			switch {
			case output != "":
				t, err := publish.ParseTarget(output)
				if err != nil {
					return err
				}
				target = &t
			case repo != "":
				target = &publish.Target{Kind: publish.Registry}
			}
			compression := builder.Uncompressed
			if target != nil && target.Kind == publish.Registry {
				compression = builder.Gzip
			}
			pr, err := openPrograms(cmd.Context(), pkgArg(args), varsOf(cmd))
			if err != nil {
				return err
			}
			defer pr.close()
			programs := pr.programs
			if len(programs) > 1 && target != nil && target.Kind == publish.Tarball {
				return fmt.Errorf("--output %s: the app is built from %d programs, and a tarball holds one image; use --output oci:DIR (one layout per program), docker or registry", output, len(programs))
			}
			stderr := cmd.ErrOrStderr()
			for _, p := range programs {
				res, err := builder.Build(cmd.Context(), p.pkg, builder.Options{
					Dir:          p.dir,
					Overlay:      p.overlay,
					Platforms:    plats,
					Backend:      builder.Backend(backend),
					BuildKitAddr: bkAddr,
					Base:         base,
					Created:      created,
					Compression:  compression,
					CacheDir:     os.Getenv("KILN_CACHE"),
					Tags:         p.tags(pr.app),
					Progress:     stderr,
				})
				if err != nil {
					return err
				}
				name := strings.ToLower(res.Name)
				if target == nil {
					d, err := res.Digest()
					if err != nil {
						return err
					}
					fmt.Fprintln(stderr, "kiln build: no --output, so nothing was written (use --output oci:DIR, tar:FILE, docker or registry)")
					fmt.Fprintf(cmd.OutOrStdout(), "kiln.local/%s@%s\n", name, d)
					continue
				}
				t, r := *target, repo
				if len(programs) > 1 {
					if t.Kind == publish.Layout {
						t.Path = filepath.Join(t.Path, name)
					}
					if r != "" {
						r += "/" + name
					}
				}
				pub, err := publish.Publish(cmd.Context(), res, t, publish.Options{
					Repo: r, Tag: tag, SBOM: sbomPath, Progress: stderr,
				})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), pub.Ref)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&unikernelImage, "unikernel", false, "build a microVM image instead (kernel, initramfs, command line, manifest); --output dir:DIR or oci:DIR")
	vm.addBuild(cmd)
	f.StringVar(&platforms, "platform", "", "comma-separated platforms, e.g. linux/amd64,linux/arm64 (default: this machine's linux/"+builder.HostPlatform().Arch+")")
	f.StringVar(&backend, "builder", string(builder.OCI), "back-end: oci (in process, no daemon), docker or buildkit")
	f.StringVar(&bkAddr, "buildkit-addr", os.Getenv("BUILDKIT_HOST"), "buildkitd address for --builder buildkit (default: the Docker engine's BuildKit)")
	f.StringVar(&base, "base", "", "base image: a registry reference or oci:DIR (default: scratch)")
	f.StringVar(&output, "output", "", "where the image goes: oci:DIR, tar:FILE, docker or registry (registry when --repo is set)")
	f.StringVar(&repo, "repo", "", "image repository, e.g. ghcr.io/you/kv (default: kiln.local/NAME)")
	f.StringVar(&tag, "tag", "latest", "image tag")
	f.StringVar(&sbomPath, "sbom", "", "write the SPDX SBOM here too (default: beside an oci or tar output)")
	return cmd
}

// buildUnikernel writes a microVM image to --output dir:DIR, or packages
// its kernel and initramfs as one OCI image layer (/boot/vmlinuz,
// /boot/initrd, the layout KubeVirt's kernel boot reads) with oci:DIR.
func buildUnikernel(cmd *cobra.Command, pkg, output string, f vmFlags) error {
	kind, dir, _ := strings.Cut(output, ":")
	if (kind != "dir" && kind != "oci") || dir == "" {
		return fmt.Errorf("--unikernel needs --output dir:DIR (kernel, initramfs, cmdline, manifest) or oci:DIR (an OCI image of them), got %q", output)
	}
	out := dir
	if kind == "oci" {
		tmp, err := os.MkdirTemp("", "kiln-vm-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		out = tmp
	}
	o, done, err := f.unikernelOptions(cmd, pkg, out)
	if err != nil {
		return err
	}
	defer done()
	im, err := unikernel.Build(cmd.Context(), o)
	if err != nil {
		return err
	}
	if kind == "dir" {
		printImage(cmd.OutOrStdout(), im)
		return nil
	}
	img, err := kubevirt.KernelImage(im)
	if err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("--output %s: %w", output, err)
	}
	if err := p.AppendImage(img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s@%s\n", output, d)
	return err
}
