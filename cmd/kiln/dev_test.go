package main

import (
	"bufio"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
)

// devModule writes a module of its own holding examples/kv (see
// testbin.KVModule), with a README and a .git beside, and returns its
// directory.
func devModule(t *testing.T) string {
	t.Helper()
	root, err := testbin.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := testbin.KVModule(root, dir); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "README.md"), "notes\n")
	write(t, filepath.Join(dir, ".git/HEAD"), "ref: refs/heads/main\n")
	return dir
}

func write(t *testing.T, path, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	write(t, path, strings.Replace(string(b), old, new, 1))
}

// devOutput collects a kiln dev's output lines.
type devOutput struct {
	mu    sync.Mutex
	lines []string
	next  int // the first line waitFor has not looked at
}

func (o *devOutput) read(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		o.mu.Lock()
		o.lines = append(o.lines, s.Text())
		o.mu.Unlock()
	}
}

// waitFor returns the first line after the ones already looked at that
// matches re, waiting up to within.
func (o *devOutput) waitFor(t *testing.T, re string, within time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		for ; o.next < len(o.lines); o.next++ {
			if rx.MatchString(o.lines[o.next]) {
				l := o.lines[o.next]
				o.next++
				o.mu.Unlock()
				return l
			}
		}
		o.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no line matching %q within %s; output:\n%s", re, within, o.String())
	return ""
}

// since returns the kiln: lines printed after the ones looked at.
func (o *devOutput) since() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, l := range o.lines[o.next:] {
		if strings.HasPrefix(l, "kiln:") {
			out = append(out, l)
		}
	}
	return out
}

func (o *devOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// startDev runs kiln dev in dir and returns it, its output and the
// entry's URL.
func startDev(t *testing.T, dir string, args ...string) (*exec.Cmd, *devOutput, string) {
	t.Helper()
	cmd, out := launchDev(t, dir, args...)
	line := out.waitFor(t, `^kiln: kv serving at http://127\.0\.0\.1:\d+$`, 90*time.Second)
	out.waitFor(t, `^kiln: built and started in .* watching \d+ files`, 10*time.Second)
	return cmd, out, strings.TrimPrefix(line, "kiln: kv serving at ")
}

// launchDev starts kiln dev in dir, collecting its output.
func launchDev(t *testing.T, dir string, args ...string) (*exec.Cmd, *devOutput) {
	t.Helper()
	cmd := kiln(t)(append([]string{"dev"}, args...)...)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	out := &devOutput{}
	go out.read(pr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	return cmd, out
}

func answer(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// TestDevSwapsEachSaveUnderLoad edits a copy of examples/kv under kiln dev
// while 200 requests a second reach its entry: a spec change in the main
// package, a change to an imported package of the module and a save by
// rename each give the new answer; scratch files, .git and files outside
// the build rebuild nothing; a syntax error prints the compiler's
// position and keeps the last good build; no request fails throughout.
func TestDevSwapsEachSaveUnderLoad(t *testing.T) {
	dir := devModule(t)
	_, out, entry := startDev(t, dir)
	if got := answer(t, entry+"/kv/x"); got != "no such key: x" {
		t.Fatalf("GET /kv/x = %q", got)
	}
	stopLoad := testbin.StartPaced(entry+"/kv/x", 200, 5*time.Second)
	defer stopLoad()

	// 1. The main package: a fourth shard.
	edit(t, filepath.Join(dir, "main.go"), "shards := 3", "shards := 4")
	l := out.waitFor(t, `^kiln: change main\.go → build .* → swap .* → serving`, 60*time.Second)
	if !strings.Contains(l, "started 1: kv/shard-3") {
		t.Errorf("after adding a shard: %s; want it to say it started kv/shard-3", l)
	}
	// 2. An imported package of the same module.
	edit(t, filepath.Join(dir, "store/kv.go"), "no such key: ", "missing key: ")
	out.waitFor(t, `^kiln: change store/kv\.go → build .* → serving \(replaced 5`, 60*time.Second)
	if got := answer(t, entry+"/kv/x"); got != "missing key: x" {
		t.Errorf("after editing package store: GET /kv/x = %q, want the new message", got)
	}
	// 3. A save by rename, as JetBrains' safe write does it.
	b, _ := os.ReadFile(filepath.Join(dir, "store/kv.go"))
	tmp := filepath.Join(dir, "store/kv.go___jb_tmp___")
	write(t, tmp, strings.Replace(string(b), "missing key: ", "absent key: ", 1))
	if err := os.Rename(tmp, filepath.Join(dir, "store/kv.go")); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, `^kiln: change store/kv\.go → build .* → serving`, 60*time.Second)
	if got := answer(t, entry+"/kv/x"); got != "absent key: x" {
		t.Errorf("after a save by rename: GET /kv/x = %q, want the new message", got)
	}
	// 4. Nothing the build reads.
	for _, name := range []string{"README.md", ".git/HEAD", "store/.kv.go.swp", "store/4913", "store/kv.go~", "store/.#kv.go", "store/kv_test.go", "notes/todo.go"} {
		write(t, filepath.Join(dir, name), "package store // "+name+"\n")
	}
	time.Sleep(2 * time.Second)
	if lines := out.since(); len(lines) > 0 {
		t.Errorf("changes outside the build started one:\n%s", strings.Join(lines, "\n"))
	}
	// 5. A syntax error.
	edit(t, filepath.Join(dir, "store/kv.go"), "func New() http.Handler {", "func New() http.Handler {\n\tx :=")
	out.waitFor(t, `^kiln: change store/kv\.go → build failed .* the last good build keeps serving`, 60*time.Second)
	out.waitFor(t, `^store/kv\.go:\d+:\d+: `, 5*time.Second)
	if got := answer(t, entry+"/kv/x"); got != "absent key: x" {
		t.Errorf("after a syntax error: GET /kv/x = %q, want the last good build's answer", got)
	}
	ld := stopLoad()
	t.Logf("load across the swaps: %d answered, %d failed", ld.OK, ld.Failed)
	if err := ld.Check(500); err != nil {
		t.Errorf("load across the swaps: %v", err)
	}
}

// TestDevCtrlCDuringABuildLeavesNothing: Ctrl-C while go build runs stops
// kiln dev, the build and every process of the topology.
func TestDevCtrlCDuringABuildLeavesNothing(t *testing.T) {
	dir := devModule(t)
	cmd, out, _ := startDev(t, dir)
	pids := regexp.MustCompile(`pid=(\d+)`).FindAllStringSubmatch(out.String(), -1)
	if len(pids) != 4 {
		t.Fatalf("%d processes said they serve, want 4:\n%s", len(pids), out)
	}
	// A change to every package's code makes go build compile for a while.
	edit(t, filepath.Join(dir, "store/kv.go"), "no such key: ", "missing key: ")
	time.Sleep(400 * time.Millisecond)
	if err := testbin.Interrupt(cmd, 20*time.Second); err != nil {
		t.Fatalf("kiln dev after Ctrl-C: %v\n%s", err, out)
	}
	if strings.Contains(out.String(), "→ serving") {
		t.Log("the build ended before Ctrl-C reached it")
	}
	for _, m := range pids {
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			t.Errorf("process %s outlived kiln dev", m[1])
		}
	}
	// Nothing of the build either: go build's compilers name the package.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "example.com/kvdev") {
			t.Errorf("process %s outlived kiln dev: %s", e.Name(), strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// TestDevOnKubernetesRollsOutEachSave: on the Kubernetes target, a save
// pushes a new image and rolls the StatefulSet over to its digest, and
// Ctrl-C deletes the app.
func TestDevOnKubernetesRollsOutEachSave(t *testing.T) {
	cfg := e2e.Cluster(t)
	ns := e2e.Namespace(t, cfg, "kiln-dev")
	kc := e2e.Kubeconfig()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	repo := strings.TrimPrefix(reg.URL, "http://") + "/kvdev"
	dir := devModule(t)
	cmd, out := launchDev(t, dir, "--target", "kubernetes", "--repo", repo, "--kubeconfig", kc, "-n", ns)
	out.waitFor(t, `^kiln: kv rolled out in namespace `+ns+`$`, 3*time.Minute)
	out.waitFor(t, `^kiln: built and started in `, 10*time.Second)
	image := func() string {
		b, err := exec.Command(e2eKubectl(t), "--kubeconfig", kc, "-n", ns, "get", "statefulset", "kv-shard", "-o", "jsonpath={.spec.template.spec.containers[0].image}").Output()
		if err != nil {
			t.Fatalf("kubectl get statefulset kv-shard: %v", err)
		}
		return string(b)
	}
	before := image()
	if !strings.HasPrefix(before, repo+":latest@sha256:") {
		t.Fatalf("the StatefulSet runs %q; want the pushed image by digest", before)
	}
	edit(t, filepath.Join(dir, "store/kv.go"), "no such key: ", "missing key: ")
	out.waitFor(t, `^kiln: change store/kv\.go → build .* → serving \(rolled out in namespace `+ns, 3*time.Minute)
	if after := image(); after == before || !strings.HasPrefix(after, repo+":latest@sha256:") {
		t.Errorf("after the save the StatefulSet runs %q, was %q; want the new digest", after, before)
	}
	if err := testbin.Interrupt(cmd, 2*time.Minute); err != nil {
		t.Fatalf("kiln dev after Ctrl-C: %v\n%s", err, out)
	}
	out.waitFor(t, `^kiln: kv deleted \(\d+ objects\)`, 5*time.Second)
	if b, err := exec.Command(e2eKubectl(t), "--kubeconfig", kc, "-n", ns, "get", "statefulsets,deployments,services", "-l", "app.kubernetes.io/instance=kv", "-o", "name").Output(); err != nil || len(strings.TrimSpace(string(b))) > 0 {
		t.Errorf("after Ctrl-C the namespace still has %q (%v)", b, err)
	}
}
