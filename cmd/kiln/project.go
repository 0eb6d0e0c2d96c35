package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	hclv2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
	"github.com/kiln-dev/kiln/spec/annotations"
	kilnhcl "github.com/kiln-dev/kiln/spec/hcl"
)

// DescriptorName is the descriptor a directory may hold.
const DescriptorName = "kiln.hcl"

// project is what a command works on: a main package that declares its app
// in Go, or a kiln.hcl descriptor that names the main package of each of
// its services.
type project struct {
	arg      string
	app      *spec.App
	file     *kilnhcl.File // nil for a package
	parser   *hclparse.Parser
	programs []*program // distinct main packages, in app order
	tmp      []string   // directories of generated main packages' overlays
}

// close removes the overlays.
func (pr *project) close() {
	for _, d := range pr.tmp {
		os.RemoveAll(d)
	}
	pr.tmp = nil
}

// single is the project's one program, for targets that run one.
func (pr *project) single(target string) (*program, error) {
	if len(pr.programs) == 1 {
		return pr.programs[0], nil
	}
	var names []string
	for _, p := range pr.programs {
		names = append(names, p.name())
	}
	return nil, fmt.Errorf("%s runs one program, and %s builds its services from %d: %s", target, pr.arg, len(names), strings.Join(names, ", "))
}

// program is one main package of a project, and the services it runs.
// tags are the build tags of p's images beyond kiln_image: the
// Kubernetes lease back-end when one of its services declares a lease.
func (p *program) tags(app *spec.App) []string {
	for _, name := range p.services {
		if s := app.Service(name); s != nil && len(s.Leases) > 0 {
			return []string{builder.KubeTag}
		}
	}
	return nil
}

type program struct {
	dir, pkg string   // what builder takes: the package pkg, resolved in dir
	services []string // in app order
	bin      string   // once compiled

	prepared bool
	// For an annotated package: the annotations, and the overlay through
	// which go build sees the main package kiln generates for it (pkg then
	// names that main package, which exists only in the overlay).
	gen        *annotations.Package
	overlay    string
	importPath string
	srcDir     string // the annotated package's directory, for messages
}

// name is how messages name the program: its path as the user wrote it.
func (p *program) name() string {
	dir := p.dir
	if p.srcDir != "" {
		dir = p.srcDir
	}
	if dir == "" {
		return p.pkg
	}
	if rel := relPath(dir); rel == "." {
		return rel
	} else if rel != dir {
		return "./" + filepath.ToSlash(rel)
	}
	return dir
}

// descriptorPath says whether arg names a descriptor: a path ending in
// .hcl, or a directory holding kiln.hcl.
func descriptorPath(arg string) (string, bool) {
	if strings.HasSuffix(arg, ".hcl") {
		return arg, true
	}
	p := filepath.Join(arg, DescriptorName)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return p, true
	}
	return "", false
}

// varFlags are --var name=value, read by descriptors.
type varFlags []string

// addVarFlag gives cmd and its subcommands --var; varsOf reads it.
func addVarFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().StringArray("var", nil, "set a kiln.hcl variable: --var name=value (repeatable; wins over KILN_VAR_name and the default)")
}

func (v varFlags) parse() (map[string]string, error) {
	out := map[string]string{}
	for _, s := range v {
		k, val, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--var %q: want name=value", s)
		}
		out[k] = val
	}
	return out, nil
}

// openProject reads what arg names. A descriptor is read without building
// anything; a package is compiled and asked for its spec, and its binary
// kept for the caller (see compile).
func openProject(ctx context.Context, arg string, vars varFlags) (*project, error) {
	path, ok := descriptorPath(arg)
	if !ok {
		pr, err := openPackage(ctx, arg)
		if err != nil {
			return nil, err
		}
		if err := pr.describe(ctx); err != nil {
			pr.close()
			return nil, err
		}
		return pr, nil
	}
	pr := &project{arg: arg}
	vs, err := vars.parse()
	if err != nil {
		return nil, err
	}
	pr.parser = hclparse.NewParser()
	f, diags := kilnhcl.Load(pr.parser, path, kilnhcl.Options{Vars: vs, Env: os.Environ()})
	if diags.HasErrors() {
		return nil, pr.diagError(diags)
	}
	pr.file, pr.app = f, f.App
	byDir := map[string]*program{}
	for _, s := range f.App.Services {
		dir := f.Sources[s.Name]
		p := byDir[dir]
		if p == nil {
			p = &program{dir: dir, pkg: "."}
			byDir[dir] = p
			pr.programs = append(pr.programs, p)
		}
		p.services = append(p.services, s.Name)
	}
	return pr, nil
}

// openMain is openProject for a package that is known to be a main
// package with importPath, which saves the go list that would find out.
func openMain(ctx context.Context, arg, importPath string) (*project, error) {
	p := &program{pkg: arg, prepared: true, importPath: importPath}
	pr := &project{arg: arg, programs: []*program{p}}
	if err := pr.describe(ctx); err != nil {
		return nil, err
	}
	return pr, nil
}

// describe sets the app of a project of one package: a main package says
// what it declares only when compiled and asked.
func (pr *project) describe(ctx context.Context) error {
	p := pr.programs[0]
	if pr.app == nil {
		var err error
		if p.bin, pr.app, err = compileProgram(ctx, p); err != nil {
			return err
		}
	}
	for _, s := range pr.app.Services {
		p.services = append(p.services, s.Name)
	}
	return nil
}

// diagError is a descriptor's diagnostics, printed the way HCL prints
// them: file:line:col, the source lines, the message.
type diagError struct {
	diags  hclv2.Diagnostics
	parser *hclparse.Parser
}

func (e *diagError) Error() string {
	var buf bytes.Buffer
	// On a terminal, colour underlines each problem's range in its line.
	w := hclv2.NewDiagnosticTextWriter(&buf, e.parser.Files(), 78, term.IsTerminal(int(os.Stderr.Fd())))
	for _, d := range e.diags {
		if r := d.Subject; r != nil {
			fmt.Fprintf(&buf, "%s:%d:%d: ", r.Filename, r.Start.Line, r.Start.Column)
		}
		w.WriteDiagnostic(d)
	}
	n := len(e.diags.Errs())
	noun := "problem"
	if n != 1 {
		noun = "problems"
	}
	return fmt.Sprintf("%d %s:\n\n%s", n, noun, strings.TrimRight(buf.String(), "\n"))
}

func (pr *project) diagError(d hclv2.Diagnostics) error {
	return &diagError{diags: d, parser: pr.parser}
}

// fieldError reports err, which a back-end returned about the app, at its
// descriptor positions when the app came from one.
func (pr *project) fieldError(err error) error {
	if err == nil || pr.file == nil {
		return err
	}
	return pr.diagError(pr.file.Diagnostics(err))
}

// compile builds every program of the project (once) and checks that each
// one agrees with the descriptor. close removes the binaries.
func (pr *project) compile(ctx context.Context) error {
	var diags hclv2.Diagnostics
	for _, p := range pr.programs {
		if p.bin != "" {
			continue
		}
		if err := pr.prepare(ctx, p); err != nil {
			return err
		}
		bin, code, err := compileProgram(ctx, p)
		if err != nil {
			return err
		}
		p.bin = bin
		if pr.file == nil {
			if err := p.sameAsGenerated(code); err != nil {
				return err
			}
			continue
		}
		for _, name := range p.services {
			diags = append(diags, pr.agree(name, code, p)...)
		}
	}
	if diags.HasErrors() {
		return pr.diagError(diags)
	}
	return nil
}

// binaries maps each service to its program's binary.
func (pr *project) binaries() map[string]string {
	out := map[string]string{}
	for _, p := range pr.programs {
		for _, s := range p.services {
			out[s] = p.bin
		}
	}
	return out
}

// compileProgram builds p, which prepare has looked at, for this machine
// and asks the binary for its spec. The binary is kept in kiln's cache,
// one place per program, so that go build finds it up to date and links
// nothing when the program has not changed.
func compileProgram(ctx context.Context, p *program) (string, *spec.App, error) {
	// Named after the package (or, for a generated main, the app), so ps
	// and logs say which program runs.
	name := filepath.Base(p.pkg)
	if p.overlay == "" {
		name = filepath.Base(p.importPath)
	}
	cache, err := builder.DefaultCacheDir()
	if err != nil {
		return "", nil, err
	}
	abs, err := filepath.Abs(p.dir)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256([]byte(abs + "\x00" + p.pkg))
	bin := filepath.Join(cache, "programs", hex.EncodeToString(sum[:8]), name)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", nil, err
	}
	if err := builder.Compile(ctx, p.pkg, builder.CompileOptions{Dir: p.dir, Output: bin, Overlay: p.overlay}); err != nil {
		return "", nil, err
	}
	app, err := sdk.Describe(ctx, bin)
	if err != nil {
		return "", nil, err
	}
	return bin, app, nil
}

// agree checks service name of the descriptor against the program that
// runs it. The program's roles serve with the spec the program declares,
// so every field the program sets must have the same value in the
// descriptor. The descriptor may add what the program leaves unset (env,
// resources, sidecars, init containers, volumes, probes, autoscale,
// public): only deployers use those.
func (pr *project) agree(name string, code *spec.App, p *program) hclv2.Diagnostics {
	i := slices.IndexFunc(pr.app.Services, func(s spec.Service) bool { return s.Name == name })
	path := spec.ServicePath(i, name)
	cs := code.Service(name)
	if cs == nil {
		return hclv2.Diagnostics{{
			Severity: hclv2.DiagError,
			Summary:  "Service not declared by its program",
			Detail: fmt.Sprintf("Service %q is built from %s, which declares %s in Go and no %q. Name one of those services here, or declare %q in the program.",
				name, p.name(), strings.Join(quotedNames(code), ", "), name, name),
			Subject: ptr(pr.file.Range(path)),
		}}
	}
	want, got := leaves(pr.app.Service(name)), leaves(cs)
	var diags hclv2.Diagnostics
	for _, k := range slices.Sorted(maps.Keys(got)) {
		fp := path + spec.Path(k)
		here, ok := want[k]
		if ok && here == got[k] {
			continue
		}
		field := strings.TrimPrefix(k, ".")
		detail := fmt.Sprintf("%s of service %q is %s here but %s in %s, which runs it; its roles serve with the program's value. Make the two agree.", field, name, here, got[k], p.name())
		if !ok {
			detail = fmt.Sprintf("%s of service %q is not set here but is %s in %s, which runs it; its roles serve with the program's value. Set it here to the same value, or remove it from the program.", field, name, got[k], p.name())
		}
		diags = append(diags, &hclv2.Diagnostic{
			Severity: hclv2.DiagError,
			Summary:  "Descriptor and program disagree",
			Detail:   detail,
			Subject:  ptr(pr.file.Range(fp)),
		})
	}
	return diags
}

func quotedNames(app *spec.App) []string {
	var out []string
	for _, s := range app.Services {
		out = append(out, fmt.Sprintf("%q", s.Name))
	}
	return out
}

// leaves flattens a service's JSON form into field path suffixes
// (.shard.shards, .env["K"], .sidecars[0].image) and their JSON values.
func leaves(s *spec.Service) map[string]string {
	b, _ := json.Marshal(s)
	var v any
	json.Unmarshal(b, &v)
	out := map[string]string{}
	var walk func(p spec.Path, v any, isMap bool)
	walk = func(p spec.Path, v any, isMap bool) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if isMap {
					walk(p.Key(k), c, false)
				} else {
					walk(p+"."+spec.Path(k), c, k == "env")
				}
			}
		case []any:
			for i, c := range t {
				walk(p.Index(i), c, false)
			}
		default:
			j, _ := json.Marshal(t)
			out[string(p)] = string(j)
		}
	}
	walk("", v, false)
	delete(out, ".name")
	return out
}

func ptr[T any](v T) *T { return &v }
