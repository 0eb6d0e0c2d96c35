package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// checker gets go list's verdict on a build: that the package is a main
// package and needs no cgo. It skips go list when what the verdict depends
// on is as it was when it last passed (importsKey), and otherwise runs it
// alongside go build, from when go build starts to work.
type checker struct {
	keyDone chan struct{}
	passed  string // the marker of a passed check
	known   bool   // the marker exists

	start   func()
	once    sync.Once
	cancel  context.CancelFunc
	done    chan struct{}
	listErr error
}

func newChecker(ctx context.Context, dir, absDir, pkg string, p Platform, cacheDir string, extraEnv []string) *checker {
	env := slices.Concat(p.goEnv(), []string{"CGO_ENABLED=1"}, extraEnv)
	lctx, cancel := context.WithCancel(ctx)
	c := &checker{keyDone: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() { // in parallel with go build
		defer close(c.keyDone)
		// Without a key (or on an error reading the module), go list runs.
		key, _ := importsKey(dir, slices.Concat(env, []string{"pkg=" + pkg, "dir=" + absDir, "GOFLAGS=" + os.Getenv("GOFLAGS"), "GOEXPERIMENT=" + os.Getenv("GOEXPERIMENT")}))
		if key != "" {
			c.passed = filepath.Join(cacheDir, "checked", key)
			_, err := os.Stat(c.passed)
			c.known = err == nil
		}
	}()
	c.start = func() {
		go func() {
			defer close(c.done)
			p, deps, err := list(lctx, dir, pkg, true, env)
			if err == nil {
				err = checkCgo(p.ImportPath, deps)
			}
			c.listErr = err
		}()
	}
	return c
}

// working is called when go build starts to work: go list may be needed.
func (c *checker) working() {
	if <-c.keyDone; !c.known {
		c.once.Do(c.start)
	}
}

// verdict is go list's error, if any, after go build ended with buildErr.
// A failed build always asks go list, whose errors say more.
func (c *checker) verdict(buildErr error) error {
	if <-c.keyDone; buildErr == nil && c.known {
		return nil
	}
	c.once.Do(c.start)
	<-c.done
	if c.listErr == nil && buildErr == nil && c.passed != "" {
		os.MkdirAll(filepath.Dir(c.passed), 0o755)
		os.WriteFile(c.passed, nil, 0o644)
	}
	return c.listErr
}

// close stops go list, if it runs, and waits for it.
func (c *checker) close() {
	c.cancel()
	c.once.Do(func() { close(c.done) }) // never started
	<-c.done
	<-c.keyDone
}

// importsKey fingerprints what go list's verdict on a build depends on:
// which packages it takes in and which of them import "C". Those follow
// from go.mod and go.sum (the versions of every other module, whose code
// cannot change), and from the main module's Go files: their names, build
// constraints and imports, but not the rest of their code. A rebuild after
// an edit inside a function has the same key, so it needs no go list.
//
// env holds whatever else the verdict depends on: the package asked for,
// the platform, build flags.
//
// It returns "" when it cannot vouch for the key: in a workspace, with a
// vendor directory, or when go.mod replaces a module with a local
// directory, whose files it does not read.
func importsKey(dir string, env []string) (string, error) {
	if w := os.Getenv("GOWORK"); w != "" && w != "off" {
		return "", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	root := ""
	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return "", nil
		}
		if root == "" {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				root = d
			}
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if root == "" {
		return "", nil
	}
	if _, err := os.Stat(filepath.Join(root, "vendor")); err == nil {
		return "", nil
	}
	h := sha256.New()
	for _, e := range env {
		h.Write([]byte(e + "\x00"))
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, local := range []string{"=> ./", "=> ../", "=> /"} {
		if bytes.Contains(gomod, []byte(local)) {
			return "", nil
		}
	}
	h.Write(gomod)
	gosum, _ := os.ReadFile(filepath.Join(root, "go.sum"))
	h.Write(gosum)
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			// What the go command ignores, and nested modules.
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); path != root && err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			// go list will report it, and go build too.
			return errUnparsable
		}
		rel, _ := filepath.Rel(root, path)
		// The header holds the build constraints; imports in order.
		header := src[:fset.Position(f.Package).Offset]
		imports := make([]string, len(f.Imports))
		for i, imp := range f.Imports {
			imports[i], _ = strconv.Unquote(imp.Path.Value)
		}
		slices.Sort(imports)
		h.Write([]byte(rel + "\x00" + f.Name.Name + "\x00"))
		h.Write(header)
		h.Write([]byte("\x00" + strings.Join(imports, "\x00") + "\x00\x00"))
		return nil
	})
	if errors.Is(err, errUnparsable) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var errUnparsable = errors.New("a Go file does not parse")
