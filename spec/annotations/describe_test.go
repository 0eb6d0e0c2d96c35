package annotations

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedMainsDescribeTheAppsParseBuilds is the contract of Main: it
// builds the main package Main writes for every good package the way kiln
// does, through go build -overlay, and checks that each program's own spec
// (KILN_ROLE=describe) is the one Parse built, byte for byte.
func TestGeneratedMainsDescribeTheAppsParseBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program for every good package")
	}
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	replace := map[string]string{}
	var pkgs []string
	want := map[string][]byte{}
	for _, name := range goodPackages {
		p := parseGood(t, name)
		if want[name], err = p.App.MarshalStable(); err != nil {
			t.Fatal(err)
		}
		src, err := Main(p, goodImport+name)
		if err != nil {
			t.Fatalf("Main(%s) = %v, want no error", name, err)
		}
		file := filepath.Join(tmp, name+".go")
		if err := os.WriteFile(file, src, 0o644); err != nil {
			t.Fatal(err)
		}
		// testdata/gen does not exist: the overlay alone makes each
		// package, as kiln's builds do.
		replace[filepath.Join(testdata, "gen", name, "main.go")] = file
		pkgs = append(pkgs, "./testdata/gen/"+name)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"build", "-overlay=" + overlayFile, "-o", bin + string(filepath.Separator)}, pkgs...)
	build := exec.Command("go", args...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_") {
			env = append(env, kv)
		}
	}
	env = append(env, "KILN_ROLE=describe")
	for _, name := range goodPackages {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(bin, name))
			cmd.Env = env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("KILN_ROLE=describe %s: %v\n%s", name, err, stderr.Bytes())
			}
			if !bytes.Equal(got, want[name]) {
				t.Errorf("KILN_ROLE=describe of Main(%s) =\n%s\nwant Parse(%s).App.MarshalStable() =\n%s", name, got, name, want[name])
			}
		})
	}
}
