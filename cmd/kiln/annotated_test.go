package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/internal/testbin"
)

// TestAnnotatedTwinDescribesLikeItsSDKForm holds every annotated twin to
// its SDK form: kiln describe of the twin prints exactly the bytes the SDK
// program prints of itself.
func TestAnnotatedTwinDescribesLikeItsSDKForm(t *testing.T) {
	run := kiln(t)
	for _, name := range []string{"hello", "kv", "search", "spread", "shop", "report", "compactor", "kvstore"} {
		t.Run(name, func(t *testing.T) {
			program := programSpec(t, "./examples/"+name)
			twin, err := run("describe", "./examples/annotated/"+name).Output()
			if err != nil {
				t.Fatalf("kiln describe ./examples/annotated/%s: %v", name, err)
			}
			if !bytes.Equal(twin, program) {
				t.Fatalf("kiln describe ./examples/annotated/%s =\n%s\nthe SDK form describes itself as\n%s", name, twin, program)
			}
		})
	}
}

func TestEjectWritesTheGeneratedMainAsCode(t *testing.T) {
	run := kiln(t)
	root, err := testbin.Root()
	if err != nil {
		t.Fatal(err)
	}
	// Outside the tree: other tests build with VCS stamping meanwhile, and
	// a new file in the tree would change their binaries.
	out := t.TempDir()
	msg, err := run("eject", "./examples/annotated/shop", "--out", out).CombinedOutput()
	if err != nil || !strings.Contains(string(msg), "kiln: wrote ") {
		t.Fatalf("eject: %v\n%s", err, msg)
	}
	src, err := os.ReadFile(filepath.Join(out, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"package main", `app.Dial("carts")`, "shop.NewWeb(carts, catalog)", "app.Run()"} {
		if !bytes.Contains(src, []byte(w)) {
			t.Errorf("the ejected main lacks %q:\n%s", w, src)
		}
	}
	if bytes.Contains(src, []byte("DO NOT EDIT")) {
		t.Errorf("the ejected main still says DO NOT EDIT: it is the user's now")
	}
	// Build the ejected main as if it sat in the tree, and ask it.
	at := filepath.Join(root, "examples", "annotated", "shop", "ejected-by-test", "main.go")
	overlay, err := builder.WriteOverlay(t.TempDir(), map[string][]byte{at: src})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "shop")
	if err := builder.Compile(context.Background(), filepath.Dir(at), builder.CompileOptions{Dir: root, Output: bin, Overlay: overlay}); err != nil {
		t.Fatalf("the ejected main does not build: %v", err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "KILN_ROLE=describe")
	ejected, err := cmd.Output()
	if err != nil {
		t.Fatalf("describe of the ejected main: %v", err)
	}
	annotated, err := run("describe", "./examples/annotated/shop").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ejected, annotated) {
		t.Fatalf("the ejected main describes\n%s\nthe annotated package\n%s", ejected, annotated)
	}
	if msg, err := run("eject", "./examples/annotated/shop", "--out", out).CombinedOutput(); err == nil || !strings.Contains(string(msg), "--force") {
		t.Fatalf("a second eject over main.go: %v\n%s; want a refusal naming --force", err, msg)
	}
}

func TestAnnotatedPackageErrorsPointAtTheSource(t *testing.T) {
	run := kiln(t)
	out, err := run("describe", "./cmd/kiln/testdata/badannotations").CombinedOutput()
	for _, w := range []string{
		"2 problems in //kiln: annotations:",
		"cmd/kiln/testdata/badannotations/bad.go:8:",
		"//kiln:service kv shard shards=0 key=path:2 colour=blue",
		"^",
	} {
		if err == nil || !strings.Contains(string(out), w) {
			t.Errorf("describe of bad annotations: %v; output lacks %q:\n%s", err, w, out)
		}
	}
	out, err = run("run", "./cmd/kiln/testdata/brokenbuild").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "testdata/brokenbuild/broken.go:9:") {
		t.Fatalf("run of a package that does not compile: %v; want the compiler's error at the user's file and line:\n%s", err, out)
	}
	out, err = run("describe", "./spec").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "./spec is package spec, with no main and no //kiln:service annotation") {
		t.Fatalf("describe of a plain library: %v\n%s", err, out)
	}
}

// TestDescriptorBesideAnAnnotatedPackage: the annotation says the pattern,
// kiln.hcl adds what an annotation cannot say, and a field both set must
// agree.
func TestDescriptorBesideAnAnnotatedPackage(t *testing.T) {
	run := kiln(t)
	dir := "./cmd/kiln/testdata/annotatedhcl"
	yaml, err := run("render", dir, "--image", "counter:1").Output()
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for _, w := range []string{"name: GREETING", "value: hello", "memory: 96Mi"} {
		if !strings.Contains(string(yaml), w) {
			t.Errorf("render of the annotated package with its kiln.hcl lacks %q", w)
		}
	}
	out, err := run("render", dir, "--var", "shards=5", "--image", "counter:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `shard.shards of service "counter" is 5 here but 2 in`) || !strings.Contains(string(out), "kiln.hcl:12:5: Error: Descriptor and program disagree") {
		t.Fatalf("render with 5 shards against an annotation of 2: %v\n%s", err, out)
	}
}

func TestAnnotationsHonourBuildConstraintsAndSkipTests(t *testing.T) {
	out, err := kiln(t)("describe", "./cmd/kiln/testdata/constraints").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"name": "only"`) || strings.Contains(string(out), "never") || strings.Contains(string(out), "fromtest") {
		t.Fatalf("describe = %s; want service only, not the one behind //go:build never nor the one in a _test.go file", out)
	}
}
