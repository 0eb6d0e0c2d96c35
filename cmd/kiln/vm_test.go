package main

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/unikernel"
	"github.com/kiln-dev/kiln/unikernel/kubevirt"
)

func TestVMCommands(t *testing.T) {
	run := kiln(t)

	t.Run("errors", func(t *testing.T) {
		// No QEMU on PATH (only go): the error names the apt package.
		goBin, err := exec.LookPath("go")
		if err != nil {
			t.Fatal(err)
		}
		path := t.TempDir()
		if err := os.Symlink(goBin, filepath.Join(path, "go")); err != nil {
			t.Fatal(err)
		}
		cmd := run("run", "--target", "vm", "./examples/hello")
		cmd.Env = append(os.Environ(), "PATH="+path)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "apt-get install -y qemu-system-x86") {
			t.Errorf("kiln run --target vm without QEMU: %v\n%s", err, out)
		}
		out, err = run("vm", "build", "./examples/hello", "--out", t.TempDir(), "--kernel", "/no/vmlinuz-1").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "apt-get install -y linux-image-cloud-amd64") {
			t.Errorf("kiln vm build with a missing kernel: %v\n%s", err, out)
		}
		out, err = run("run", "--target", "mars", "./examples/hello").CombinedOutput()
		if err == nil || !strings.Contains(string(out), `--target "mars": use local, docker or vm`) {
			t.Errorf("kiln run --target mars: %v\n%s", err, out)
		}
	})

	t.Run("build", func(t *testing.T) {
		_, err := unikernel.FindKernel("", "")
		e2e.Require(t, "Debian cloud kernel", err, "apt-get install -y "+unikernel.KernelPackage)
		dir := t.TempDir()
		out, err := run("vm", "build", "./examples/hello", "--out", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("kiln vm build: %v\n%s", err, out)
		}
		for _, f := range []string{"vmlinuz", "vmlinux", "initramfs.cpio", "cmdline", "manifest.json"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("no %s: %v", f, err)
			}
		}
		if !strings.Contains(string(out), "cmdline  console=ttyS0") {
			t.Errorf("output:\n%s", out)
		}

		// The same image for KubeVirt, its kernel boot image pushed to an
		// in-process registry.
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		repo := strings.TrimPrefix(srv.URL, "http://") + "/kiln/hello-vm"
		cmd := run("vm", "kubevirt", "--image", dir, "--push", repo, "-n", "apps")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		yamlOut, err := cmd.Output()
		if err != nil {
			t.Fatalf("kiln vm kubevirt: %v\n%s", err, stderr.String())
		}
		for _, want := range []string{"kind: VirtualMachineInstanceReplicaSet", "image: " + repo + "@sha256:", "kiln.ip=10.0.2.2/24", "namespace: apps", "kind: Service", "targetPort: 8080", "KILN_ROLE=replica"} {
			if !strings.Contains(string(yamlOut), want) {
				t.Errorf("kiln vm kubevirt prints no %q:\n%s", want, yamlOut)
			}
		}
		if !strings.Contains(stderr.String(), "kiln: pushed the kernel boot image as "+repo+"@sha256:") {
			t.Errorf("stderr: %s", stderr.String())
		}
	})

	t.Run("render --unikernel", func(t *testing.T) {
		out, err := run("render", "--unikernel", "./examples/kv", "--image", "registry.example/kv-vm:1", "-n", "apps").Output()
		if err != nil {
			t.Fatalf("kiln render --unikernel: %v", err)
		}
		again, _ := run("render", "--unikernel", "./examples/kv", "--image", "registry.example/kv-vm:1", "-n", "apps").Output()
		if string(again) != string(out) {
			t.Error("two renders differ")
		}
		objs, err := kubevirt.Decode(out)
		if err != nil {
			t.Fatalf("the YAML does not decode strictly into kubevirt.io/api types: %v\n%s", err, out)
		}
		// kv-shard (headless), kv-shard-0..2, kv-router, kv (entry).
		if len(objs) != 6 {
			t.Errorf("%d objects:\n%s", len(objs), out)
		}
		for _, want := range []string{"name: kv-shard-2", "subdomain: kv-shard", "KILN_PEERS=http://kv-shard-0.kv-shard:8080", "image: registry.example/kv-vm:1", "kernelPath: /boot/vmlinuz"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		if b, err := run("render", "--unikernel", "./examples/kv").CombinedOutput(); err == nil || !strings.Contains(string(b), "--image") {
			t.Errorf("render --unikernel without --image: %v\n%s", err, b)
		}
	})

	t.Run("run --target vm", func(t *testing.T) {
		_, err := unikernel.FindKernel("", "")
		e2e.Require(t, "Debian cloud kernel", err, "apt-get install -y "+unikernel.KernelPackage)
		_, err = unikernel.FindQEMU()
		e2e.Require(t, "QEMU", err, "apt-get install -y "+unikernel.QEMUPackage)
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// kvstore keeps storage: a disk per shard, in the state directory
		// KILN_STATE_DIR names.
		state := t.TempDir()
		cmd := run("run", "--target", "vm", "./examples/kvstore", "--port", strconv.Itoa(port))
		cmd.Env = append(os.Environ(), local.EnvStateDir+"="+state)
		cmd.Stderr = os.Stderr
		got := firstLines(t, cmd, 1, 180*time.Second)[0]
		want := "kiln: kvstore serving at http://127.0.0.1:" + strconv.Itoa(port) + "\n"
		if got != want {
			t.Fatalf("got %q, want %q (the local target's line)", got, want)
		}
		url := strings.TrimSpace(strings.TrimPrefix(got, "kiln: kvstore serving at "))
		req, _ := http.NewRequest("PUT", url+"/kv/color", strings.NewReader("blue"))
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT: %v %v", resp, err)
		}
		resp, err := http.Get(url + "/kv/color")
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 16)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body[:n]) != "blue" {
			t.Fatalf("GET: %d %q", resp.StatusCode, body[:n])
		}
		qemu := childQEMU(cmd.Process.Pid)
		if qemu == 0 {
			t.Fatal("kiln runs no qemu-system-x86_64 child")
		}
		if err := testbin.Interrupt(cmd, 20*time.Second); err != nil {
			t.Fatalf("kiln run --target vm after Ctrl-C: %v; want exit status 0", err)
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(qemu)); err == nil {
			t.Errorf("QEMU (pid %d) still runs after Ctrl-C", qemu)
		}
		for i := range 3 {
			if _, err := os.Stat(filepath.Join(state, "data", "kvstore", "shard-"+strconv.Itoa(i)+".img")); err != nil {
				t.Errorf("shard-%d's disk: %v", i, err)
			}
		}
		out, err := run("down", "--target", "vm", "--delete-data", "--yes", "--app", "kvstore", "--state-dir", state).CombinedOutput()
		if want := "kiln: deleted the data of kvstore's 3 instances under " + state; err != nil || !strings.Contains(string(out), want) {
			t.Errorf("kiln down --target vm --delete-data --yes = %v:\n%s\nwant %q", err, out, want)
		}
	})
}

// childQEMU finds the QEMU process whose parent is pid.
func childQEMU(pid int) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "qemu-system") {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(strings.Fields(s)[0])
			return n
		}
	}
	return 0
}
