// Package builder turns a Go main package into a static binary, and the
// binary into images.
package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Package is what `go list` says about a package kiln is asked to build.
type Package struct {
	ImportPath string
	Dir        string
	Name       string
	Module     *struct{ Path, Dir string }
	CgoFiles   []string
}

// Load resolves pkg (a path like ./examples/kv or an import path) relative
// to dir and checks that it is a main package.
func Load(ctx context.Context, dir, pkg string) (*Package, error) {
	if pkg == "" {
		pkg = "."
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-json", "--", pkg)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%s is not a Go package that builds: %s\n(give the directory of a main package, e.g. ./examples/kv)", pkg, msg)
	}
	var p Package
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		return nil, fmt.Errorf("go list %s: %w", pkg, err)
	}
	if p.Name != "main" {
		return nil, fmt.Errorf("%s is package %s, not a main package: point kiln at the directory whose main() calls sdk.Run", pkg, p.Name)
	}
	return &p, nil
}

// CompileOptions say how to compile a main package.
type CompileOptions struct {
	// Dir is where pkg is resolved; "" means the current directory.
	Dir string
	// Output is the binary's path.
	Output string
	// Image builds a binary for an image: static, trimmed, and without the
	// driver (build tag kiln_image).
	Image bool
	// GOOS and GOARCH cross-compile; empty means the host's.
	GOOS, GOARCH string
}

// ImageTag is the build tag that leaves the driver out of a binary.
const ImageTag = "kiln_image"

// Compile builds pkg with the go command, whose build cache makes an
// unchanged package a near no-op.
func Compile(ctx context.Context, pkg string, o CompileOptions) error {
	args := []string{"build", "-o", o.Output}
	env := os.Environ()
	if o.Image {
		args = append(args, "-trimpath", "-tags", ImageTag, "-ldflags", "-s -w -buildid=")
		env = append(env, "CGO_ENABLED=0")
	}
	if o.GOOS != "" {
		env = append(env, "GOOS="+o.GOOS)
	}
	if o.GOARCH != "" {
		env = append(env, "GOARCH="+o.GOARCH)
	}
	args = append(args, "--", pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.Dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = os.Stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s failed:\n%s", pkg, strings.TrimSpace(stderr.String()))
	}
	return nil
}
