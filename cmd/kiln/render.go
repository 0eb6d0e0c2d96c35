package main

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/unikernel/kubevirt"
	"github.com/spf13/cobra"
)

func newRenderCmd() *cobra.Command {
	var opts kubernetes.Options
	var images []string
	var format, specFile string
	var unikernel bool
	var vm kubevirt.Options
	cmd := &cobra.Command{
		Use:   "render [package | kiln.hcl]",
		Short: "Print the Kubernetes objects of an app's topology",
		Long: `render reads the app of a main package (default ".", built and asked for its
spec) or of a kiln.hcl, and prints the Kubernetes objects of every service's
whole topology: workloads, Services, PodDisruptionBudgets and autoscalers,
secure by default (Pod Security "restricted"). The output is deterministic
and kubectl apply -f - accepts it. Every pod learns where the app's services
are (their Services' DNS names) from KILN_SERVICES.

With --unikernel the workloads are KubeVirt VirtualMachineInstanceReplicaSets
instead: one microVM per pod, each booting the kernel boot image --image (an
OCI image holding the kernel and initramfs; kiln vm kubevirt --push REF builds
and pushes one and prints its digest) and running one role, with the same
labels and Services as the container path.`,
		Example: `  kiln render ./examples/kv --image registry.example/kv:1
  kiln render ./examples/search --image search:dev -n search -o json
  kiln render --unikernel ./examples/kv --image registry.example/kv-vm@sha256:...`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "yaml" && format != "json" {
				return fmt.Errorf("-o %q: want yaml or json", format)
			}
			pr, err := loadProject(cmd, args, specFile, true)
			if err != nil {
				return err
			}
			defer pr.close()
			app := pr.app
			ro, err := parseImages(images, app)
			if err != nil {
				return err
			}
			opts.Image, opts.Images = ro.Image, ro.Images
			var objs []metav1.Object
			if unikernel {
				if len(opts.Images) > 0 {
					return fmt.Errorf("--unikernel: one kernel boot image runs every service; give --image REF")
				}
				vm.Image, vm.Namespace = opts.Image, opts.Namespace
				objs, err = kubevirt.RenderApp(app, vm)
			} else {
				objs, err = kubernetes.Render(app, opts)
			}
			if err != nil {
				return pr.fieldError(err)
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
	imageFlag(cmd, &images)
	cmd.Flags().StringVarP(&opts.Namespace, "namespace", "n", "", "namespace written into every object")
	cmd.Flags().StringVarP(&format, "output", "o", "yaml", "yaml or json")
	cmd.Flags().BoolVar(&unikernel, "unikernel", false, "render KubeVirt VirtualMachineInstanceReplicaSets that boot the microVM image --image (from kiln vm kubevirt --push)")
	cmd.Flags().IntVar(&vm.Memory, "vm-memory", kubevirt.DefaultMemory, "with --unikernel: memory of each VM in MiB")
	cmd.Flags().IntVar(&vm.CPUs, "vm-cpus", kubevirt.DefaultCPUs, "with --unikernel: CPUs of each VM")
	cmd.Flags().StringVar(&vm.ClusterDNS, "cluster-dns", kubevirt.DefaultClusterDNS, "with --unikernel: the cluster DNS Service address the VMs resolve names with")
	cmd.Flags().StringVar(&vm.ClusterDomain, "cluster-domain", kubevirt.DefaultClusterDomain, "with --unikernel: the cluster's DNS domain")
	specFlag(cmd, &specFile)
	return cmd
}
