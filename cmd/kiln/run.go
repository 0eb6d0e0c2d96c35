package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var port int
	var target string
	cmd := &cobra.Command{
		Use:   "run [package]",
		Short: "Build a main package and run its whole topology on this machine",
		Long: `run builds the main package (default ".") the way go run does, then starts
every router, leaf and replica of its pattern as a local process on 127.0.0.1.
It prints one line per entry point once every process is ready, restarts a
process that crashes, and stops them all on Ctrl-C.`,
		Example: `  kiln run ./examples/kv
  kiln run ./examples/search --port 8080`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d: want a port number in 1–65535", port)
			}
			switch target {
			case "local":
			case "vm":
				return runVM(cmd.Context(), pkgArg(args), vmFlags{}, port, cmd.OutOrStdout())
			default:
				return fmt.Errorf("--target %q: use local or vm", target)
			}
			bin, app, cleanup, err := compileAndDescribe(cmd.Context(), pkgArg(args), false)
			if err != nil {
				return err
			}
			defer cleanup()
			t, err := patterns.Build(app)
			if err != nil {
				return err
			}
			return local.Run(cmd.Context(), t, local.Options{Binary: bin, Port: port}, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "entry port on 127.0.0.1 (default: a free port)")
	cmd.Flags().StringVar(&target, "target", "local", "where to run: local (processes) or vm (a QEMU microVM, see kiln vm)")
	return cmd
}

func newDescribeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "describe [package]",
		Short: "Print a main package's app spec as JSON",
		Long: `describe builds the main package (default ".") and prints the spec its
sdk.Run call declares, in kiln's stable JSON form.`,
		Example: `  kiln describe ./examples/search`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, app, cleanup, err := compileAndDescribe(cmd.Context(), pkgArg(args), false)
			if err != nil {
				return err
			}
			defer cleanup()
			b, err := app.MarshalStable()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

func pkgArg(args []string) string {
	if len(args) == 0 {
		return "."
	}
	return args[0]
}

// compileAndDescribe builds pkg into a temporary directory and asks the
// binary for its spec. cleanup removes the binary.
func compileAndDescribe(ctx context.Context, pkg string, image bool) (bin string, app *spec.App, cleanup func(), err error) {
	p, err := builder.Load(ctx, "", pkg)
	if err != nil {
		return "", nil, nil, err
	}
	dir, err := os.MkdirTemp("", "kiln-run-")
	if err != nil {
		return "", nil, nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	// Named after the package, so ps and logs say which program runs.
	bin = filepath.Join(dir, path.Base(p.ImportPath))
	if err := builder.Compile(ctx, pkg, builder.CompileOptions{Output: bin, Image: image}); err != nil {
		cleanup()
		return "", nil, nil, err
	}
	app, err = sdk.Describe(ctx, bin)
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	return bin, app, cleanup, nil
}

// specFlag adds --spec, which reads an app from its JSON form instead of
// building a package.
func specFlag(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVar(file, "spec", "", "read the app from this spec JSON file (as kiln describe prints) instead of a package")
}

// loadApp reads the app from a spec file when one is given, else from the
// package's own description of itself.
func loadApp(ctx context.Context, args []string, specFile string) (*spec.App, error) {
	if specFile == "" {
		_, app, cleanup, err := compileAndDescribe(ctx, pkgArg(args), false)
		if err != nil {
			return nil, err
		}
		cleanup()
		return app, nil
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
	return app, nil
}
