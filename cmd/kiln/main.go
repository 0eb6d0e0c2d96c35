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
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Compile Go programs into distributed systems",
		Long: `kiln runs a Go program that declares a service pattern (simple, shard,
scatter/gather, spread) as the pattern's whole topology: routers, leaves and
replicas. The default target runs them as local processes, with no daemon.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newDescribeCmd(), newBuildCmd(), newRenderCmd(), newDeployCmd(), newDownCmd(), newVMCmd())
	return root
}
