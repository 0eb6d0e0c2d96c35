// Command kiln compiles Go programs into distributed systems: it runs,
// describes, builds and deploys programs that declare a service pattern with
// kiln's SDK.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		// kiln run of a job exits as its failed run did.
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) && ec.ExitCode() > 0 {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Compile Go programs into distributed systems",
		Long: `kiln runs an app of one or more services, each following a pattern (simple,
shard, scatter/gather, spread, or a job or cron job that runs a function to
completion), as every pattern's whole topology: routers, leaves and
replicas. The app is declared in Go with kiln's SDK (a main package), with
//kiln: annotations on the functions that make its handlers (a package with
no main: kiln generates it), or in a kiln.hcl descriptor that names each
service's package; every command takes any of the three. The default target
runs everything as local processes, with no daemon; kiln dev swaps in each
save as you edit.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addVarFlag(root)
	root.AddCommand(newRunCmd(), newDevCmd(), newDescribeCmd(), newValidateCmd(), newBuildCmd(), newRenderCmd(), newDeployCmd(), newDownCmd(), newVMCmd(), newEjectCmd())
	return root
}
