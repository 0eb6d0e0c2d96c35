package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/spec"
	"github.com/kiln-dev/kiln/spec/annotations"
)

// prepare finds out what kind of package p is. A main package is built as
// it is. A package with //kiln:service annotations gets a generated main
// package, which go build sees through an overlay: nothing is written into
// the user's tree.
func (pr *project) prepare(ctx context.Context, p *program) error {
	if p.prepared {
		return nil
	}
	p.prepared = true
	lp, err := builder.List(ctx, p.dir, p.pkg)
	if err != nil {
		return err
	}
	p.importPath = lp.ImportPath
	if lp.Name == "main" {
		return nil
	}
	fset := token.NewFileSet()
	ap, err := annotations.ParseDir(fset, lp.Dir, lp.GoFiles)
	if errors.Is(err, annotations.ErrNone) {
		return fmt.Errorf("%s is package %s, with no main and no //kiln:service annotation: point kiln at a main package whose main() calls sdk.Run, or annotate the func that makes a handler (//kiln:service NAME PATTERN ...)", p.pkg, lp.Name)
	}
	if err != nil {
		return annotationError(err)
	}
	src, err := annotations.Main(ap, lp.ImportPath)
	if err != nil {
		return err
	}
	main := annotations.MainDir(lp.Dir, ap.App.Name)
	tmp, err := os.MkdirTemp("", "kiln-main-")
	if err != nil {
		return err
	}
	pr.tmp = append(pr.tmp, tmp)
	if p.overlay, err = builder.WriteOverlay(tmp, map[string][]byte{filepath.Join(main, "main.go"): src}); err != nil {
		return err
	}
	// Built from the module's root, so that the compiler names the
	// package's files the way a developer at the root sees them.
	p.dir, p.pkg, p.gen, p.srcDir = lp.Dir, "./"+filepath.Base(main), ap, lp.Dir
	if lp.Module != nil && lp.Module.Dir != "" {
		if rel, err := filepath.Rel(lp.Module.Dir, main); err == nil {
			p.dir, p.pkg = lp.Module.Dir, "./"+filepath.ToSlash(rel)
		}
	}
	return nil
}

// sameAsGenerated checks that the program kiln generated describes what
// the annotations say; anything else is a bug in the generator.
func (p *program) sameAsGenerated(code *spec.App) error {
	if p.gen == nil {
		return nil
	}
	want, _ := p.gen.App.MarshalStable()
	got, _ := code.MarshalStable()
	if !bytes.Equal(want, got) {
		return fmt.Errorf("the main package generated for %s describes\n%s\nbut its annotations say\n%s(this is a bug in kiln)", p.name(), got, want)
	}
	return nil
}

// annotationError prints every annotation problem the way the Go compiler
// does, with the line and the offending word marked.
func annotationError(err error) error {
	var list scanner.ErrorList
	if !errors.As(err, &list) {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s in //kiln: annotations:\n", len(list), plural(len(list), "problem", "problems"))
	for _, e := range list {
		fmt.Fprintf(&b, "\n%s: %s\n", relPos(e.Pos), e.Msg)
		if line, ok := sourceLine(e.Pos); ok {
			fmt.Fprintf(&b, "  %s\n  %s^\n", line, strings.Repeat(" ", max(0, e.Pos.Column-1)))
		}
	}
	return errors.New(strings.TrimRight(b.String(), "\n"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// relPos is pos with its file relative to the working directory when it
// lies below it.
func relPos(pos token.Position) string {
	pos.Filename = relPath(pos.Filename)
	return pos.String()
}

// sourceLine is the line pos points into, tabs turned to spaces so that
// the marker lines up.
func sourceLine(pos token.Position) (string, bool) {
	b, err := os.ReadFile(pos.Filename)
	if err != nil || pos.Line < 1 {
		return "", false
	}
	lines := strings.Split(string(b), "\n")
	if pos.Line > len(lines) {
		return "", false
	}
	return strings.ReplaceAll(lines[pos.Line-1], "\t", " "), true
}

// openPrograms is what a command that builds images works on: the
// programs of arg, each prepared, and, for a descriptor, compiled and
// checked against it. A main package is not compiled here: the image
// build does that.
func openPrograms(ctx context.Context, arg string, vars varFlags) (*project, error) {
	if _, ok := descriptorPath(arg); ok {
		pr, err := openProject(ctx, arg, vars)
		if err != nil {
			return nil, err
		}
		if err := pr.compile(ctx); err != nil {
			pr.close()
			return nil, err
		}
		return pr, nil
	}
	return openPackage(ctx, arg)
}

// openPackage is the project of the package arg, prepared: its app is set
// for an annotated package, and left nil for a main package, which says
// what it declares only once compiled.
func openPackage(ctx context.Context, arg string) (*project, error) {
	p := &program{pkg: arg}
	pr := &project{arg: arg, programs: []*program{p}}
	if err := pr.prepare(ctx, p); err != nil {
		pr.close()
		return nil, err
	}
	if p.gen != nil {
		pr.app = p.gen.App
	}
	return pr, nil
}

func newEjectCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "eject [package]",
		Short: "Write the main package kiln generates for an annotated package",
		Long: `eject writes the main package that kiln generates for a package of
//kiln:service annotations (default ".") into the tree, as ordinary SDK
code, for those who want to own it: kiln describe of the written program
prints the same spec as kiln describe of the annotated package. It goes to
--out (default: cmd/APP under the package), and an existing main.go is
left alone unless --force.`,
		Example: `  kiln eject ./examples/annotated/shop
  go run ./examples/annotated/shop/cmd/shop`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := pkgArg(args)
			if _, ok := descriptorPath(arg); ok {
				return fmt.Errorf("%s is a descriptor: eject writes the main package of a package of //kiln: annotations", arg)
			}
			pr, err := openPrograms(cmd.Context(), arg, nil)
			if err != nil {
				return err
			}
			defer pr.close()
			p := pr.programs[0]
			if p.gen == nil {
				return fmt.Errorf("%s is a main package already: there is nothing to eject", arg)
			}
			src, err := annotations.Main(p.gen, p.importPath)
			if err != nil {
				return err
			}
			src = ejected(src, p.importPath)
			if out == "" {
				out = filepath.Join(p.dir, "cmd", p.gen.App.Name)
			}
			file := filepath.Join(out, "main.go")
			if _, err := os.Stat(file); err == nil && !force {
				return fmt.Errorf("%s exists: remove it, or pass --force to overwrite it", relPath(file))
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(file, src, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiln: wrote %s; run it with go run ./%s\n", relPath(file), filepath.ToSlash(relPath(out)))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory of the main package (default: cmd/APP under the package)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing main.go")
	return cmd
}

// ejected turns generated source into the user's own: its "Code
// generated" line, which tools read as "do not edit", becomes a comment
// saying where it came from.
func ejected(src []byte, importPath string) []byte {
	first, rest, _ := bytes.Cut(src, []byte("\n"))
	if !bytes.HasPrefix(first, []byte("// Code generated")) {
		return src
	}
	return append([]byte("// Command main runs the services that the //kiln: annotations of\n// "+importPath+" declare. kiln eject wrote it; edit it freely.\n"), rest...)
}

// relPath is path relative to the working directory when below it.
func relPath(path string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return path
}
