package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KVModule writes, at dir, a module of its own holding examples/kv of the
// kiln module at root: its main package, and its store as package
// example.com/kvdev/store, with kiln replaced by root. Edits to it are a
// user's edits to their own module, which is what the tests and the bench
// of kiln dev make.
func KVModule(root, dir string) error {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, p))
		return string(b), err
	}
	mainSrc, err := read("examples/kv/main.go")
	if err != nil {
		return err
	}
	storeSrc, err := read("examples/annotated/kv/kv.go")
	if err != nil {
		return err
	}
	sum, err := read("go.sum")
	if err != nil {
		return err
	}
	files := map[string]string{
		"go.mod": "module example.com/kvdev\n\ngo 1.26\n\nrequire github.com/kiln-dev/kiln v0.0.0\n\nreplace github.com/kiln-dev/kiln => " + root + "\n",
		"go.sum": sum,
		"main.go": strings.NewReplacer(
			"github.com/kiln-dev/kiln/examples/annotated/kv", "example.com/kvdev/store",
			"kv.New()", "store.New()").Replace(mainSrc),
		"store/kv.go": strings.Replace(storeSrc, "package kv", "package store", 1),
	}
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			return err
		}
	}
	// The requirements kiln brings, from the module cache.
	tidy := exec.Command("go", "mod", "tidy")
	tidy.Dir = dir
	if out, err := tidy.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod tidy: %w\n%s", err, out)
	}
	return nil
}
