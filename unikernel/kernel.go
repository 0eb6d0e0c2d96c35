package unikernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Apt packages that provide the parts a microVM needs on Debian.
const (
	KernelPackage = "linux-image-cloud-amd64"
	QEMUPackage   = "qemu-system-x86"
)

// DefaultModules are the drivers a guest needs to reach its devices under
// QEMU: virtio-mmio transport (microvm), virtio-pci (the pc machine type),
// the network card and the entropy source. Those the kernel has built in
// are left out; their dependencies come from modules.dep.
var DefaultModules = []string{"virtio_mmio", "virtio_pci", "virtio_net", "virtio_rng"}

// bootDir is where FindKernel looks for Debian's kernel; tests change it.
var bootDir = "/boot"

// Kernel is a kernel image paired with its modules.
type Kernel struct {
	Image   string // the bzImage, e.g. /boot/vmlinuz-6.1.0-56-cloud-amd64
	Release string // its release, e.g. 6.1.0-56-cloud-amd64
	Modules string // its modules directory, /lib/modules/<release>
	HZ      int    // CONFIG_HZ, for the lpj= a guest without KVM needs
	// Decompress says the kernel loads compressed modules itself
	// (CONFIG_MODULE_DECOMPRESS, Linux 5.17 and later).
	Decompress bool
}

// FindKernel pairs a kernel with its modules. With image empty it finds
// Debian's cloud kernel under /boot (the newest vmlinuz-*-cloud-amd64);
// with modules empty it takes /lib/modules/<release> of the image's name.
func FindKernel(image, modules string) (*Kernel, error) {
	if image == "" {
		found, _ := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*-cloud-amd64"))
		if len(found) == 0 {
			return nil, fmt.Errorf("no kernel: %s holds no vmlinuz-*-cloud-amd64 (install it with `apt-get install -y %s`, or give --kernel PATH --modules DIR)", bootDir, KernelPackage)
		}
		slices.SortFunc(found, compareVersions)
		image = found[len(found)-1]
	}
	if _, err := os.Stat(image); err != nil {
		return nil, fmt.Errorf("no kernel: %w (install one with `apt-get install -y %s`, or give --kernel PATH)", err, KernelPackage)
	}
	k := &Kernel{Image: image, Modules: modules, HZ: 250}
	if modules == "" {
		rel, ok := strings.CutPrefix(filepath.Base(image), "vmlinuz-")
		if !ok {
			return nil, fmt.Errorf("kernel %s: its name is not vmlinuz-<release>, so give its modules directory with --modules DIR", image)
		}
		k.Modules = filepath.Join("/lib/modules", rel)
	}
	k.Release = filepath.Base(k.Modules)
	if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
		return nil, fmt.Errorf("kernel %s: no modules.dep in %s: %w (the modules come with the kernel's package, %s; or give --modules DIR)", image, k.Modules, err, KernelPackage)
	}
	if cfg, err := readConfig(filepath.Join(filepath.Dir(image), "config-"+k.Release)); err == nil {
		if hz, err := strconv.Atoi(cfg["CONFIG_HZ"]); err == nil {
			k.HZ = hz
		}
		k.Decompress = cfg["CONFIG_MODULE_DECOMPRESS"] == "y"
	}
	return k, nil
}

// compareVersions orders kernel file names by the numbers in them, so
// 6.1.0-10 comes before 6.1.0-9's successor 6.1.0-56.
func compareVersions(a, b string) int {
	na, nb := numbers(a), numbers(b)
	return slices.Compare(na, nb)
}

func numbers(s string) []int {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// readConfig reads a kernel's config file (/boot/config-<release>).
func readConfig(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		}
	}
	return cfg, s.Err()
}

// ModuleData reads module file (relative to k.Modules) for the initramfs
// and says the path it gets there. A compressed module (.ko.gz, .ko.xz,
// .ko.zst) stays compressed when the kernel can decompress it itself, which
// the init then asks for with MODULE_INIT_COMPRESSED_FILE; otherwise it is
// decompressed here (gzip in Go, xz and zstd with the xz and zstd tools).
func (k *Kernel) ModuleData(file string) (string, []byte, error) {
	b, err := os.ReadFile(filepath.Join(k.Modules, file))
	if err != nil {
		return "", nil, fmt.Errorf("module %s: %w", file, err)
	}
	ext := path.Ext(file)
	if ext == ".ko" || k.Decompress {
		return file, b, nil
	}
	var out []byte
	switch ext {
	case ".gz":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", nil, fmt.Errorf("module %s: %w", file, err)
		}
		if out, err = io.ReadAll(zr); err != nil {
			return "", nil, fmt.Errorf("module %s: %w", file, err)
		}
	case ".xz", ".zst":
		tool := map[string]string{".xz": "xz", ".zst": "zstd"}[ext]
		cmd := exec.Command(tool, "-dc")
		cmd.Stdin = bytes.NewReader(b)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if out, err = cmd.Output(); err != nil {
			return "", nil, fmt.Errorf("module %s: the kernel cannot load compressed modules (no CONFIG_MODULE_DECOMPRESS), and %s -dc failed: %v %s (apt-get install -y %s)",
				file, tool, err, strings.TrimSpace(stderr.String()), map[string]string{"xz": "xz-utils", "zstd": "zstd"}[tool])
		}
	default:
		return "", nil, fmt.Errorf("module %s: unknown compression %s", file, ext)
	}
	return strings.TrimSuffix(file, ext), out, nil
}

// moduleName is the name the kernel knows a module file by:
// kernel/drivers/char/hw_random/virtio-rng.ko.xz is virtio_rng.
func moduleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ModuleFiles lists the module files (relative to k.Modules) that load
// names, dependencies first, as modules.dep orders them. Modules built into
// the kernel (modules.builtin) are skipped: the kernel already has them.
func (k *Kernel) ModuleFiles(names []string) ([]string, error) {
	deps := map[string][]string{} // module name → its file, then its deps' files
	files := map[string]string{}
	b, err := os.ReadFile(filepath.Join(k.Modules, "modules.dep"))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := moduleName(file)
		files[name] = file
		deps[name] = strings.Fields(rest)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(k.Modules, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			builtin[moduleName(line)] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	add := func(file string) {
		if !seen[file] {
			seen[file] = true
			out = append(out, file)
		}
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		if builtin[n] {
			continue
		}
		file, ok := files[n]
		if !ok {
			return nil, fmt.Errorf("kernel %s has no module %s (not in %s/modules.dep nor built in)", k.Release, n, k.Modules)
		}
		// modules.dep lists a module's dependencies so that each one
		// comes after those it needs: load them in reverse.
		d := deps[n]
		for i := len(d) - 1; i >= 0; i-- {
			add(d[i])
		}
		add(file)
	}
	return out, nil
}
