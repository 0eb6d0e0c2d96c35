// Package testbin builds the project's programs for tests that run them as
// real processes.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
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

// Interrupt sends cmd SIGINT, as Ctrl-C does, and waits up to within for it
// to exit; it returns the exit error, or an error when it did not stop.
func Interrupt(cmd *exec.Cmd, within time.Duration) error {
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		return fmt.Errorf("%s did not stop within %s of Ctrl-C", cmd.Path, within)
	}
}

// Topology asks the program bin for its spec (KILN_ROLE=describe) and
// works out its topology, as the driver does.
func Topology(bin string) (*patterns.Topology, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), patterns.EnvRole+"="+string(patterns.RoleDescribe))
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s with %s=%s: %w", bin, patterns.EnvRole, patterns.RoleDescribe, err)
	}
	app, err := spec.Parse(out)
	if err != nil {
		return nil, err
	}
	app.SetDefaults()
	return patterns.Build(app)
}
