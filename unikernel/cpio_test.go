package unikernel

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArchiveIsDeterministic(t *testing.T) {
	build := func(order []int) []byte {
		a := NewArchive()
		adds := []func(){
			func() { a.File("init", 0o755, []byte("program")) },
			func() { a.File("lib/modules/6.1/kernel/virtio.ko", 0o644, []byte("module!")) },
			func() { a.CharDev("dev/console", 0o600, 5, 1) },
			func() { a.Dir("tmp", 0o1777) },
			func() { a.Symlink("bin", "/") },
		}
		for _, i := range order {
			adds[i]()
		}
		var buf bytes.Buffer
		if _, err := a.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	one, two := build([]int{0, 1, 2, 3, 4}), build([]int{4, 3, 2, 1, 0})
	if !bytes.Equal(one, two) {
		t.Fatal("the same entries added in another order give different archives")
	}
	if len(one)%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", len(one))
	}
	entries, err := ReadArchive(bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
	}
	want := []string{"bin", "dev", "dev/console", "init", "lib", "lib/modules", "lib/modules/6.1", "lib/modules/6.1/kernel", "lib/modules/6.1/kernel/virtio.ko", "tmp"}
	if !slices.Equal(paths, want) {
		t.Errorf("paths %q, want %q (sorted, parents first)", paths, want)
	}
	for _, e := range entries {
		switch e.Path {
		case "init":
			if e.Mode != modeReg|0o755 || string(e.Data) != "program" {
				t.Errorf("init: mode %o data %q", e.Mode, e.Data)
			}
		case "dev/console":
			if e.Mode != modeChar|0o600 || e.Major != 5 || e.Minor != 1 {
				t.Errorf("dev/console: mode %o dev %d,%d", e.Mode, e.Major, e.Minor)
			}
		case "tmp":
			if e.Mode != modeDir|0o1777 {
				t.Errorf("tmp: mode %o", e.Mode)
			}
		case "bin":
			if e.Mode != modeLink|0o777 || string(e.Data) != "/" {
				t.Errorf("bin: mode %o target %q", e.Mode, e.Data)
			}
		}
	}
	// Every header has uid, gid and mtime 0: fields 2, 3 and 5.
	for off := 0; off < len(one); {
		hdr := string(one[off : off+110])
		if !strings.HasPrefix(hdr, "070701") {
			t.Fatalf("no newc magic at %d", off)
		}
		for _, f := range []int{2, 3, 5} {
			if v := hdr[6+8*f : 14+8*f]; v != "00000000" {
				t.Errorf("header at %d: field %d is %s, want 0", off, f, v)
			}
		}
		var size, nsize int
		fmtSscan(hdr[54:62], &size)
		fmtSscan(hdr[94:102], &nsize)
		name := strings.TrimRight(string(one[off+110:off+110+nsize]), "\x00")
		off += 110 + nsize
		off += (4 - off%4) % 4
		off += size
		off += (4 - off%4) % 4
		if name == "TRAILER!!!" {
			if off != len(one) {
				t.Errorf("%d bytes after the trailer", len(one)-off)
			}
			break
		}
	}
}

func TestModuleFilesOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("modules.dep", `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`)
	write("modules.builtin", "kernel/drivers/virtio/virtio_pci.ko\n")
	k := &Kernel{Modules: dir, Release: "test"}
	got, err := k.ModuleFiles(DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_mmio.ko.xz",
		// virtio_pci is built in: skipped.
		"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
		"kernel/drivers/char/hw_random/virtio-rng.ko",
	}
	if !slices.Equal(got, want) {
		t.Errorf("load order\n%q\nwant\n%q", got, want)
	}
	if _, err := k.ModuleFiles([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "no module nope") {
		t.Errorf("a missing module gives %v", err)
	}
}

func fmtSscan(hex string, v *int) {
	var u uint32
	fmt.Sscanf(hex, "%08X", &u)
	*v = int(u)
}

func TestModuleData(t *testing.T) {
	dir := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("\x7fELF module"))
	zw.Close()
	os.MkdirAll(filepath.Join(dir, "kernel"), 0o755)
	os.WriteFile(filepath.Join(dir, "kernel/a.ko.gz"), gz.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "kernel/b.ko"), []byte("plain"), 0o644)

	k := &Kernel{Modules: dir}
	p, b, err := k.ModuleData("kernel/a.ko.gz")
	if err != nil || p != "kernel/a.ko" || string(b) != "\x7fELF module" {
		t.Errorf("without kernel decompression: %q %q %v", p, b, err)
	}
	k.Decompress = true
	p, b, err = k.ModuleData("kernel/a.ko.gz")
	if err != nil || p != "kernel/a.ko.gz" || !bytes.Equal(b, gz.Bytes()) {
		t.Errorf("with kernel decompression: %q %v", p, err)
	}
	if p, b, err := k.ModuleData("kernel/b.ko"); err != nil || p != "kernel/b.ko" || string(b) != "plain" {
		t.Errorf("plain module: %q %q %v", p, b, err)
	}
}
