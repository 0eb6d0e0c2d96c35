package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
)

// TestDescriptorDescribesWhatTheProgramDeclares holds every example's
// kiln.hcl to its program: kiln describe of the descriptor prints exactly
// the bytes the program prints of itself.
func TestDescriptorDescribesWhatTheProgramDeclares(t *testing.T) {
	run := kiln(t)
	for _, name := range []string{"hello", "kv", "search", "spread", "shop", "report", "compactor", "kvstore"} {
		t.Run(name, func(t *testing.T) {
			program := programSpec(t, "./examples/"+name)
			descriptor, err := run("describe", "./examples/"+name+"/kiln.hcl").Output()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(descriptor, program) {
				t.Fatalf("kiln describe ./examples/%s/kiln.hcl =\n%s\nthe program describes itself as\n%s", name, descriptor, program)
			}
		})
	}
}

func TestDescriptorVariables(t *testing.T) {
	run := kiln(t)
	shards := func(cmd *exec.Cmd) string {
		t.Helper()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		m := regexp.MustCompile(`"shards": (\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no shard count in %s", out)
		}
		return string(m[1])
	}
	if got := shards(run("describe", "./examples/kv")); got != "3" {
		t.Errorf("default: %s shards, want 3", got)
	}
	env := run("describe", "./examples/kv")
	env.Env = append(os.Environ(), "KILN_VAR_shards=5")
	if got := shards(env); got != "5" {
		t.Errorf("KILN_VAR_shards=5: %s shards", got)
	}
	both := run("describe", "./examples/kv", "--var", "shards=6")
	both.Env = append(os.Environ(), "KILN_VAR_shards=5")
	if got := shards(both); got != "6" {
		t.Errorf("--var shards=6 over KILN_VAR_shards=5: %s shards", got)
	}
}

func TestDescriptorErrorsPointAtTheSource(t *testing.T) {
	run := kiln(t)
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"every problem at once", `service "kv" {
  shard {
    shards = 0
    key {
      header = "X-User"
    }
  }
  port = 70000
  colour = "blue"
}
`, []string{
			"3 problems:",
			`bad.hcl:3:5: Error: Invalid shard count`,
			`In service "kv", shard.shards must be ≥ 1, got 0.`,
			`bad.hcl:8:3: Error: Invalid port`,
			`bad.hcl:9:3: Error: Unsupported argument`,
			`   3:     shards = 0`,
		}},
		{"what the cluster refuses, at its block", `service "kv" {
  shard {
    shards = 3
    key {
      path_segment = 2
    }
  }
  autoscale {
    min = 1
    max = 3
  }
}
`, []string{"1 problem:", "bad.hcl:8:3: Error:", "cannot autoscale"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write("bad.hcl", tc.src)
			out, err := run("validate", p).CombinedOutput()
			if err == nil {
				t.Fatalf("kiln validate of a bad descriptor exited 0:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	out, err := run("validate", "./examples/shop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `kiln: ./examples/shop is valid: app "shop" of web (simple), carts (shard), catalog (scatter)`) {
		t.Fatalf("kiln validate ./examples/shop: %v\n%s", err, out)
	}

	// The program runs its roles with its own spec: a descriptor that
	// says otherwise stops every command that builds, naming both places.
	out, err = run("render", "./examples/kv", "--var", "shards=4", "--image", "kv:1").CombinedOutput()
	for _, w := range []string{"examples/kv/kiln.hcl:14:5: Error: Descriptor and program disagree", `shard.shards of service "kv" is 4 here but 3 in ./examples/kv`} {
		if err == nil || !strings.Contains(string(out), w) {
			t.Errorf("render with 4 shards against a program of 3: %v; output lacks %q:\n%s", err, w, out)
		}
	}
}

// TestRunAnAppOfTwoPrograms runs examples/notes, whose kiln.hcl builds api
// and store from two main packages: api reaches store by name.
func TestRunAnAppOfTwoPrograms(t *testing.T) {
	run := kiln(t)
	cmd := run("run", "./examples/notes", "--var", "title=groceries")
	cmd.Stderr = testWriter{t}
	serving := regexp.MustCompile(`^kiln: (\w+) serving at (http://127\.0\.0\.1:\d+)\n$`)
	var names, urls []string
	for _, l := range firstLines(t, cmd, 2, 120*time.Second) {
		m := serving.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q is not a serving line", l)
		}
		names, urls = append(names, m[1]), append(urls, m[2])
	}
	if strings.Join(names, ",") != "api,store" {
		t.Fatalf("serving lines for %v; want api then store", names)
	}
	post, _ := http.NewRequest("POST", urls[0]+"/notes/shopping", strings.NewReader("eggs"))
	if resp, err := http.DefaultClient.Do(post); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST through api: %v %v", resp, err)
	}
	resp, err := http.Get(urls[0] + "/notes/shopping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "eggs\n" || resp.Header.Get("Notes-Title") != "GROCERIES" || !strings.HasPrefix(resp.Header.Get("Notes-Store-Shard"), "shard-") {
		t.Fatalf("GET through api: %q, title %q, shard %q; want eggs from a store shard, titled by the descriptor's env", body, resp.Header.Get("Notes-Title"), resp.Header.Get("Notes-Store-Shard"))
	}
	if err := testbin.Interrupt(cmd, 20*time.Second); err != nil {
		t.Fatalf("kiln run after Ctrl-C: %v; want exit status 0", err)
	}
}

func TestBuildAndRenderAnAppOfTwoPrograms(t *testing.T) {
	run := kiln(t)
	dir := t.TempDir()
	out, err := run("build", "./examples/notes", "--output", "oci:"+dir).Output()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if refs := strings.Fields(string(out)); len(refs) != 2 {
		t.Fatalf("build printed %q; want one reference per program", out)
	}
	for _, p := range []string{"api", "store"} {
		if _, err := os.Stat(filepath.Join(dir, p, "index.json")); err != nil {
			t.Errorf("no OCI layout for program %s: %v", p, err)
		}
	}
	yaml, err := run("render", "./examples/notes", "--image", "api=registry.example/notes-api:1", "--image", "store=registry.example/notes-store:1").Output()
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for _, w := range []string{"image: registry.example/notes-api:1", "image: registry.example/notes-store:1", "value: MY NOTES", "KILN_SERVICES: api=http://api:8080 store=http://store:8080"} {
		if !strings.Contains(string(yaml), w) {
			t.Errorf("render lacks %q", w)
		}
	}
	out, err = run("render", "./examples/notes", "--image", "web=x:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `app "notes" has no service "web"; its services are "api", "store"`) {
		t.Fatalf("render --image for an unknown service: %v\n%s", err, out)
	}
}

func TestDeployAnAppOfTwoPrograms(t *testing.T) {
	cfg := e2e.Cluster(t)
	ns := e2e.Namespace(t, cfg, "kiln-notes")
	run := kiln(t)
	kc := e2e.Kubeconfig()
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	repo := strings.TrimPrefix(reg.URL, "http://") + "/notes"
	out, err := run("deploy", "./examples/notes", "--repo", repo, "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kiln: notes rolled out in namespace "+ns) {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	for obj, want := range map[string]string{"deployment/api-replica": repo + "/api:latest@sha256:", "statefulset/store-shard": repo + "/store:latest@sha256:"} {
		got, err := exec.Command(e2eKubectl(t), "--kubeconfig", kc, "-n", ns, "get", obj, "-o", "jsonpath={.spec.template.spec.containers[0].image}").Output()
		if err != nil || !strings.HasPrefix(string(got), want) {
			t.Errorf("%s runs %q (%v); want its own program's image, %s...", obj, got, err, want)
		}
	}
	out, err = run("down", "./examples/notes", "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kiln: notes is down") {
		t.Fatalf("down: %v\n%s", err, out)
	}
}

// programSpec builds the main package pkg and returns what it prints of
// itself with KILN_ROLE=describe.
func programSpec(t *testing.T, pkg string) []byte {
	t.Helper()
	bin, err := testbin.Build(t.TempDir(), pkg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "KILN_ROLE=describe")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s with KILN_ROLE=describe: %v", pkg, err)
	}
	return out
}

// testWriter sends a process's output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
