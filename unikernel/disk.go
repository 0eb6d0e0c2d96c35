package unikernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/unikernel/vminit"
)

// StorageModules are the drivers a guest needs for its disks: the virtio
// block device and the ext4 file system (built into Debian's cloud kernel,
// and then left out).
var StorageModules = []string{"virtio_blk", "ext4"}

// MkfsPackage is the apt package of mkfs.ext4.
const MkfsPackage = "e2fsprogs"

// Disk is the storage of one instance of a shard or scatter service: a
// raw image holding an ext4 file system on the host, a virtio block device
// in the guest, which the init mounts for that instance alone (see package
// vminit).
type Disk struct {
	Service  string `json:"service"`
	Instance string `json:"instance"` // "shard-2"
	// Size is the size in bytes of a new image: the storage's size,
	// rounded up to a whole MiB.
	Size int64 `json:"size"`
}

// Name is how kiln.disks names the disk's instance: "kvstore/shard-2".
func (d Disk) Name() string { return d.Service + "/" + d.Instance }

// DiskPath is where the host keeps d's image under an app's state
// directory: data/SERVICE/INSTANCE.img, beside the directory the local
// target keeps for the same instance.
func DiskPath(state string, d Disk) string {
	return local.DataDir(state, d.Service, d.Instance) + ".img"
}

// disks lists a disk for each instance of t that keeps storage, in the
// topology's order.
func disks(t *patterns.Topology) ([]Disk, error) {
	var out []Disk
	for _, w := range t.Workloads {
		if w.Storage == nil {
			continue
		}
		q, err := resource.ParseQuantity(w.Storage.Size)
		if err != nil || q.Value() <= 0 {
			return nil, fmt.Errorf("service %q: storage size %q is not a size like \"1Gi\"", w.Service, w.Storage.Size)
		}
		const mib = 1 << 20
		size := (q.Value() + mib - 1) / mib * mib
		for r := 0; r < w.Replicas; r++ {
			out = append(out, Disk{Service: w.Service, Instance: w.Instance(r), Size: size})
		}
	}
	return out, nil
}

// maxMicroVMDisks is how many disks the microvm machine takes: it has 24
// virtio-mmio slots, and the network card and the entropy source hold two.
const maxMicroVMDisks = 22

// prepareDisks returns the image of each disk of im under state, in
// order, creating those that do not exist yet: an image is kept across
// boots, and only a new one is formatted.
func prepareDisks(ctx context.Context, im *Image, state, machine string) ([]string, error) {
	if len(im.Disks) == 0 {
		return nil, nil
	}
	if machine == MachineMicroVM && len(im.Disks) > maxMicroVMDisks {
		return nil, fmt.Errorf("vm: %d instances keep storage, and the %s machine has room for %d disks; boot it on the %s machine", len(im.Disks), MachineMicroVM, maxMicroVMDisks, MachinePC)
	}
	var paths []string
	for _, d := range im.Disks {
		p := DiskPath(state, d)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := createDisk(ctx, p, d.Size); err != nil {
				return nil, fmt.Errorf("vm: the disk of %s: %w", d.Name(), err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("vm: the disk of %s: %w", d.Name(), err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// createDisk writes a sparse image of size bytes at path, holding an empty
// ext4 file system, readable by this user alone. The host formats it, not
// the guest: the guest is the program and nothing else, with no mkfs, and
// e2fsprogs, which every Debian system has, makes a file system the
// kernel mounts as it is. The image is made under a temporary name and
// renamed, so an interrupted format leaves no half-made disk behind.
func createDisk(ctx context.Context, path string, size int64) error {
	mkfs, err := findMkfs()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// The program runs as root in the guest, so root owns the file
	// system. Inode tables and journal are zeroed now, on the host,
	// rather than by the guest's kernel in the background after each
	// mount (mostly by punching holes: the image stays sparse).
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F",
		"-E", "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0", tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s %s: %w: %s", mkfs, tmp, err, strings.TrimSpace(out.String()))
	}
	return os.Rename(tmp, path)
}

// findMkfs finds mkfs.ext4 in PATH, or in the sbin directories, which a
// user's PATH often lacks.
func findMkfs() (string, error) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("mkfs.ext4 not found, which formats each instance's new disk (install it with `apt-get install -y %s`)", MkfsPackage)
}

// diskArgs are QEMU's arguments that attach the disks at paths, in order,
// and the kernel command line that tells the init whose each one is.
func diskArgs(im *Image, machine string, paths []string) (qemu []string, cmdline string) {
	if len(paths) == 0 {
		return nil, ""
	}
	dev := "virtio-blk-device" // on virtio-mmio
	if machine == MachinePC {
		dev = "virtio-blk-pci"
	}
	var names []string
	for i, p := range paths {
		id := fmt.Sprintf("disk%d", i)
		// The file name goes into a QEMU option list, where a comma is
		// written twice.
		file := strings.ReplaceAll(p, ",", ",,")
		qemu = append(qemu,
			"-drive", "file="+file+",if=none,id="+id+",format=raw",
			"-device", dev+",drive="+id+",serial="+vminit.DiskSerial(i))
		names = append(names, im.Disks[i].Name())
	}
	return qemu, vminit.ArgDisks + "=" + strings.Join(names, ",")
}
