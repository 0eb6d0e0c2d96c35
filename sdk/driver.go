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

	"github.com/kiln-dev/kiln/dashboard"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Environment variables the driver reads when the matching flag is not on
// the command line.
const (
	// EnvPort gives the entry port (--port).
	EnvPort = "KILN_PORT"
	// EnvDashboardPort gives the dashboard's port (--dashboard-port).
	EnvDashboardPort = "KILN_DASHBOARD_PORT"
	// EnvNoDashboard, set to anything but "" or "0", serves no dashboard
	// (--no-dashboard).
	EnvNoDashboard = "KILN_NO_DASHBOARD"
)

// drive starts the app's topology on the local target, serves its
// dashboard, and serves until Ctrl-C or SIGTERM.
func drive(ctx context.Context, app *spec.App, args []string, stdout io.Writer) error {
	port, err := portFlag(args, "port", EnvPort)
	if err != nil {
		return usageError{err}
	}
	board := dashboard.Options{Off: boolFlag(args, "no-dashboard", EnvNoDashboard)}
	if board.Port, err = portFlag(args, "dashboard-port", EnvDashboardPort); err != nil {
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
	return local.Run(ctx, t, local.Options{Binary: self, Port: port, StateDir: os.Getenv(local.EnvStateDir), Started: board.Started(ctx, stdout)}, stdout)
}

// flagValue reads --name V, --name=V or -name V from args, and says where
// it found it; else the environment variable env.
func flagValue(args []string, name, env string) (val, from string) {
	val, from = os.Getenv(env), env
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if len(a) == len(args[i]) {
			continue // not a flag
		}
		switch {
		case a == name && i+1 < len(args):
			val, from = args[i+1], "--"+name
			i++
		case strings.HasPrefix(a, name+"="):
			val, from = strings.TrimPrefix(a, name+"="), "--"+name
		}
	}
	return val, from
}

// portFlag reads a port from flag name, else env; 0 when neither is set.
func portFlag(args []string, name, env string) (int, error) {
	val, from := flagValue(args, name, env)
	if val == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(val)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s %q: want a port number in 1–65535", from, val)
	}
	return p, nil
}

// boolFlag reports whether --name is on the command line, or env is set
// to anything but "" and "0".
func boolFlag(args []string, name, env string) bool {
	for _, a := range args {
		if t := strings.TrimLeft(a, "-"); t != a && (t == name || t == name+"=true") {
			return true
		}
	}
	v := os.Getenv(env)
	return v != "" && v != "0"
}
