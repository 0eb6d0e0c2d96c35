package main

import (
	"fmt"
	"os"
	"time"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/spf13/cobra"
)

// clusterFlags are kubectl's flags for finding a cluster.
func clusterFlags(cmd *cobra.Command, o *kubernetes.ClientOptions, target *string) {
	cmd.Flags().StringVar(target, "target", "kubernetes", "where to deploy: kubernetes")
	cmd.Flags().StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&o.Context, "context", "", "kubeconfig context (default: the current context)")
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", "namespace (default: the context's)")
}

func checkTarget(target string) error {
	if target != "kubernetes" {
		return fmt.Errorf("--target %q: this command deploys to kubernetes; for local processes use kiln run", target)
	}
	return nil
}

func newDeployCmd() *cobra.Command {
	var (
		co       kubernetes.ClientOptions
		target   string
		image    string
		timeout  time.Duration
		wait     bool
		specFile string
		repo     string
	)
	cmd := &cobra.Command{
		Use:   "deploy [package]",
		Short: "Deploy a main package's topology to a cluster and wait for the rollout",
		Long: `deploy renders the main package's topology (see kiln render), applies it
with server-side apply (field manager "kiln"), deletes the objects of the same
app that the new render no longer has, and waits until every workload has
rolled out. It fails naming the object and the reason when one does not.`,
		Example: `  kiln deploy --target kubernetes ./examples/kv --image registry.example/kv:1
  kiln deploy ./examples/search --image search:dev --context kind-dev -n search`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTarget(target); err != nil {
				return err
			}
			app, err := loadApp(cmd.Context(), args, specFile)
			if err != nil {
				return err
			}
			if image == "" {
				if repo == "" || specFile != "" {
					return fmt.Errorf("no image: pass --image REF, or --repo REPO with a package so kiln builds and pushes it")
				}
				if image, err = buildAndPush(cmd, pkgArg(args), repo); err != nil {
					return err
				}
			}
			objs, err := kubernetes.Render(app, kubernetes.Options{Image: image})
			if err != nil {
				return err
			}
			c, err := kubernetes.Connect(co, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if _, err := c.Apply(cmd.Context(), app.Name, objs); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			if err := c.Wait(cmd.Context(), objs, timeout); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s rolled out in namespace %s\n", app.Name, c.Namespace)
			return nil
		},
	}
	clusterFlags(cmd, &co, &target)
	cmd.Flags().StringVar(&image, "image", "", "image reference every role runs (default: build the package and push it to --repo)")
	cmd.Flags().StringVar(&repo, "repo", "", "without --image: the repository kiln pushes the image it builds to")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the rollout")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait for every workload to roll out")
	specFlag(cmd, &specFile)
	return cmd
}

func newDownCmd() *cobra.Command {
	var (
		co       kubernetes.ClientOptions
		target   string
		appArg   string
		specFile string
	)
	cmd := &cobra.Command{
		Use:   "down [package]",
		Short: "Delete everything of an app from a cluster and wait until it is gone",
		Long: `down deletes every object kiln deployed for the app (found by its labels)
and waits until they and their pods are gone. Name the app with --app, or give
the main package to read its name from its spec.`,
		Example: `  kiln down ./examples/kv
  kiln down --app kv -n shop`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTarget(target); err != nil {
				return err
			}
			name := appArg
			if name == "" {
				app, err := loadApp(cmd.Context(), args, specFile)
				if err != nil {
					return err
				}
				name = app.Name
			}
			c, err := kubernetes.Connect(co, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			deleted, err := c.Down(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s is down (%d objects deleted)\n", name, len(deleted))
			return nil
		},
	}
	clusterFlags(cmd, &co, &target)
	cmd.Flags().StringVar(&appArg, "app", "", "app name (default: read from the package's spec)")
	specFlag(cmd, &specFile)
	return cmd
}

// buildAndPush builds pkg's image for the host's platform and pushes it to
// repo, returning its digest reference.
func buildAndPush(cmd *cobra.Command, pkg, repo string) (string, error) {
	created, err := builder.SourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return "", err
	}
	res, err := builder.Build(cmd.Context(), pkg, builder.Options{
		Created: created, Compression: builder.Gzip, CacheDir: os.Getenv("KILN_CACHE"), Progress: cmd.ErrOrStderr(),
	})
	if err != nil {
		return "", err
	}
	pub, err := publish.Publish(cmd.Context(), res, publish.Target{Kind: publish.Registry}, publish.Options{Repo: repo, Progress: cmd.ErrOrStderr()})
	if err != nil {
		return "", err
	}
	return pub.Ref, nil
}
