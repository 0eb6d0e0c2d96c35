package unikernel

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
	"github.com/kiln-dev/kiln/unikernel/vminit"
)

func requireMkfs(t *testing.T) {
	t.Helper()
	_, err := findMkfs()
	e2e.Require(t, "mkfs.ext4", err, "apt-get install -y "+MkfsPackage)
}

func TestDisksAreOnePerInstanceSizedFromTheStorage(t *testing.T) {
	app := &spec.App{Name: "kv", Services: []spec.Service{
		{Name: "kv", Shard: &spec.Shard{Shards: 2, Key: spec.Key{PathSegment: 2}}, Storage: &spec.Storage{Size: "1.5Mi"}},
		{Name: "web", Simple: &spec.Simple{Replicas: 2}},
		{Name: "docs", Scatter: &spec.Scatter{Leaves: 1}, Storage: &spec.Storage{Size: "1G"}},
	}}
	app.SetDefaults()
	topo, err := patterns.Build(app)
	if err != nil {
		t.Fatal(err)
	}
	got, err := disks(topo)
	want := []Disk{
		{Service: "kv", Instance: "shard-0", Size: 2 << 20},
		{Service: "kv", Instance: "shard-1", Size: 2 << 20},
		{Service: "docs", Instance: "leaf-0", Size: 954 << 20},
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("disks() = %v, %v; want %v", got, err, want)
	}
	if p, want := DiskPath("/state", got[1]), "/state/data/kv/shard-1.img"; p != want {
		t.Errorf("DiskPath = %q, want %q", p, want)
	}
}

func TestQEMUAttachesEachDiskWithTheSerialThatNamesItsInstance(t *testing.T) {
	im := &Image{Dir: "/im", Kernel: "vmlinuz", Initrd: "initramfs.cpio", Cmdline: "console=ttyS0",
		Disks: []Disk{{Service: "kv", Instance: "shard-0"}, {Service: "kv", Instance: "shard-1"}}}
	for machine, dev := range map[string]string{MachineMicroVM: "virtio-blk-device", MachinePC: "virtio-blk-pci"} {
		args := strings.Join(qemuArgs(im, machine, AccelTCG, 256, 1, "/c", nil, nil, []string{"/s/a,b.img", "/s/c.img"}), " ")
		for _, want := range []string{
			"-drive file=/s/a,,b.img,if=none,id=disk0,format=raw -device " + dev + ",drive=disk0,serial=kiln-disk-0",
			"-drive file=/s/c.img,if=none,id=disk1,format=raw -device " + dev + ",drive=disk1,serial=kiln-disk-1",
			vminit.ArgDisks + "=kv/shard-0,kv/shard-1",
		} {
			if !strings.Contains(args, want) {
				t.Errorf("qemuArgs(%s) = %s\nwant it to contain %s", machine, args, want)
			}
		}
	}
	if args := strings.Join(qemuArgs(im, MachineMicroVM, AccelTCG, 256, 1, "/c", nil, nil, nil), " "); strings.Contains(args, "-drive") || strings.Contains(args, vminit.ArgDisks) {
		t.Errorf("qemuArgs without disks = %s, want no drive", args)
	}
}

func TestADiskIsFormattedWhenNewAndKeptAfter(t *testing.T) {
	requireMkfs(t)
	state := t.TempDir()
	im := &Image{Disks: []Disk{{Service: "kv", Instance: "shard-0", Size: 64 << 20}}}
	paths, err := prepareDisks(context.Background(), im, state, MachineMicroVM)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(state, "data", "kv", "shard-0.img")}; !slices.Equal(paths, want) {
		t.Fatalf("prepareDisks = %v, want %v", paths, want)
	}
	fi, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 64<<20 || fi.Mode().Perm() != 0o600 {
		t.Errorf("the image is %d bytes, mode %v; want %d, 0600", fi.Size(), fi.Mode().Perm(), 64<<20)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > fi.Size()/2 {
		t.Errorf("the image takes %d bytes of disk for its %d: want it sparse", used, fi.Size())
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	// An ext2/3/4 superblock starts at 1024, its magic 56 bytes in.
	if magic := binary.LittleEndian.Uint16(b[1024+56:]); magic != 0xef53 {
		t.Errorf("the image's superblock magic is %#x, want ext4's 0xef53", magic)
	}
	if entries, _ := os.ReadDir(filepath.Dir(paths[0])); len(entries) != 1 {
		t.Errorf("%s holds %d files, want the image alone", filepath.Dir(paths[0]), len(entries))
	}

	// The second boot finds it and leaves it as it is.
	if err := os.WriteFile(paths[0], append(b[:len(b)-5], "kept!"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := prepareDisks(context.Background(), im, state, MachineMicroVM); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(paths[0]); !strings.HasSuffix(string(b), "kept!") {
		t.Error("the second prepareDisks made the image again")
	}
}

func TestTheMicroVMRefusesMoreDisksThanItHasSlots(t *testing.T) {
	im := &Image{Disks: make([]Disk, maxMicroVMDisks+1)}
	_, err := prepareDisks(context.Background(), im, t.TempDir(), MachineMicroVM)
	if want := "boot it on the pc machine"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("prepareDisks of %d disks = %v, want %q", len(im.Disks), err, want)
	}
}

// debugfsCat reads file from the ext4 image img without mounting it.
func debugfsCat(t *testing.T, img, file string) string {
	t.Helper()
	bin, err := exec.LookPath("debugfs")
	if err != nil {
		bin = "/usr/sbin/debugfs"
	}
	out, err := exec.Command(bin, "-R", "cat "+file, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R 'cat %s' %s: %v", file, img, err)
	}
	return string(out)
}

// TestKVStoreKeepsEveryKeyOnADiskPerShardAcrossBoots boots examples/kvstore,
// whose three shards keep storage, writes keys, shuts the VM down, and
// boots it again on the same state directory: every key is back. Each
// shard's disk image was made on the first boot, and holds that shard's
// marker and no other's.
func TestKVStoreKeepsEveryKeyOnADiskPerShardAcrossBoots(t *testing.T) {
	t.Parallel()
	requireKernel(t)
	requireQEMU(t)
	requireMkfs(t)
	im := image(t, "kvstore")
	if len(im.Disks) != 3 || !slices.ContainsFunc(im.Modules, func(m string) bool { return strings.Contains(m, "/virtio_blk.ko") }) {
		t.Fatalf("the kvstore image has disks %v and modules %v; want 3 disks and virtio_blk", im.Disks, im.Modules)
	}
	state := t.TempDir()
	vm := bootImage(t, im, BootOptions{StateDir: state})
	start := time.Now()
	keys, err := testbin.PutKeys(vm.Endpoints[0].URL, 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("100 keys written in %s", time.Since(start).Round(time.Millisecond))
	took := map[string]int{}
	for _, shard := range keys {
		took[shard]++
	}
	if len(took) != 3 {
		t.Errorf("the shards took %v of the keys, want some on each of the three", took)
	}
	start = time.Now()
	if err := vm.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("shut down in %s", time.Since(start).Round(time.Millisecond))
	console, _ := os.ReadFile(vm.Console)
	for i, d := range im.Disks {
		dir := vminit.MountPoint(spec.DefaultStoragePath, "kvstore", fmt.Sprintf("shard-%d", i))
		line := regexp.MustCompile(`kiln-init: ` + regexp.QuoteMeta(d.Name()) + `: /dev/vd[a-z] on ` + regexp.QuoteMeta(dir) + `\r?\n`)
		if !line.Match(console) {
			t.Errorf("the console does not say %s's disk was mounted on %s:\n%s", d.Name(), dir, console)
		}
		img := DiskPath(state, d)
		if got := strings.TrimSpace(debugfsCat(t, img, "/instance")); got != d.Name() {
			t.Errorf("the marker in %s says %q, want %q", img, got, d.Name())
		}
	}

	vm = bootImage(t, im, BootOptions{StateDir: state})
	if m := testbin.MissingKeys(vm.Endpoints[0].URL, keys); len(m) > 0 {
		t.Errorf("after a second boot, %d of %d keys are missing: %v", len(m), len(keys), m[:min(len(m), 5)])
	}
}
