package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/spec"
	"github.com/spf13/cobra"
)

// clusterFlags are --target and kubectl's flags for finding a cluster.
func clusterFlags(cmd *cobra.Command, o *kubernetes.ClientOptions, target *string) {
	cmd.Flags().StringVar(target, "target", "kubernetes", "where to deploy: kubernetes, or docker (the local Docker engine)")
	kubeFlags(cmd, o, "")
}

// kubeFlags are kubectl's flags for finding a cluster; when names the
// flags' condition in their help ("with --target kubernetes: ").
func kubeFlags(cmd *cobra.Command, o *kubernetes.ClientOptions, when string) {
	cmd.Flags().StringVar(&o.Kubeconfig, "kubeconfig", "", when+"kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&o.Context, "context", "", when+"kubeconfig context (default: the current context)")
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", when+"namespace (default: the context's)")
}

func checkTarget(target string) error {
	if target != "kubernetes" && target != "docker" {
		return fmt.Errorf("--target %q: this command deploys to kubernetes or docker; for local processes use kiln run", target)
	}
	return nil
}

func newDeployCmd() *cobra.Command {
	var (
		co       kubernetes.ClientOptions
		target   string
		images   []string
		timeout  time.Duration
		wait     bool
		specFile string
		repo     string
	)
	cmd := &cobra.Command{
		Use:   "deploy [package | kiln.hcl]",
		Short: "Deploy an app's topology to a cluster and wait for the rollout",
		Long: `deploy renders the app's topology (see kiln render), applies it with
server-side apply (field manager "kiln"), deletes the objects of the same app
that the new render no longer has (a service removed from the app loses all
of its objects), and waits until every workload has rolled out. It fails
naming the object and the reason when one does not.

A job service is an Indexed batch/v1 Job, and deploy waits for it to
complete, printing its progress (succeeded, active and failed pods); a Job
that fails fails the deploy, naming a failed pod, its completion index and
how its container exited. A Job's pod template cannot change once created:
to run a changed job again, kiln down it first. A cron service is a
batch/v1 CronJob with the same schedule, time zone, concurrency policy,
starting deadline and suspend; deploy does not wait for its runs. The
--timeout covers the jobs too.

Without --image, it builds each main package of the app and pushes it to
--repo (to --repo/NAME for each program when the app has several).

With --target docker, the topology runs as containers on the local Docker
engine instead (each program built and loaded into the engine unless
--image names it) and stays up until kiln down --target docker: a second
deploy recreates only the pods that changed and removes what the app no
longer has.`,
		Example: `  kiln deploy --target kubernetes ./examples/kv --image registry.example/kv:1
  kiln deploy ./examples/report --repo registry.example/report
  kiln deploy --target docker ./examples/shop
  kiln deploy ./examples/search --image search:dev --context kind-dev -n search
  kiln deploy ./examples/shop/kiln.hcl --repo registry.example/shop -n shop`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTarget(target); err != nil {
				return err
			}
			pr, err := loadProject(cmd, args, specFile, true)
			if err != nil {
				return err
			}
			defer pr.close()
			if target == "docker" {
				return deployDocker(cmd, pr, images, string(builder.OCI))
			}
			app := pr.app
			ro, err := parseImages(images, app)
			if err != nil {
				return err
			}
			if len(images) == 0 {
				if repo == "" || specFile != "" {
					return fmt.Errorf("no image: pass --image REF, or --repo REPO with a package or kiln.hcl so kiln builds and pushes it")
				}
				if ro.Images, err = buildImages(cmd, pr, publish.Registry, repo, builder.OCI); err != nil {
					return err
				}
			}
			objs, err := kubernetes.Render(app, ro)
			if err != nil {
				return pr.fieldError(err)
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
			jobs := ""
			for _, s := range app.Services {
				if s.Job != nil {
					jobs = ", its jobs completed"
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s rolled out in namespace %s%s\n", app.Name, c.Namespace, jobs)
			return nil
		},
	}
	clusterFlags(cmd, &co, &target)
	imageFlag(cmd, &images)
	cmd.Flags().StringVar(&repo, "repo", "", "without --image: the repository kiln pushes the image it builds to")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the rollout and for every job to complete")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait for every workload to roll out and every job to complete")
	specFlag(cmd, &specFile)
	return cmd
}

func newDownCmd() *cobra.Command {
	var (
		co         kubernetes.ClientOptions
		target     string
		appArg     string
		specFile   string
		deleteData bool
		yes        bool
		stateDir   string
	)
	cmd := &cobra.Command{
		Use:   "down [package | kiln.hcl]",
		Short: "Delete everything of an app from a cluster and wait until it is gone",
		Long: `down deletes every object kiln deployed for the app (found by its labels)
and waits until they and their pods are gone. Name the app with --app, or give
the main package or kiln.hcl to read its name from its spec.

The storage of shards and leaves outlives down unless --delete-data is
given: PersistentVolumeClaims (unless the storage's on_delete deletes them
with the app) and Docker volumes are kept for the next deploy. With
--target local or vm, down stops nothing (a local run or a VM stops on
Ctrl-C): with --delete-data it deletes the storage kiln run, go run and kiln
vm run keep for each instance in the app's state directory (the local
target's directories and the vm target's disk images alike), after asking
(--yes asks not).`,
		Example: `  kiln down ./examples/kv
  kiln down --app kv -n shop
  kiln down --target local --delete-data ./examples/kvstore`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "local" || target == "vm" {
				if !deleteData {
					return fmt.Errorf("--target %s: a local run or a VM stops on Ctrl-C; kiln down --target %s --delete-data deletes the storage it keeps", target, target)
				}
			} else if err := checkTarget(target); err != nil {
				return err
			}
			name := appArg
			if name == "" {
				pr, err := loadProject(cmd, args, specFile, false)
				if err != nil {
					return err
				}
				pr.close()
				name = pr.app.Name
			}
			switch target {
			case "local", "vm":
				return downLocal(cmd, name, stateDir, yes)
			case "docker":
				return downDocker(cmd, name, deleteData)
			}
			c, err := kubernetes.Connect(co, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			deleted, err := c.Down(cmd.Context(), name)
			if err != nil {
				return err
			}
			if deleteData {
				claims, err := c.DeleteData(cmd.Context(), name)
				deleted = append(deleted, claims...)
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s is down (%d objects deleted)\n", name, len(deleted))
			return nil
		},
	}
	clusterFlags(cmd, &co, &target)
	cmd.Flags().StringVar(&appArg, "app", "", "app name (default: read from the package's spec)")
	cmd.Flags().BoolVar(&deleteData, "delete-data", false, "also delete the storage of the app's shards and leaves: its PersistentVolumeClaims, Docker volumes, or local directories and disk images")
	cmd.Flags().BoolVar(&yes, "yes", false, "with --delete-data: do not ask first")
	stateDirFlag(cmd, &stateDir)
	specFlag(cmd, &specFile)
	cmd.Flags().Lookup("target").Usage = "where the app runs: kubernetes, docker (the local Docker engine), or local or vm (with --delete-data: the storage kiln run keeps)"
	return cmd
}

// stateDirFlag is where the local and vm targets keep an app's state.
func stateDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "state-dir", "", "where the local and vm targets keep the app's storage (directories, disk images) and lease tokens (default: $"+local.EnvStateDir+", else kiln/apps/APP under the user's cache directory)")
}

// buildImages builds each program of pr for the host's platform and
// publishes it to kind: a registry (to repo, or to repo/NAME for each
// program when the app has several) or the Docker engine (as
// kiln.local/NAME). It returns each service's image reference, by digest.
func buildImages(cmd *cobra.Command, pr *project, kind publish.Kind, repo string, backend builder.Backend) (map[string]string, error) {
	created, err := builder.SourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return nil, err
	}
	compression := builder.Uncompressed
	if kind == publish.Registry {
		compression = builder.Gzip
	}
	images := map[string]string{}
	for _, p := range pr.programs {
		res, err := builder.Build(cmd.Context(), p.pkg, builder.Options{
			Dir: p.dir, Overlay: p.overlay, Backend: backend, Created: created, Compression: compression,
			CacheDir: os.Getenv("KILN_CACHE"), Tags: p.tags(pr.app), Progress: cmd.ErrOrStderr(),
		})
		if err != nil {
			return nil, err
		}
		to := repo
		if len(pr.programs) > 1 && repo != "" {
			to = repo + "/" + strings.ToLower(res.Name)
		}
		pub, err := publish.Publish(cmd.Context(), res, publish.Target{Kind: kind}, publish.Options{Repo: to, Progress: cmd.ErrOrStderr()})
		if err != nil {
			return nil, err
		}
		for _, s := range p.services {
			images[s] = pub.Ref
		}
	}
	return images, nil
}

// imageFlag adds --image, repeatable: REF for every service, or
// SERVICE=REF for one.
func imageFlag(cmd *cobra.Command, images *[]string) {
	cmd.Flags().StringArrayVar(images, "image", nil, "image every role runs: REF for every service, or SERVICE=REF for one (repeatable)")
}

// parseImages turns --image flags into render options.
func parseImages(flags []string, app *spec.App) (kubernetes.Options, error) {
	var o kubernetes.Options
	for _, f := range flags {
		name, ref, ok := strings.Cut(f, "=")
		if !ok {
			if o.Image != "" {
				return o, fmt.Errorf("--image %q: the image of every service is already %q; name a service with --image SERVICE=REF", f, o.Image)
			}
			o.Image = f
			continue
		}
		if app.Service(name) == nil {
			return o, fmt.Errorf("--image %s: app %q has no service %q; its services are %s", f, app.Name, name, strings.Join(quotedNames(app), ", "))
		}
		if o.Images == nil {
			o.Images = map[string]string{}
		}
		o.Images[name] = ref
	}
	return o, nil
}
