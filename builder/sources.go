package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/kiln-dev/kiln/internal/child"
)

// Sources lists the files a build of the package pkg (resolved in dir,
// seen through overlay if it is not "") reads from its own module: the
// Go, cgo and embedded files of pkg and of every package it imports from
// that module, and the module's go.mod and go.sum. Paths are absolute and
// sorted. root is what go list says of pkg itself. A package that does not
// compile is still listed, so that a watcher knows which files to wait on
// for a fix.
func Sources(ctx context.Context, dir, pkg, overlay string) (files []string, root *Package, err error) {
	const fields = "-json=ImportPath,Dir,Name,Module,GoFiles,CgoFiles,EmbedFiles,DepOnly"
	cmd := exec.CommandContext(ctx, "go", "list", "-e", "-deps", fields, "--", pkg)
	cmd.Dir = dir
	child.OwnGroup(cmd)
	if overlay != "" {
		cmd.Env = append(os.Environ(), OverlayEnv(overlay)...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("go list -deps %s: %w\n%s", pkg, err, bytes.TrimSpace(stderr.Bytes()))
	}
	seen := map[string]bool{}
	for d := json.NewDecoder(&stdout); ; {
		var p struct {
			Package
			EmbedFiles []string
			Module     *struct {
				Path, Dir string
				Main      bool
				GoMod     string
			}
		}
		if err := d.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
		}
		if !p.DepOnly && root == nil {
			root = &p.Package
			if p.Module != nil {
				root.Module = &struct{ Path, Dir string }{p.Module.Path, p.Module.Dir}
			}
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		for _, f := range slices.Concat(p.GoFiles, p.CgoFiles, p.EmbedFiles) {
			seen[filepath.Join(p.Dir, f)] = true
		}
		if p.Module.GoMod != "" {
			seen[p.Module.GoMod] = true
			seen[filepath.Join(filepath.Dir(p.Module.GoMod), "go.sum")] = true
		}
	}
	for f := range seen {
		files = append(files, f)
	}
	slices.Sort(files)
	return files, root, nil
}
