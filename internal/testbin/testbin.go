// Package testbin builds the project's programs for tests that run them as
// real processes.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Root is the module's root directory.
func Root() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// Build compiles the package at pkg (relative to the module root, e.g.
// "./examples/kv") into dir, with extra go build flags, and returns the
// binary's path.
func Build(dir, pkg string, extra ...string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	if len(extra) > 0 {
		bin += "-" + strings.NewReplacer(" ", "", "-", "", "=", "").Replace(strings.Join(extra, ""))
	}
	args := append(append([]string{"build", "-o", bin}, extra...), pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}
