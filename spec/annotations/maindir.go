package annotations

import (
	"errors"
	"os"
	"path/filepath"
)

// MainDir is the directory in which the main package generated for the
// annotated package in dir is made to appear (through go build -overlay,
// which adds files without writing them): a directory named after the app,
// so that the binary and the image are, that does not exist, so that the
// generated file never joins a real package.
func MainDir(dir, app string) string {
	for _, name := range []string{app, app + "-main", app + "-kiln-main"} {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			return filepath.Join(dir, name)
		}
	}
	return filepath.Join(dir, app+"-kiln-generated-main")
}
