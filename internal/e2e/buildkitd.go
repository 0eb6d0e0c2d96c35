package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvBuildKitAddr points tests at a running buildkitd instead of one they
// start themselves.
const EnvBuildKitAddr = "KILN_BUILDKIT_ADDR"

// BuildKitd returns the address of a buildkitd for the test: the one
// KILN_BUILDKIT_ADDR names, or one it starts (as root, with the native
// snapshotter) from a binary built from the Go module proxy at the
// version of BuildKit in go.mod and cached in $KILN_CACHE/buildkit. It
// skips (fails under CI) when neither works.
func BuildKitd(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvBuildKitAddr); addr != "" {
		return addr
	}
	fix := "run as root so the test can start buildkitd, or start one and export " + EnvBuildKitAddr + "=unix:///run/buildkit/buildkitd.sock"
	if os.Geteuid() != 0 {
		Require(t, "a buildkitd", errors.New("starting one needs root"), fix)
	}
	bin, err := buildkitdBinary()
	Require(t, "a buildkitd", err, fix)
	dir, err := os.MkdirTemp("", "kiln-buildkitd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "buildkitd.sock")
	cmd := exec.Command(bin, "--addr", "unix://"+sock, "--root", filepath.Join(dir, "root"),
		"--oci-worker-snapshotter=native", "--containerd-worker=false")
	log, _ := os.Create(filepath.Join(dir, "buildkitd.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		Require(t, "a buildkitd", err, fix)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
		os.RemoveAll(dir)
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return "unix://" + sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "buildkitd.log"))
			Require(t, "a buildkitd", fmt.Errorf("it did not listen on %s within 30s:\n%s", sock, b), fix)
		}
	}
}

// buildkitdBinary builds buildkitd at go.mod's BuildKit version, once.
// `go install` refuses BuildKit's module (it has exclude directives), so
// it is built from a scratch module that requires it.
func buildkitdBinary() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "github.com/moby/buildkit").Output()
	if err != nil {
		return "", fmt.Errorf("finding BuildKit's version in go.mod: %w", err)
	}
	version := strings.TrimSpace(string(out))
	cache := os.Getenv("KILN_CACHE")
	if cache == "" {
		if cache, err = os.UserCacheDir(); err != nil {
			return "", err
		}
		cache = filepath.Join(cache, "kiln")
	}
	bin := filepath.Join(cache, "buildkit", version, "buildkitd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	mod, err := os.MkdirTemp("", "kiln-buildkitd-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(mod)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".tmp"
	for _, args := range [][]string{
		{"mod", "init", "buildkitd"},
		{"get", "github.com/moby/buildkit/cmd/buildkitd@" + version},
		{"build", "-o", tmp, "github.com/moby/buildkit/cmd/buildkitd"},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building buildkitd %s: go %s: %w\n%s", version, strings.Join(args, " "), err, out)
		}
	}
	return bin, os.Rename(tmp, bin)
}
