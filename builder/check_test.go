package builder

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestImportsKey changes a module in ways that do and do not matter to go
// list's verdict, and watches the key.
func TestImportsKey(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":        "module example.com/m\n\ngo 1.24\n",
		"main.go":       "package main\n\nimport \"example.com/m/sub\"\n\nfunc main() { sub.F(1) }\n",
		"sub/sub.go":    "package sub\n\nfunc F(int) {}\n",
		"sub/x_test.go": "package sub\n\nimport \"C\"\n",
	})
	key := func() string {
		t.Helper()
		k, err := importsKey(dir, []string{"pkg=."})
		if err != nil || k == "" {
			t.Fatalf("key %q, %v", k, err)
		}
		return k
	}
	k0 := key()
	for _, tc := range []struct {
		name  string
		files map[string]string
		same  bool
	}{
		{"edit in a function", map[string]string{"main.go": "package main\n\nimport \"example.com/m/sub\"\n\nfunc main() { sub.F(2) }\n"}, true},
		{"test file", map[string]string{"sub/y_test.go": "package sub\n\nimport \"os\"\n"}, true},
		{"testdata", map[string]string{"testdata/c.go": "package c\n\nimport \"C\"\n"}, true},
		{"new import", map[string]string{"sub/sub.go": "package sub\n\nimport \"os\"\n\nfunc F(int) { os.Exit(0) }\n"}, false},
		{"new cgo file", map[string]string{"sub/native.go": "package sub\n\nimport \"C\"\n"}, false},
		{"build constraint", map[string]string{"sub/native.go": "//go:build linux\n\npackage sub\n\nimport \"C\"\n"}, false},
		{"go.sum", map[string]string{"go.sum": "example.com/x v1.0.0 h1:abc=\n"}, false},
	} {
		writeFiles(t, dir, tc.files)
		k := key()
		if (k == k0) != tc.same {
			t.Errorf("%s: key changed: %v, want %v", tc.name, k != k0, !tc.same)
		}
		k0 = k
	}
	if k, _ := importsKey(dir, []string{"pkg=./other"}); k == k0 {
		t.Error("another package has the same key")
	}

	// Keys it cannot vouch for.
	writeFiles(t, dir, map[string]string{"go.mod": "module example.com/m\n\ngo 1.24\n\nreplace example.com/x => ../x\n"})
	if k, _ := importsKey(dir, nil); k != "" {
		t.Errorf("with a local replacement: key %q", k)
	}
	writeFiles(t, dir, map[string]string{"go.mod": "module example.com/m\n\ngo 1.24\n", "go.work": "go 1.24\n\nuse .\n"})
	if k, _ := importsKey(dir, nil); k != "" {
		t.Errorf("in a workspace: key %q", k)
	}
}
