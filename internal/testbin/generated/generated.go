// Package generated builds packages of //kiln: annotations for tests, the
// way kiln does: with the main package kiln generates, through an overlay.
// It is apart from package testbin, which the builder's own tests import.
package generated

import (
	"context"
	"encoding/json"
	"fmt"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/spec/annotations"
)

// Build compiles a package of //kiln: annotations (relative to the module
// root, e.g. "./examples/annotated/kv") into dir and returns the binary's
// path.
func Build(dir, pkg string) (string, error) {
	root, err := testbin.Root()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-json=Dir,ImportPath,GoFiles", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %w", pkg, err)
	}
	var lp struct {
		Dir, ImportPath string
		GoFiles         []string
	}
	if err := json.Unmarshal(out, &lp); err != nil {
		return "", err
	}
	ap, err := annotations.ParseDir(token.NewFileSet(), lp.Dir, lp.GoFiles)
	if err != nil {
		return "", err
	}
	src, err := annotations.Main(ap, lp.ImportPath)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "overlay-")
	if err != nil {
		return "", err
	}
	main := annotations.MainDir(lp.Dir, ap.App.Name)
	overlay, err := builder.WriteOverlay(tmp, map[string][]byte{filepath.Join(main, "main.go"): src})
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "annotated-"+filepath.Base(pkg))
	if err := builder.Compile(context.Background(), main, builder.CompileOptions{Dir: root, Output: bin, Overlay: overlay}); err != nil {
		return "", err
	}
	return bin, nil
}
