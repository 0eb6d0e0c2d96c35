package unikernel

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/unikernel/vminit"
)

const (
	kernelFix = "apt-get install -y " + KernelPackage
	qemuFix   = "apt-get install -y " + QEMUPackage
)

// requireKernel skips (or, under KILN_E2E=require, fails) without Debian's
// cloud kernel.
func requireKernel(t *testing.T) {
	t.Helper()
	_, err := FindKernel("", "")
	e2e.Require(t, "Debian cloud kernel", err, kernelFix)
}

func requireQEMU(t *testing.T) {
	t.Helper()
	_, err := FindQEMU()
	e2e.Require(t, "QEMU", err, qemuFix)
}

func root(t *testing.T) string {
	t.Helper()
	r, err := testbin.Root()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	imagesMu sync.Mutex
	images   = map[string]*Image{}
)

// image builds an example once per test binary run.
func image(t *testing.T, example string) *Image {
	t.Helper()
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if im := images[example]; im != nil {
		return im
	}
	dir, err := os.MkdirTemp("", "kiln-vm-test-")
	if err != nil {
		t.Fatal(err)
	}
	im, err := Build(context.Background(), Options{Package: "./examples/" + example, Dir: root(t), Out: dir})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	images[example] = im
	return im
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, im := range images {
		os.RemoveAll(im.Dir)
	}
	os.Exit(code)
}

func TestBuildIsReproducible(t *testing.T) {
	requireKernel(t)
	var digests []string
	var cpios [][]byte
	for i := 0; i < 2; i++ {
		out := t.TempDir()
		im, err := Build(context.Background(), Options{Package: "./examples/hello", Dir: root(t), Out: out})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(im.InitrdPath())
		if err != nil {
			t.Fatal(err)
		}
		cpios = append(cpios, b)
		digests = append(digests, im.Files[im.Initrd].SHA256)
		for _, f := range []string{"vmlinuz", "vmlinux", "initramfs.cpio", "cmdline", "manifest.json"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("build wrote no %s: %v", f, err)
			}
		}
		if im.Size() <= 0 || !strings.Contains(im.Cmdline, "console=ttyS0") {
			t.Errorf("image: size %d cmdline %q", im.Size(), im.Cmdline)
		}
		loaded, err := Load(out)
		if err != nil || loaded.Cmdline != im.Cmdline || loaded.Entries[0].Service != "hello" {
			t.Errorf("Load: %+v, %v", loaded, err)
		}
	}
	if !bytes.Equal(cpios[0], cpios[1]) {
		t.Fatalf("two builds of the same program give different initramfs files (sha256 %s and %s)", digests[0], digests[1])
	}
	var gz []string
	for i := 0; i < 2; i++ {
		im, err := Build(context.Background(), Options{Package: "./examples/hello", Dir: root(t), Out: t.TempDir(), Gzip: true})
		if err != nil {
			t.Fatal(err)
		}
		if im.Initrd != "initramfs.cpio.gz" || im.Files[im.Initrd].Size >= int64(len(cpios[0])) {
			t.Errorf("gzip build: %s of %d bytes", im.Initrd, im.Files[im.Initrd].Size)
		}
		gz = append(gz, im.Files[im.Initrd].SHA256)
	}
	if gz[0] != gz[1] {
		t.Errorf("two gzip builds differ: sha256 %s and %s", gz[0], gz[1])
	}
	entries, err := ReadArchive(bytes.NewReader(cpios[0]))
	if err != nil {
		t.Fatal(err)
	}
	has := map[string]CPIOEntry{}
	for _, e := range entries {
		has[e.Path] = e
	}
	for _, p := range []string{"init", "dev/console", AppPath, ModuleListPath} {
		if _, ok := has[p]; !ok {
			t.Errorf("initramfs lacks %s", p)
		}
	}
	list := string(has[ModuleListPath].Data)
	for _, m := range []string{"virtio_mmio.ko", "virtio_net.ko", "virtio-rng.ko"} {
		if !strings.Contains(list, m) {
			t.Errorf("module list lacks %s:\n%s", m, list)
		}
	}
	if strings.Index(list, "/virtio.ko") > strings.Index(list, "/virtio_mmio.ko") {
		t.Errorf("virtio loads after virtio_mmio, which needs it:\n%s", list)
	}
}

func TestMissingPartsNameTheirPackage(t *testing.T) {
	old := bootDir
	bootDir = t.TempDir()
	defer func() { bootDir = old }()
	_, err := FindKernel("", "")
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y linux-image-cloud-amd64") {
		t.Errorf("no kernel in /boot: %v", err)
	}
	_, err = FindKernel(filepath.Join(t.TempDir(), "vmlinuz-1.0"), "")
	if err == nil || !strings.Contains(err.Error(), "linux-image-cloud-amd64") {
		t.Errorf("--kernel that does not exist: %v", err)
	}
	_, err = Build(context.Background(), Options{Package: "./examples/hello", Dir: root(t), Out: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y linux-image-cloud-amd64") {
		t.Errorf("Build without a kernel: %v", err)
	}

	t.Setenv("PATH", t.TempDir())
	_, err = FindQEMU()
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y qemu-system-x86") {
		t.Errorf("no QEMU: %v", err)
	}
	_, err = Boot(context.Background(), &Image{}, BootOptions{})
	if err == nil || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Errorf("Boot without QEMU: %v", err)
	}
}

func do(t *testing.T, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// boot boots an example's image and stops it when the test ends.
func boot(t *testing.T, example string) *VM { return bootOn(t, example, MachineMicroVM) }

func bootOn(t *testing.T, example, machine string) *VM {
	t.Helper()
	requireKernel(t)
	requireQEMU(t)
	return bootImage(t, image(t, example), BootOptions{Machine: machine})
}

// bootImage boots im with o, its console in a file of the test's own, and
// stops it when the test ends.
func bootImage(t *testing.T, im *Image, o BootOptions) *VM {
	t.Helper()
	example := im.App.Name
	o.Console = filepath.Join(t.TempDir(), "console.log")
	vm, err := Boot(context.Background(), im, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(vm.Console)
			t.Logf("console:\n%s", b)
		}
	})
	t.Logf("%s booted on %s under %s in %s", example, vm.Machine, vm.Accel, time.Since(vm.Started).Round(time.Millisecond))
	return vm
}

func TestBootHello(t *testing.T) {
	t.Parallel()
	vm := boot(t, "hello")
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		resp, body := do(t, "GET", vm.Endpoints[0].URL+"/", "")
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello") {
			t.Fatalf("GET /: %d %q", resp.StatusCode, body)
		}
		seen[resp.Header.Get("Kiln-Backend")] = true
	}
	if len(seen) != 3 {
		t.Errorf("6 requests reached backends %v, want all 3 replicas", seen)
	}
}

// TestShutdown stops a VM the graceful way: the init stops the entry
// point, then the replicas, and powers off, so QEMU exits by itself.
func TestShutdown(t *testing.T) {
	t.Parallel()
	vm := boot(t, "hello")
	if resp, _ := do(t, "GET", vm.Endpoints[0].URL+"/", ""); resp.StatusCode != 200 {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	start := time.Now()
	if err := vm.Shutdown(); err != nil {
		t.Error(err)
	}
	took := time.Since(start)
	b, _ := os.ReadFile(vm.Console)
	console := string(b)
	if took > vminit.Grace {
		t.Errorf("Shutdown took %s: the guest did not power off by itself", took)
	}
	for _, want := range []string{"kiln-init: stopping", "hello/router-0 stopped", "hello/replica-2 stopped", "kiln-init: stopped", "reboot: Power down"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	if i, j := strings.Index(console, "hello/router-0 stopped"), strings.Index(console, "hello/replica-0 stopped"); i < 0 || j < i {
		t.Errorf("the replicas stopped before the router:\n%s", console)
	}
}

// TestBootPC boots the same image on the classic pc machine, where the
// network card is virtio-net-pci.
func TestBootPC(t *testing.T) {
	t.Parallel()
	vm := bootOn(t, "hello", MachinePC)
	if resp, body := do(t, "GET", vm.Endpoints[0].URL+"/?name=pc", ""); resp.StatusCode != 200 || !strings.HasPrefix(body, "hello, pc") {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}
}

func TestBootKV(t *testing.T) {
	t.Parallel()
	vm := boot(t, "kv")
	url := vm.Endpoints[0].URL
	backends := map[string]bool{}
	for _, k := range []string{"color", "shape", "size", "weight", "smell", "taste"} {
		if resp, body := do(t, "PUT", url+"/kv/"+k, "v-"+k); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT %s: %d %s", k, resp.StatusCode, body)
		}
	}
	for _, k := range []string{"color", "shape", "size", "weight", "smell", "taste"} {
		resp, body := do(t, "GET", url+"/kv/"+k, "")
		if resp.StatusCode != 200 || body != "v-"+k {
			t.Fatalf("GET %s: %d %q", k, resp.StatusCode, body)
		}
		backends[resp.Header.Get("Kiln-Backend")] = true
	}
	if len(backends) < 2 {
		t.Errorf("6 keys all on %v: the router does not shard", backends)
	}
	if resp, _ := do(t, "GET", url+"/kv/missing", ""); resp.StatusCode != 404 {
		t.Errorf("GET a missing key: %d", resp.StatusCode)
	}
}

// TestProgramExitPowersOff runs one role that exits at once (an unknown
// role): the init prints its exit status and powers the VM off, so QEMU
// exits by itself.
func TestProgramExitPowersOff(t *testing.T) {
	t.Parallel()
	requireKernel(t)
	requireQEMU(t)
	im := image(t, "hello")
	qemu, _ := FindQEMU()
	console := filepath.Join(t.TempDir(), "console.log")
	args := qemuArgs(im, MachineMicroVM, AccelTCG, 256, 1, console, nil, []string{"kiln.env=KILN_ROLE=nonsense,KILN_SERVICE=hello"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, args...).CombinedOutput()
	b, _ := os.ReadFile(console)
	if ctx.Err() != nil {
		t.Fatalf("QEMU still runs after 90s: the guest did not power off; console:\n%s", b)
	}
	if err != nil {
		t.Errorf("QEMU: %v\n%s", err, out)
	}
	if !strings.Contains(string(b), "kiln-init: program exited: exit status 2") {
		t.Errorf("console does not give the exit status:\n%s", b)
	}
	if !strings.Contains(string(b), `KILN_ROLE="nonsense" is not a role`) {
		t.Errorf("console lacks the program's own error:\n%s", b)
	}
}

// TestBootShop runs an app of three services in one VM: web reaches carts
// and catalog by name, through the addresses the init hands every process.
func TestBootShop(t *testing.T) {
	t.Parallel()
	vm := boot(t, "shop")
	var names []string
	for _, e := range vm.Endpoints {
		names = append(names, e.Service)
	}
	if !slices.Equal(names, []string{"web", "carts", "catalog"}) {
		t.Fatalf("endpoints %v; want web, carts, catalog", names)
	}
	web := vm.Endpoints[0].URL
	if resp, body := do(t, "PUT", web+"/cart/ann", `["tea","mug"]`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT /cart/ann through web: %d %s", resp.StatusCode, body)
	}
	resp, body := do(t, "GET", web+"/cart/ann", "")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `["tea","mug"]` || resp.Header.Get("Shop-Cart-Shard") == "" {
		t.Fatalf("GET /cart/ann through web: %d %q (shard %q)", resp.StatusCode, body, resp.Header.Get("Shop-Cart-Shard"))
	}
	resp, body = do(t, "GET", web+"/find?q=tea", "")
	if resp.StatusCode != 200 || strings.Count(body, `"name"`) != 4 || resp.Header.Get("Kiln-Missing") != "" {
		t.Fatalf("GET /find?q=tea through web: %d %q (missing %q); want the 4 teas from every leaf", resp.StatusCode, body, resp.Header.Get("Kiln-Missing"))
	}
}
