// Package unikernel turns a kiln program into a bootable microVM image and
// runs it under QEMU, the Lupine way: the program itself is PID 1 in an
// initramfs that sits beside a stock kernel (Debian's cloud kernel by
// default), booted by QEMU's microvm machine.
//
// Build compiles the program with the build tags kiln_image (no driver) and
// kiln_unikernel (which links in package vminit, the PID-1 init), writes the
// initramfs as a reproducible newc cpio, and records the kernel command line
// and a JSON manifest. Boot and Run start the image under QEMU, with KVM when
// a probe boot shows it works and software emulation (TCG) otherwise; the
// whole topology runs in one VM, under the init. Each instance that keeps
// storage gets a disk of its own, an ext4 image in the app's state
// directory that Boot makes once and attaches at every boot (disk.go).
// Shutdown stops it the way Ctrl-C stops the local target. Package
// kubevirt renders the same image for KubeVirt.
package unikernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Tag is the build tag that links the PID-1 init into a program.
const Tag = "kiln_unikernel"

// Paths inside the initramfs.
const (
	InitPath        = "init"              // the program
	AppPath         = "etc/kiln/app.json" // its spec
	ModuleListPath  = "etc/kiln/modules"  // module files to load, in order
	GuestIP         = "10.0.2.15/24"      // QEMU user networking's guest address
	GuestGateway    = "10.0.2.2"          // and its gateway
	FirstGuestPort  = 8080                // the first entry point's port in the guest
	manifestName    = "manifest.json"     // in the output directory
	kernelFileName  = "vmlinuz"           // in the output directory
	pvhFileName     = "vmlinux"           // the same kernel, uncompressed (PVH)
	initrdFileName  = "initramfs.cpio"    // in the output directory
	cmdlineFileName = "cmdline"           // in the output directory
	binaryFileName  = "program"           // in the output directory, for reference
	compiledTags    = "kiln_image," + Tag // what the program is built with
	ldflags         = "-s -w"             // stripped, like container images
	goarch          = "amd64"             // QEMU here is qemu-system-x86_64
	goos            = "linux"
	consoleArgs     = "console=ttyS0" // the microvm's ISA serial port
	// A panic exits QEMU (with -no-reboot). The kernel's crypto
	// self-tests cost about 0.2s of a software-emulated boot, and the
	// program does its cryptography in Go, not with the kernel's.
	bootArgs = "panic=-1 quiet cryptomgr.notests=1"
)

// BaseCmdline is the kernel command line every image starts with, before
// its network and role arguments.
func BaseCmdline() string { return consoleArgs + " " + bootArgs }

// Options say what to build.
type Options struct {
	// Package is the main package, "." by default, resolved in Dir.
	Package string
	Dir     string
	// Overlay is a go build -overlay file (see builder.CompileOptions);
	// "" means none.
	Overlay string
	// Out is the directory that receives the image; it is created.
	Out string
	// Kernel and Modules pick the kernel; empty finds Debian's cloud kernel.
	Kernel, Modules string
	// Modules to load at boot, by name; nil means DefaultModules. An app
	// that keeps storage gets StorageModules too.
	LoadModules []string
	// App is the program's spec when the caller already has it; nil asks
	// the program (KILN_ROLE=describe).
	App *spec.App
	// Gzip compresses the initramfs (initramfs.cpio.gz): less than half the
	// size, for about 0.1s more boot under software emulation.
	Gzip bool
}

// Image is a built microVM image.
type Image struct {
	Dir    string `json:"-"`
	Kernel string `json:"kernel"` // file name in Dir
	Initrd string `json:"initrd"` // file name in Dir
	// PVH is the kernel uncompressed, as an ELF with a PVH entry point
	// (file name in Dir), that the microvm machine boots faster than the
	// bzImage; empty when the kernel has no PVH entry.
	PVH     string `json:"pvh,omitempty"`
	Cmdline string `json:"cmdline"` // the kernel command line, without accelerator tuning
	// KernelRelease, HZ describe the kernel.
	KernelRelease string `json:"kernelRelease"`
	HZ            int    `json:"hz"`
	// Modules are the module files in the initramfs, in load order.
	Modules []string `json:"modules"`
	// Entries are the guest ports of each service's entry point, in spec
	// order.
	Entries []Entry `json:"entries"`
	// Disks are the instances that keep storage, each of which Boot gives
	// a disk of its own, in this order.
	Disks []Disk `json:"disks,omitempty"`
	// Sizes and digests of the files.
	Files map[string]FileInfo `json:"files"`
	// App is the program's spec.
	App *spec.App `json:"app"`
}

// Entry is where one service serves inside the guest.
type Entry struct {
	Service   string `json:"service"`
	GuestPort int    `json:"guestPort"`
}

// FileInfo is one output file's size and SHA-256.
type FileInfo struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// KernelPath is the kernel's path.
func (im *Image) KernelPath() string { return filepath.Join(im.Dir, im.Kernel) }

// InitrdPath is the initramfs's path.
func (im *Image) InitrdPath() string { return filepath.Join(im.Dir, im.Initrd) }

// Size is the image's size in bytes: kernel plus initramfs.
func (im *Image) Size() int64 { return im.Files[im.Kernel].Size + im.Files[im.Initrd].Size }

// Build compiles the program and writes a bootable image to o.Out: the
// kernel (vmlinuz), the initramfs (initramfs.cpio), the kernel command line
// (cmdline) and manifest.json.
func Build(ctx context.Context, o Options) (*Image, error) {
	if o.Out == "" {
		return nil, fmt.Errorf("unikernel: no output directory")
	}
	if o.Package == "" {
		o.Package = "."
	}
	k, err := FindKernel(o.Kernel, o.Modules)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	bin := filepath.Join(o.Out, binaryFileName)
	if err := Compile(ctx, o.Dir, o.Package, bin, o.Overlay); err != nil {
		return nil, err
	}
	app := o.App
	if app == nil {
		if app, err = describe(ctx, bin); err != nil {
			return nil, err
		}
	}
	t, err := patterns.Build(app)
	if err != nil {
		return nil, err
	}
	if err := t.NoJobs("vm"); err != nil {
		return nil, err
	}
	if err := t.NoLeases("vm"); err != nil {
		return nil, err
	}
	disks, err := disks(t)
	if err != nil {
		return nil, err
	}
	names := o.LoadModules
	if names == nil {
		names = DefaultModules
	}
	if len(disks) > 0 {
		names = append(slices.Clip(names), StorageModules...)
	}
	mods, err := k.ModuleFiles(names)
	if err != nil {
		return nil, err
	}
	appJSON, err := app.MarshalStable()
	if err != nil {
		return nil, err
	}

	a := NewArchive()
	prog, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	a.File(InitPath, 0o755, prog)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "etc/kiln"} {
		a.Dir(d, 0o755)
	}
	a.Dir("tmp", 0o1777)
	a.CharDev("dev/console", 0o600, 5, 1)
	a.CharDev("dev/null", 0o666, 1, 3)
	a.File(AppPath, 0o644, appJSON)
	var list []string
	for _, m := range mods {
		m, b, err := k.ModuleData(m)
		if err != nil {
			return nil, err
		}
		p := filepath.ToSlash(filepath.Join("lib/modules", k.Release, m))
		a.File(p, 0o644, b)
		list = append(list, "/"+p)
	}
	a.File(ModuleListPath, 0o644, []byte(strings.Join(list, "\n")+"\n"))

	im := &Image{
		Dir: o.Out, Kernel: kernelFileName, Initrd: initrdFileName,
		KernelRelease: k.Release, HZ: k.HZ, Modules: list, App: app, Disks: disks,
		Files: map[string]FileInfo{},
	}
	for i, s := range app.Services {
		im.Entries = append(im.Entries, Entry{Service: s.Name, GuestPort: FirstGuestPort + i})
	}
	im.Cmdline = strings.Join([]string{consoleArgs, bootArgs,
		"kiln.ip=" + GuestIP, "kiln.gw=" + GuestGateway, fmt.Sprintf("kiln.port=%d", FirstGuestPort)}, " ")

	var cpio bytes.Buffer
	if o.Gzip {
		// A zero gzip header (no name, no mtime) keeps the file
		// reproducible.
		zw, err := gzip.NewWriterLevel(&cpio, gzip.BestCompression)
		if err != nil {
			return nil, err
		}
		if _, err := a.WriteTo(zw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		im.Initrd += ".gz"
	} else if _, err := a.WriteTo(&cpio); err != nil {
		return nil, err
	}
	if err := writeFile(im, im.Initrd, cpio.Bytes()); err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(k.Image)
	if err != nil {
		return nil, err
	}
	if err := writeFile(im, kernelFileName, kb); err != nil {
		return nil, err
	}
	if elf := ExtractPVH(kb); elf != nil {
		im.PVH = pvhFileName
		if err := writeFile(im, pvhFileName, elf); err != nil {
			return nil, err
		}
	}
	if err := writeFile(im, cmdlineFileName, []byte(im.Cmdline+"\n")); err != nil {
		return nil, err
	}
	mb, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, manifestName), append(mb, '\n'), 0o644); err != nil {
		return nil, err
	}
	return im, nil
}

func writeFile(im *Image, name string, b []byte) error {
	if err := os.WriteFile(filepath.Join(im.Dir, name), b, 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	im.Files[name] = FileInfo{Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
	return nil
}

// Load reads an image that Build wrote to dir.
func Load(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("%s is not a kiln microVM image (kiln vm build writes one): %w", dir, err)
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, manifestName, err)
	}
	im.Dir = dir
	return &im, nil
}

// Compile builds pkg as a static linux/amd64 binary for a microVM: trimmed,
// stripped, without VCS stamping (so two builds match), without the driver
// (kiln_image) and with the PID-1 init (kiln_unikernel). overlay is a go
// build -overlay file, or "".
func Compile(ctx context.Context, dir, pkg, out, overlay string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "-trimpath", "-buildvcs=false",
		"-tags", compiledTags, "-ldflags", ldflags, "--", pkg)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch), builder.OverlayEnv(overlay)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("go build %s for a microVM failed:\n%s", pkg, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// describe asks the program for its spec.
func describe(ctx context.Context, bin string) (*spec.App, error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), patterns.EnvRole+"="+string(patterns.RoleDescribe))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("describing %s: %w\n%s\n(does its main call sdk.Run?)", bin, err, strings.TrimSpace(stderr.String()))
	}
	app, err := spec.Parse(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("describing %s: it printed no kiln spec (does its main call sdk.Run?): %w", bin, err)
	}
	return app, nil
}
