package main

import (
	"cmp"
	"fmt"
	"os"
	"strings"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/dashboard"
	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var port int
	var target, backend, stateDir string
	var board dashboard.Options
	cmd := &cobra.Command{
		Use:   "run [package | kiln.hcl]",
		Short: "Build an app and run its whole topology on this machine",
		Long: `run builds the main package (default ".") the way go run does, or every main
package a kiln.hcl names, then starts every router, leaf and replica of every
service as a local process on 127.0.0.1. It prints one line per entry point,
in the app's order, once every process is ready, restarts a process that
crashes, and stops them all on Ctrl-C. It then serves a dashboard of the
running topology on 127.0.0.1 and prints its address (kiln: dashboard at
URL): the services, their routers and backends, each backend's requests,
errors and latency, each process's state and logs, and which shard a key
maps to.

A job service runs to completion beside them: at most its parallelism of
runs at once, each completion index until it succeeds, a failed run retried
with backoff up to its retries, each attempt's outcome printed, the whole
job bounded by its deadline. An app of jobs only exits once they end: 0 when
every one succeeded, else with the status of the failed run. A cron job
runs as a job each time its schedule, read in its time zone, comes due,
under its concurrency policy (allow: runs overlap; forbid: a run due while
one is active is skipped; replace: the active run gets SIGTERM, then
SIGKILL after a grace, and the new one starts), until Ctrl-C.

A path ending in .hcl, or a directory holding kiln.hcl, is a descriptor (see
kiln validate); anything else is a main package, or a package of
//kiln:service annotations, whose main package kiln generates (see kiln
eject).`,
		Example: `  kiln run ./examples/kv
  kiln run ./examples/report
  kiln run ./examples/search --port 8080
  kiln run ./examples/shop/kiln.hcl --var carts=5`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPorts(port, board.Port); err != nil {
				return err
			}
			switch target {
			case "local":
			case "vm":
				return runVM(cmd, pkgArg(args), vmFlags{stateDir: stateDir}, port)
			case "docker":
				return runDocker(cmd, args, port, backend)
			default:
				return fmt.Errorf("--target %q: use local, docker or vm", target)
			}
			pr, err := openProject(cmd.Context(), pkgArg(args), varsOf(cmd))
			if err != nil {
				return err
			}
			defer pr.close()
			if err := pr.compile(cmd.Context()); err != nil {
				return err
			}
			t, err := patterns.Build(pr.app)
			if err != nil {
				return pr.fieldError(err)
			}
			return local.Run(cmd.Context(), t, local.Options{
				Binaries: pr.binaries(), Port: port, StateDir: cmp.Or(stateDir, os.Getenv(local.EnvStateDir)),
				Started: board.Started(cmd.Context(), cmd.OutOrStdout()),
			}, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "entry port of the first service on 127.0.0.1 (default: a free port)")
	dashboardFlags(cmd, &board)
	cmd.Flags().StringVar(&target, "target", "local", "where to run: local (processes), docker (containers on the Docker engine, pods sharing a network namespace) or vm (a QEMU microVM, see kiln vm)")
	cmd.Flags().StringVar(&backend, "builder", string(builder.OCI), "with --target docker: how images are built, oci (in process, then loaded) or docker (the engine's build)")
	stateDirFlag(cmd, &stateDir)
	return cmd
}

func newDescribeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "describe [package | kiln.hcl]",
		Short: "Print an app's spec as JSON",
		Long: `describe prints an app's spec in kiln's stable JSON form: the one a main
package (default ".") declares in Go, which it builds and asks; the one the
//kiln: annotations of a package declare, or the one a kiln.hcl describes,
both read without building anything. The same app gives the same bytes from
any of the three.`,
		Example: `  kiln describe ./examples/search
  kiln describe ./examples/shop/kiln.hcl`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pr, err := openProject(cmd.Context(), pkgArg(args), varsOf(cmd))
			if err != nil {
				return err
			}
			defer pr.close()
			b, err := pr.app.MarshalStable()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [package | kiln.hcl]",
		Short: "Check an app without building images or deploying it",
		Long: `validate checks an app and exits non-zero on any problem, reporting every
problem at once: the spec itself (fields, patterns, names) and what the
Kubernetes target refuses. A kiln.hcl is checked without compiling anything,
and its problems point at its lines; a main package is compiled and asked
for its spec.

kiln.hcl describes an app in HCL:

  variable "shards" { default = 3 }   # --var shards=4, or KILN_VAR_shards=4
  locals { name = "kv" }

  service "kv" {
    source = "."                       # its main package, relative to this file
    shard {
      shards = var.shards
      key { path_segment = 2 }
    }
  }

Blocks and attributes are the spec's JSON names (see the README).`,
		Example: `  kiln validate ./examples/shop/kiln.hcl
  kiln validate ./examples/kv`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pr, err := openProject(cmd.Context(), pkgArg(args), varsOf(cmd))
			if err != nil {
				return err
			}
			defer pr.close()
			if _, err := kubernetes.Render(pr.app, kubernetes.Options{Image: "kiln.local/validate"}); err != nil {
				return pr.fieldError(err)
			}
			var names []string
			for _, s := range pr.app.Services {
				names = append(names, s.Name+" ("+s.Pattern()+")")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s is valid: app %q of %s\n", pr.arg, pr.app.Name, strings.Join(names, ", "))
			return nil
		},
	}
}

// dashboardFlags binds the local target's dashboard options.
func dashboardFlags(cmd *cobra.Command, o *dashboard.Options) {
	cmd.Flags().IntVar(&o.Port, "dashboard-port", 0, "with the local target: the dashboard's port on 127.0.0.1 (default: a free port)")
	cmd.Flags().BoolVar(&o.Off, "no-dashboard", false, "with the local target: serve no dashboard")
}

// checkPorts checks --port and --dashboard-port.
func checkPorts(port, dashboardPort int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("--port %d: want a port number in 1–65535", port)
	}
	if dashboardPort < 0 || dashboardPort > 65535 {
		return fmt.Errorf("--dashboard-port %d: want a port number in 1–65535", dashboardPort)
	}
	return nil
}

func pkgArg(args []string) string {
	if len(args) == 0 {
		return "."
	}
	return args[0]
}

// varsOf is the root's --var flags.
func varsOf(cmd *cobra.Command) varFlags {
	v, _ := cmd.Flags().GetStringArray("var")
	return v
}

// specFlag adds --spec, which reads an app from its JSON form instead of
// building a package.
func specFlag(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVar(file, "spec", "", "read the app from this spec JSON file (as kiln describe prints) instead of a package")
}

// loadProject reads the app from a spec file when one is given, else from
// the package or descriptor args name. With build, every program is
// compiled and checked against the descriptor.
func loadProject(cmd *cobra.Command, args []string, specFile string, build bool) (*project, error) {
	ctx := cmd.Context()
	if specFile == "" {
		pr, err := openProject(ctx, pkgArg(args), varsOf(cmd))
		if err != nil {
			return nil, err
		}
		if build {
			if err := pr.compile(ctx); err != nil {
				pr.close()
				return nil, err
			}
		}
		return pr, nil
	}
	if len(args) > 0 {
		return nil, fmt.Errorf("give either a package or --spec, not both")
	}
	b, err := os.ReadFile(specFile)
	if err != nil {
		return nil, err
	}
	app, err := spec.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", specFile, err)
	}
	app.SetDefaults()
	if err := app.Validate(); err != nil {
		return nil, fmt.Errorf("%s:\n%w", specFile, err)
	}
	return &project{arg: specFile, app: app}, nil
}
