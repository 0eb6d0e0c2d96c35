package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/unikernel"
	"github.com/kiln-dev/kiln/unikernel/kubevirt"
	"github.com/spf13/cobra"
)

// vmFlags are the flags every vm command shares.
type vmFlags struct {
	kernel, modules string
	gzip            bool
	machine, accel  string
	memory, cpus    int
	appendArgs      string
	stateDir        string
}

func (f *vmFlags) addBuild(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kernel, "kernel", "", "kernel image (default: Debian's cloud kernel, /boot/vmlinuz-*-cloud-amd64, from apt package "+unikernel.KernelPackage+")")
	cmd.Flags().StringVar(&f.modules, "modules", "", "the kernel's modules directory (default: /lib/modules/<release of --kernel>)")
	cmd.Flags().BoolVar(&f.gzip, "gzip", false, "gzip the initramfs (less than half the size, a little slower to boot)")
}

func (f *vmFlags) addBoot(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.machine, "machine", unikernel.MachineMicroVM, "QEMU machine type: microvm or pc")
	cmd.Flags().StringVar(&f.accel, "accel", unikernel.AccelAuto, "accelerator: auto (KVM when a probe boot works, else TCG), kvm or tcg")
	cmd.Flags().IntVar(&f.memory, "memory", 256, "guest memory in MiB")
	cmd.Flags().IntVar(&f.cpus, "cpus", 0, "guest CPUs (default 2 with KVM, 1 under software emulation, where a second vCPU slows the boot)")
	cmd.Flags().StringVar(&f.appendArgs, "append", "", "more kernel command line, e.g. kiln.env=KILN_ROLE=replica,KILN_SERVICE=hello to run one role")
	stateDirFlag(cmd, &f.stateDir)
}

// unikernelOptions says what to build for arg, a main package or a
// descriptor of an app built from one program.
func (f *vmFlags) unikernelOptions(cmd *cobra.Command, arg, out string) (o unikernel.Options, done func(), err error) {
	o = unikernel.Options{Package: arg, Out: out, Kernel: f.kernel, Modules: f.modules, Gzip: f.gzip}
	pr, err := openPrograms(cmd.Context(), arg, varsOf(cmd))
	if err != nil {
		return o, nil, err
	}
	p, err := pr.single("the microVM target")
	if err != nil {
		pr.close()
		return o, nil, err
	}
	// done removes the overlay, which the caller's build reads.
	o.Package, o.Dir, o.Overlay, o.App = p.pkg, p.dir, p.overlay, pr.app
	return o, pr.close, nil
}

func (f *vmFlags) boot(port int) unikernel.BootOptions {
	o := unikernel.BootOptions{HostPorts: []int{port}, Machine: f.machine, Accel: f.accel, Memory: f.memory, CPUs: f.cpus,
		StateDir: cmp.Or(f.stateDir, os.Getenv(local.EnvStateDir))}
	if f.appendArgs != "" {
		o.ExtraArgs = strings.Fields(f.appendArgs)
	}
	return o
}

func newVMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Build a main package into a microVM image and run it under QEMU",
		Long: `vm turns a main package into a bootable microVM image, the Lupine way: the
program is PID 1 in an initramfs beside a stock kernel (Debian's
` + unikernel.KernelPackage + ` by default), and QEMU's microvm machine boots it
(apt package ` + unikernel.QEMUPackage + `). The whole topology runs inside one VM.`,
	}
	cmd.AddCommand(newVMBuildCmd(), newVMRunCmd(), newVMKubeVirtCmd())
	return cmd
}

func newVMBuildCmd() *cobra.Command {
	var f vmFlags
	var out string
	cmd := &cobra.Command{
		Use:   "build [package | kiln.hcl]",
		Short: "Build a microVM image: kernel, initramfs, command line and manifest",
		Long: `build compiles the main package (default ".") as a static binary with the
PID-1 init linked in, and writes to --out: vmlinuz (the kernel), initramfs.cpio
(a reproducible newc archive: the program as /init plus the virtio modules the
kernel lacks), cmdline and manifest.json.`,
		Example: `  kiln vm build ./examples/kv --out kv.vm`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			o, done, err := f.unikernelOptions(cmd, pkgArg(args), out)
			if err != nil {
				return err
			}
			defer done()
			im, err := unikernel.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			printImage(cmd.OutOrStdout(), im)
			return nil
		},
	}
	f.addBuild(cmd)
	cmd.Flags().StringVar(&out, "out", "", "directory to write the image to")
	return cmd
}

func printImage(w io.Writer, im *unikernel.Image) {
	fmt.Fprintf(w, "kernel   %s (%s, %d bytes)\n", im.KernelPath(), im.KernelRelease, im.Files[im.Kernel].Size)
	fmt.Fprintf(w, "initrd   %s (%d bytes, sha256 %s)\n", im.InitrdPath(), im.Files[im.Initrd].Size, im.Files[im.Initrd].SHA256)
	fmt.Fprintf(w, "cmdline  %s\n", im.Cmdline)
	fmt.Fprintf(w, "manifest %s\n", filepath.Join(im.Dir, "manifest.json"))
}

func newVMRunCmd() *cobra.Command {
	var f vmFlags
	var port int
	var image string
	cmd := &cobra.Command{
		Use:   "run [package | kiln.hcl]",
		Short: "Build a main package's microVM image and boot it under QEMU",
		Long: `run builds the image (or takes one built earlier with --image) and boots it
under QEMU, forwarding 127.0.0.1:PORT to the entry point in the guest. It prints
the same serving line as kiln run, writes the guest console to console.log in
the image directory, and stops QEMU on Ctrl-C. The same as kiln run --target vm.

Each shard or leaf that keeps storage gets a disk of its own: an ext4 image,
data/SERVICE/INSTANCE.img in the app's state directory (--state-dir), made
the first time with mkfs.ext4 (apt package ` + unikernel.MkfsPackage + `) and kept
across runs. The guest mounts it at PATH/SERVICE/INSTANCE, under the
storage's path (/data/kvstore/shard-0), and hands it to that instance as
KILN_DATA. kiln down --target vm --delete-data deletes the images.`,
		Example: `  kiln vm run ./examples/kv --port 8080
  kiln vm run --image kv.vm`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if image != "" {
				if len(args) > 0 {
					return fmt.Errorf("give either a package or --image, not both")
				}
				im, err := unikernel.Load(image)
				if err != nil {
					return err
				}
				return runImage(cmd.Context(), im, f, port, cmd.OutOrStdout())
			}
			return runVM(cmd, pkgArg(args), f, port)
		},
	}
	f.addBuild(cmd)
	f.addBoot(cmd)
	cmd.Flags().IntVar(&port, "port", 0, "entry port on 127.0.0.1 (default: a free port)")
	cmd.Flags().StringVar(&image, "image", "", "boot this image directory (from kiln vm build) instead of building one")
	return cmd
}

// runVM builds arg (a package or descriptor) into a temporary image and
// runs it until the command's context ends. It is what kiln run --target
// vm does.
func runVM(cmd *cobra.Command, arg string, f vmFlags, port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("--port %d: want a port number in 1–65535", port)
	}
	if _, err := unikernel.FindQEMU(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kiln-vm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o, done, err := f.unikernelOptions(cmd, arg, dir)
	if err != nil {
		return err
	}
	defer done()
	im, err := unikernel.Build(cmd.Context(), o)
	if err != nil {
		return err
	}
	return runImage(cmd.Context(), im, f, port, cmd.OutOrStdout())
}

func runImage(ctx context.Context, im *unikernel.Image, f vmFlags, port int, out io.Writer) error {
	if f.machine == "" {
		f.machine = unikernel.MachineMicroVM
	}
	o := f.boot(port)
	// The guest's console (the init's and every process's output) goes to
	// stderr, as process output does on the local target.
	o.ConsoleOutput = os.Stderr
	return unikernel.Run(ctx, im, o, out)
}

func newVMKubeVirtCmd() *cobra.Command {
	var f vmFlags
	var image, push, kernelImage, namespace string
	cmd := &cobra.Command{
		Use:   "kubevirt [package | kiln.hcl]",
		Short: "Render a microVM image as KubeVirt VirtualMachineInstanceReplicaSets",
		Long: `kubevirt prints YAML for KubeVirt: one VirtualMachineInstanceReplicaSet per
workload of the topology (one VM per pod, each running one role, booted with
KubeVirt's kernel boot on the pod network through the masquerade binding) and
the container path's Services. kiln render --unikernel prints the same.

The kernel and initramfs travel in an OCI image: --push REF builds it and
pushes it (credentials from the Docker config), and the replica sets name it
by digest; --kernel-image REF names one pushed earlier.`,
		Example: `  kiln vm kubevirt ./examples/kv --push registry.example/kv-vm | kubectl apply -f -`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (push == "") == (kernelImage == "") {
				return fmt.Errorf("give one of --push REF or --kernel-image REF")
			}
			var im *unikernel.Image
			var err error
			if image != "" {
				if len(args) > 0 {
					return fmt.Errorf("give either a package or --image, not both")
				}
				im, err = unikernel.Load(image)
			} else {
				dir, derr := os.MkdirTemp("", "kiln-vm-")
				if derr != nil {
					return derr
				}
				defer os.RemoveAll(dir)
				o, done, oerr := f.unikernelOptions(cmd, pkgArg(args), dir)
				if oerr != nil {
					return oerr
				}
				defer done()
				im, err = unikernel.Build(cmd.Context(), o)
			}
			if err != nil {
				return err
			}
			ref := kernelImage
			if push != "" {
				if ref, err = kubevirt.Push(cmd.Context(), im, push); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "kiln: pushed the kernel boot image as %s\n", ref)
			}
			out, err := kubevirt.Render(im, kubevirt.Options{Image: ref, Namespace: namespace, Memory: f.memory, CPUs: f.cpus})
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f.addBuild(cmd)
	cmd.Flags().IntVar(&f.memory, "memory", 256, "guest memory in MiB")
	cmd.Flags().IntVar(&f.cpus, "cpus", kubevirt.DefaultCPUs, "guest CPUs")
	cmd.Flags().StringVar(&image, "image", "", "render this image directory (from kiln vm build) instead of building one")
	cmd.Flags().StringVar(&push, "push", "", "push the kernel boot image to this reference")
	cmd.Flags().StringVar(&kernelImage, "kernel-image", "", "the kernel boot image, pushed earlier")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of the objects")
	return cmd
}
