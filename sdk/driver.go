//go:build !kiln_image

package sdk

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// EnvPort gives the driver's entry port when --port is not on the command
// line.
const EnvPort = "KILN_PORT"

// drive starts the app's topology on the local target and serves until
// Ctrl-C or SIGTERM.
func drive(ctx context.Context, app *spec.App, args []string, stdout io.Writer) error {
	port, err := entryPort(args, os.Getenv(EnvPort))
	if err != nil {
		return usageError{err}
	}
	t, err := patterns.Build(app)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program's binary: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return local.Run(ctx, t, local.Options{Binary: self, Port: port}, stdout)
}

// entryPort reads --port N, --port=N or -port N from args, else env.
func entryPort(args []string, env string) (int, error) {
	val, from := env, EnvPort
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if len(a) == len(args[i]) {
			continue // not a flag
		}
		switch {
		case a == "port" && i+1 < len(args):
			val, from = args[i+1], "--port"
			i++
		case strings.HasPrefix(a, "port="):
			val, from = strings.TrimPrefix(a, "port="), "--port"
		}
	}
	if val == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(val)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s %q: want a port number in 1–65535", from, val)
	}
	return p, nil
}
