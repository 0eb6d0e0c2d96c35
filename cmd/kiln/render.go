package main

import (
	"fmt"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/spf13/cobra"
)

func newRenderCmd() *cobra.Command {
	var opts kubernetes.Options
	var format, specFile string
	cmd := &cobra.Command{
		Use:   "render [package]",
		Short: "Print the Kubernetes objects of a main package's topology",
		Long: `render builds the main package (default "."), reads its spec and prints the
Kubernetes objects of its whole topology: workloads, Services, PodDisruption-
Budgets and autoscalers, secure by default (Pod Security "restricted"). The
output is deterministic and kubectl apply -f - accepts it.`,
		Example: `  kiln render ./examples/kv --image registry.example/kv:1
  kiln render ./examples/search --image search:dev -n search -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "yaml" && format != "json" {
				return fmt.Errorf("-o %q: want yaml or json", format)
			}
			app, err := loadApp(cmd.Context(), args, specFile)
			if err != nil {
				return err
			}
			objs, err := kubernetes.Render(app, opts)
			if err != nil {
				return err
			}
			out, err := kubernetes.YAML(objs)
			if format == "json" {
				out, err = kubernetes.JSONList(objs)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&opts.Image, "image", "", "image reference every role runs (required)")
	cmd.Flags().StringVarP(&opts.Namespace, "namespace", "n", "", "namespace written into every object")
	cmd.Flags().StringVarP(&format, "output", "o", "yaml", "yaml or json")
	specFlag(cmd, &specFile)
	return cmd
}
