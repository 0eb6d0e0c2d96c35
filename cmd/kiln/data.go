package main

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kiln-dev/kiln/deployer/local"
)

// downLocal deletes the storage the local and vm targets keep for app's
// shards and leaves: directories (data/SERVICE/INSTANCE) and disk images
// (data/SERVICE/INSTANCE.img). It asks first, on a terminal; elsewhere yes
// must say so.
func downLocal(cmd *cobra.Command, app, stateDir string, yes bool) error {
	stateDir = cmp.Or(stateDir, os.Getenv(local.EnvStateDir), local.StateDir(app))
	found, _ := filepath.Glob(local.DataDir(stateDir, "*", "*"))
	// An instance run on both targets has both: count it once.
	instances := map[string]bool{}
	for _, f := range found {
		instances[strings.TrimSuffix(f, ".img")] = true
	}
	out := cmd.OutOrStdout()
	if len(instances) == 0 {
		fmt.Fprintf(out, "kiln: %s keeps no data under %s\n", app, stateDir)
		return nil
	}
	if !yes {
		in, ok := cmd.InOrStdin().(*os.File)
		if !ok || !term.IsTerminal(int(in.Fd())) {
			return fmt.Errorf("deleting the data of %d instances of %s under %s needs a confirmation: run it on a terminal, or add --yes", len(instances), app, stateDir)
		}
		fmt.Fprintf(out, "Delete the data of %s's %d instances under %s? [y/N] ", app, len(instances), filepath.Join(stateDir, "data"))
		if !confirmed(in) {
			return errors.New("nothing deleted")
		}
	}
	if err := os.RemoveAll(filepath.Join(stateDir, "data")); err != nil {
		return fmt.Errorf("deleting the data of %s: %w", app, err)
	}
	fmt.Fprintf(out, "kiln: deleted the data of %s's %d instances under %s\n", app, len(instances), stateDir)
	return nil
}

func confirmed(r io.Reader) bool {
	line, _ := bufio.NewReader(r).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}
