package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/spec"
)

// kiln builds the CLI and returns a function that runs it from the module
// root.
func kiln(t *testing.T) func(args ...string) *exec.Cmd {
	t.Helper()
	bin, err := testbin.Build(t.TempDir(), "./cmd/kiln")
	if err != nil {
		t.Fatal(err)
	}
	root, err := testbin.Root()
	if err != nil {
		t.Fatal(err)
	}
	return func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, args...)
		cmd.Dir = root
		return cmd
	}
}

func TestCLI(t *testing.T) {
	run := kiln(t)

	t.Run("describe", func(t *testing.T) {
		out, err := run("describe", "./examples/kv").Output()
		if err != nil {
			t.Fatal(err)
		}
		app, err := spec.Parse(out)
		if err != nil || app.Services[0].Shard == nil || app.Services[0].Shard.Shards != 3 {
			t.Fatalf("describe printed %s (%v)", out, err)
		}
	})

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"describe", "./spec"}, "./spec is package spec, with no main and no //kiln:service annotation"},
		{[]string{"run", "./no/such/dir"}, "./no/such/dir is not a Go package that builds"},
		{[]string{"run", "--port", "99999", "./examples/kv"}, "--port 99999: want a port number"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"dev", "./examples/report"}, `service "report" is a job: kiln dev swaps serving services and does not run jobs yet`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := run(tc.args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("got %v: %s\nwant an error containing %q", err, out, tc.want)
			}
		})
	}

	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"describe", "--help"}} {
		out, err := run(args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	t.Run("run", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		port := l.Addr().(*net.TCPAddr).AddrPort().Port()
		l.Close()
		cmd := run("run", "./examples/hello", "--port", itoa(int(port)))
		cmd.Stderr = os.Stderr
		got := firstLines(t, cmd, 1, 90*time.Second)[0]
		want := "kiln: hello serving at http://127.0.0.1:" + itoa(int(port)) + "\n"
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		resp, err := http.Get(strings.TrimSpace(strings.TrimPrefix(got, "kiln: hello serving at ")) + "/?name=cli")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`^hello, cli, from replica \d\n$`).Match(body) {
			t.Fatalf("answer %q", body)
		}
		if err := testbin.Interrupt(cmd, 20*time.Second); err != nil {
			t.Fatalf("kiln run after Ctrl-C: %v; want exit status 0", err)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// firstLines starts cmd and returns the first n lines it prints on stdout,
// each with its newline, waiting up to within for them; the rest of its
// stdout is read and dropped. The caller stops cmd.
func firstLines(t *testing.T, cmd *exec.Cmd, n int, within time.Duration) []string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, n)
	go func() {
		r := bufio.NewReader(stdout)
		for range n {
			l, err := r.ReadString('\n')
			if err != nil {
				break
			}
			lines <- l
		}
		io.Copy(io.Discard, r)
	}()
	var out []string
	deadline := time.After(within)
	for len(out) < n {
		select {
		case l := <-lines:
			out = append(out, l)
		case <-deadline:
			t.Fatalf("%v printed %d of %d lines within %s: %q", cmd.Args, len(out), n, within, out)
		}
	}
	return out
}

func TestDeployAndDown(t *testing.T) {
	cfg := e2e.Cluster(t)
	ns := e2e.Namespace(t, cfg, "kiln-cli")
	run := kiln(t)
	kc := e2e.Kubeconfig()

	out, err := run("deploy", "./examples/kv", "--image", "registry.example/kv:1", "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kiln: kv rolled out in namespace "+ns) {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	for _, want := range []string{"kiln: applied StatefulSet/kv-shard", "kiln: rollout StatefulSet/kv-shard: 3/3 updated, 3/3 ready"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("deploy output lacks %q:\n%s", want, out)
		}
	}
	out, err = run("deploy", "./examples/kv", "--image", "registry.example/kv:1", "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil || strings.Contains(string(out), "kiln: applied") {
		t.Fatalf("second deploy changed something: %v\n%s", err, out)
	}
	out, err = run("down", "--app", "kv", "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kiln: kv is down (9 objects deleted)") {
		t.Fatalf("down: %v\n%s", err, out)
	}

	// Without --image, deploy builds the image and pushes it to --repo.
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	repo := strings.TrimPrefix(reg.URL, "http://") + "/kv"
	out, err = run("deploy", "./examples/kv", "--repo", repo, "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rolled out") {
		t.Fatalf("deploy --repo: %v\n%s", err, out)
	}
	got, err := exec.Command(e2eKubectl(t), "--kubeconfig", kc, "-n", ns, "get", "statefulset", "kv-shard", "-o", "jsonpath={.spec.template.spec.containers[0].image}").Output()
	if err != nil || !strings.HasPrefix(string(got), repo+":latest@sha256:") {
		t.Fatalf("the StatefulSet runs %q (%v); want the pushed image by digest", got, err)
	}

	out, err = run("deploy", "--target", "mars", "./examples/kv", "--image", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `--target "mars"`) {
		t.Fatalf("unknown target: %v\n%s", err, out)
	}
}

// e2eKubectl is the kubectl that hack/kube-up built beside the test cluster.
func e2eKubectl(t *testing.T) string {
	t.Helper()
	env, err := os.ReadFile(filepath.Join(filepath.Dir(e2e.Kubeconfig()), "env"))
	if err == nil {
		for _, line := range strings.Split(string(env), "\n") {
			if v, ok := strings.CutPrefix(line, "KUBECTL="); ok {
				return v
			}
		}
	}
	t.Fatalf("no KUBECTL in the env file beside %s (hack/kube-up writes it)", e2e.Kubeconfig())
	return ""
}
