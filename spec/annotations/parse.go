package annotations

import (
	"cmp"
	"errors"
	"fmt"
	"go/ast"
	"go/scanner"
	"go/token"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// Import paths the annotated code is checked against.
const (
	httpPath     = "net/http"
	contextPath  = "context"
	sdkPath      = "github.com/kiln-dev/kiln/sdk"
	specPath     = "github.com/kiln-dev/kiln/spec"
	patternsPath = "github.com/kiln-dev/kiln/patterns"
)

// fileInfo is one file and the names it imports packages under.
type fileInfo struct {
	f     *ast.File
	names map[string]map[string]bool // import path → local names
	dot   map[string]bool            // import paths imported with "."
}

func newFileInfo(f *ast.File) *fileInfo {
	fi := &fileInfo{f: f, names: map[string]map[string]bool{}, dot: map[string]bool{}}
	for _, is := range f.Imports {
		p, err := strconv.Unquote(is.Path.Value)
		if err != nil {
			continue
		}
		name := path.Base(p)
		if is.Name != nil {
			name = is.Name.Name
		}
		switch name {
		case "_":
		case ".":
			fi.dot[p] = true
		default:
			if fi.names[p] == nil {
				fi.names[p] = map[string]bool{}
			}
			fi.names[p][name] = true
		}
	}
	return fi
}

// is says e denotes name of the package imported from path.
func (fi *fileInfo) is(e ast.Expr, path, name string) bool {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return fi.is(e.X, path, name)
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && e.Sel.Name == name && fi.names[path][x.Name]
	case *ast.Ident:
		return fi.dot[path] && e.Name == name
	}
	return false
}

// isPtr says e is *name of the package imported from path.
func (fi *fileInfo) isPtr(e ast.Expr, path, name string) bool {
	for {
		pe, ok := e.(*ast.ParenExpr)
		if !ok {
			break
		}
		e = pe.X
	}
	st, ok := e.(*ast.StarExpr)
	return ok && fi.is(st.X, path, name)
}

// owner is the declaration whose doc comment holds an annotation.
type owner struct {
	kind string // "func", "type", "type group", "var", "const", "import", "package"; "" for none
	fd   *ast.FuncDecl
	ts   *ast.TypeSpec
	fi   *fileInfo
}

// decl is a package-level func or type.
type decl struct {
	fd *ast.FuncDecl
	ts *ast.TypeSpec
	fi *fileInfo
}

// serviceAnn is one //kiln:service with a name.
type serviceAnn struct {
	d       *directive
	owner   owner
	name    word
	pattern word
	values  *values
	at      map[string]word
	index   int // in p.pkg.Services and the app's services; -1 when not added
}

// place is where a spec field was set, and how messages name it.
type place struct {
	pos   token.Pos
	label string
}

type reader struct {
	fset  *token.FileSet
	files []*fileInfo
	pkg   *Package
	errs  scanner.ErrorList
	bad   map[token.Pos]bool // positions that carry an error

	funcs   map[string]decl   // package-level funcs without receiver
	types   map[string]decl   // package-level types
	others  map[string]string // other package-level names → "var", "const"
	methods map[string][]decl // ServeHTTP methods by receiver type name
	owners  map[*ast.CommentGroup]owner

	services []*serviceAnn
	byName   map[string]*serviceAnn // the first of each name
	byTarget map[ast.Node]*serviceAnn
	unread   bool // some //kiln:service could not be read far enough to know its name
	app      *directive
	appName  word
	places   map[spec.Path]place
}

func newReader(fset *token.FileSet, files []*ast.File) *reader {
	p := &reader{
		fset:     fset,
		pkg:      &Package{App: &spec.App{}},
		bad:      map[token.Pos]bool{},
		funcs:    map[string]decl{},
		types:    map[string]decl{},
		others:   map[string]string{},
		methods:  map[string][]decl{},
		owners:   map[*ast.CommentGroup]owner{},
		byName:   map[string]*serviceAnn{},
		byTarget: map[ast.Node]*serviceAnn{},
		places:   map[spec.Path]place{},
	}
	for _, f := range files {
		p.files = append(p.files, newFileInfo(f))
	}
	return p
}

// errorf reports a problem at pos.
func (p *reader) errorf(pos token.Pos, format string, args ...any) {
	p.errs.Add(p.fset.Position(pos), fmt.Sprintf(format, args...))
	p.bad[pos] = true
}

func (p *reader) position(pos token.Pos) string { return p.fset.Position(pos).String() }

func (p *reader) run() {
	first := p.files[0].f
	p.pkg.Name = first.Name.Name
	for _, fi := range p.files[1:] {
		if n := fi.f.Name.Name; n != p.pkg.Name {
			p.errorf(fi.f.Name.Pos(), "package %s, but %s is package %s; give every file of the package one name", n, p.fset.Position(first.Package).Filename, p.pkg.Name)
		}
	}
	if p.pkg.Name == "main" {
		p.errorf(first.Name.Pos(), "package main cannot carry //kiln: annotations, since kiln writes the main package itself; move the handlers to a package of their own")
	}
	for _, fi := range p.files {
		p.index(fi)
	}
	for _, fi := range p.files {
		p.readFile(fi)
	}
	for _, s := range p.services {
		p.checkTarget(s)
		p.checkFuncs(s)
	}
	p.validate()
}

// index records fi's package-level names and which declaration each doc
// comment belongs to.
func (p *reader) index(fi *fileInfo) {
	if fi.f.Doc != nil {
		p.owners[fi.f.Doc] = owner{kind: "package", fi: fi}
	}
	for _, d := range fi.f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Doc != nil {
				p.owners[d.Doc] = owner{kind: "func", fd: d, fi: fi}
			}
			if d.Recv == nil {
				if _, ok := p.funcs[d.Name.Name]; !ok && d.Name.Name != "_" && d.Name.Name != "init" {
					p.funcs[d.Name.Name] = decl{fd: d, fi: fi}
				}
				continue
			}
			if d.Name.Name == "ServeHTTP" && len(d.Recv.List) == 1 {
				if t, _ := receiver(d.Recv.List[0].Type); t != "" {
					p.methods[t] = append(p.methods[t], decl{fd: d, fi: fi})
				}
			}
		case *ast.GenDecl:
			kind := d.Tok.String()
			if d.Doc != nil {
				o := owner{kind: kind, fi: fi}
				if d.Tok == token.TYPE {
					if len(d.Specs) == 1 {
						o.ts = d.Specs[0].(*ast.TypeSpec)
					} else {
						o.kind = "type group"
					}
				}
				p.owners[d.Doc] = o
			}
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Doc != nil {
						p.owners[s.Doc] = owner{kind: "type", ts: s, fi: fi}
					}
					if _, ok := p.types[s.Name.Name]; !ok {
						p.types[s.Name.Name] = decl{ts: s, fi: fi}
					}
				case *ast.ValueSpec:
					if s.Doc != nil {
						p.owners[s.Doc] = owner{kind: kind, fi: fi}
					}
					for _, n := range s.Names {
						if _, ok := p.others[n.Name]; !ok {
							p.others[n.Name] = kind
						}
					}
				case *ast.ImportSpec:
					if s.Doc != nil {
						p.owners[s.Doc] = owner{kind: kind, fi: fi}
					}
				}
			}
		}
	}
}

// receiver is the name of the type a method's receiver type expression
// names, and whether it is a pointer; "" for a generic or odd receiver.
func receiver(e ast.Expr) (name string, pointer bool) {
	for {
		switch x := e.(type) {
		case *ast.ParenExpr:
			e = x.X
			continue
		case *ast.StarExpr:
			if pointer {
				return "", false
			}
			pointer = true
			e = x.X
			continue
		case *ast.Ident:
			return x.Name, pointer
		}
		return "", false
	}
}

// readFile reads the annotations of one file, in position order.
func (p *reader) readFile(fi *fileInfo) {
	for _, cg := range fi.f.Comments {
		o := p.owners[cg]
		hasService := false
		var apps []*directive
		for _, c := range cg.List {
			if !strings.HasPrefix(c.Text, prefix) {
				continue
			}
			d := readDirective(c)
			switch d.verb {
			case "service":
				hasService = true
				p.readService(d, o)
			case "job", "cron":
				hasService = true
				p.readBatch(d, o)
			case "app":
				p.readApp(d)
				apps = append(apps, d)
			case "":
				p.errorf(d.pos(), "//kiln: names no annotation; write //kiln:service, //kiln:job, //kiln:cron or //kiln:app")
			default:
				p.errorf(d.pos(), "unknown annotation //kiln:%s%s; kiln reads //kiln:service, //kiln:job, //kiln:cron and //kiln:app", d.verb, didYouMeanDirective(d.verb))
			}
		}
		for _, d := range apps {
			if o.kind != "package" && (!hasService || (o.kind != "func" && o.kind != "type")) {
				p.errorf(d.pos(), "//kiln:app belongs in the doc comment of a package clause, or beside a //kiln:service; move it there")
			}
		}
	}
}

func didYouMeanDirective(verb string) string {
	if c := suggest(verb, []string{"service", "job", "cron", "app"}); c != "" {
		return " (did you mean //kiln:" + c + "?)"
	}
	return ""
}

// readBatch reads //kiln:job NAME [option=value ...] and //kiln:cron NAME
// schedule=... [option=value ...]: a //kiln:service whose pattern is the
// verb.
func (p *reader) readBatch(d *directive, o owner) {
	ws := d.words
	if d.unterminated == token.NoPos && (len(ws) == 0 || strings.Contains(ws[0].text, "=")) {
		at := d.verbEnd
		if len(ws) > 0 {
			at = ws[0].pos
		}
		more := ""
		if d.verb == "cron" {
			more = " " + examples["schedule"]
		}
		p.errorf(at, "missing %s name; write //kiln:%s NAME%s [option=value ...]", d.verb, d.verb, more)
		p.unread = true
		return
	}
	if len(ws) > 0 {
		verb := word{text: d.verb, pos: d.verbEnd - token.Pos(len(d.verb))}
		d.words = append([]word{ws[0], verb}, ws[1:]...)
	}
	p.readService(d, o)
}

// readApp reads //kiln:app NAME.
func (p *reader) readApp(d *directive) {
	if d.unterminated != token.NoPos {
		p.errorf(d.unterminated, "unterminated string literal; end it with %c", d.quote())
		return
	}
	if p.app != nil {
		p.errorf(d.pos(), "//kiln:app is given twice (first at %s); keep one", p.position(p.app.pos()))
		return
	}
	p.app = d
	if len(d.words) == 0 {
		p.errorf(d.verbEnd, "missing app name; write //kiln:app NAME")
		return
	}
	for _, w := range d.words[1:] {
		p.errorf(w.pos, "unexpected %q after the app name; //kiln:app takes one name", w.text)
	}
	p.appName = d.words[0]
	p.pkg.App.Name = d.words[0].text
}

// readService reads a //kiln:service in the doc comment of o, and adds its
// service to the app. It returns nil when not even the name can be read.
func (p *reader) readService(d *directive, o owner) *serviceAnn {
	p.checkPlace(d, o)
	if d.unterminated != token.NoPos {
		p.errorf(d.unterminated, "unterminated string literal; end it with %c", d.quote())
		p.unread = true
		return nil
	}
	ws := d.words
	hasEq := func(i int) bool { return i < len(ws) && strings.Contains(ws[i].text, "=") }
	var name, pattern word
	var opts []word
	switch {
	case len(ws) == 0:
		p.errorf(d.verbEnd, "missing service name; write //kiln:service NAME PATTERN [option=value ...]")
	case hasEq(0):
		p.errorf(ws[0].pos, "missing service name and pattern before the options; write //kiln:service NAME PATTERN [option=value ...]")
		opts = ws
	case isPattern(ws[0].text) && (len(ws) == 1 || hasEq(1)):
		p.errorf(ws[0].pos, "missing service name before the pattern %s; write //kiln:service NAME %s ...", ws[0].text, ws[0].text)
		pattern, opts = ws[0], ws[1:]
	case len(ws) == 1:
		name = ws[0]
		p.errorf(ws[0].end(), "missing pattern after service name %s; write //kiln:service %s PATTERN, where PATTERN is %s", name.text, name.text, patternsText)
	case hasEq(1):
		name, opts = ws[0], ws[1:]
		p.errorf(ws[1].pos, "missing pattern after service name %s; write //kiln:service %s PATTERN, where PATTERN is %s", name.text, name.text, patternsText)
	default:
		name, opts = ws[0], ws[2:]
		if isPattern(ws[1].text) {
			pattern = ws[1]
		} else {
			p.errorf(ws[1].pos, "unknown pattern %q%s; use %s", ws[1].text, didYouMean(ws[1].text, patternNames), patternsText)
		}
	}
	opt := p.readOptions(opts, pattern.text)
	v, at, mentioned := opt.v, opt.at, opt.mentioned
	if name.text == "" {
		p.unread = true
		return nil
	}
	s := &serviceAnn{d: d, owner: o, name: name, pattern: pattern, values: v, at: at, index: -1}
	p.services = append(p.services, s)
	if first, ok := p.byName[name.text]; ok {
		p.errorf(name.pos, "service %s is declared twice (first at %s); rename one", name.text, p.position(first.name.pos))
	} else {
		p.byName[name.text] = s
	}
	var target ast.Node
	switch {
	case o.fd != nil:
		target = o.fd
	case o.ts != nil:
		target = o.ts
	}
	if target != nil {
		if first, ok := p.byTarget[target]; ok {
			p.errorf(d.pos(), "%s already carries //kiln:service %s (at %s); a func or type makes the handler of one service, so give %s one of its own", targetName(o), first.name.text, p.position(first.d.pos()), name.text)
		} else {
			p.byTarget[target] = s
		}
	}
	if pattern.text != "" {
		for _, req := range requiredOptions[pattern.text] {
			if !mentioned[req] {
				p.errorf(pattern.pos, "a %s service needs option %s; add %s", pattern.text, req, examples[req])
			}
		}
	}
	if pattern.text != "" && p.byName[name.text] == s {
		p.add(s)
	}
	return s
}

func targetName(o owner) string {
	if o.fd != nil {
		return o.fd.Name.Name
	}
	return o.ts.Name.Name
}

// checkPlace reports a //kiln:service that is not in the doc comment of a
// package-level func or type.
func (p *reader) checkPlace(d *directive, o owner) {
	if d.verb == "job" || d.verb == "cron" {
		switch {
		case o.kind == "func" && o.fd.Recv != nil && len(o.fd.Recv.List) > 0:
			p.errorf(d.pos(), "//kiln:%s is on the method (%s).%s; want a package-level func %s(ctx context.Context) error", d.verb, exprString(o.fd.Recv.List[0].Type), o.fd.Name.Name, exported(o.fd.Name.Name))
		case o.kind != "func" && o.kind != "type": // a type is checkJobFunc's to report
			p.errorf(d.pos(), "//kiln:%s is not in the doc comment of a package-level func; put it right above the func Name(ctx context.Context) error that each run calls, with no blank line between", d.verb)
		}
		return
	}
	switch o.kind {
	case "func":
		if o.fd.Recv != nil && len(o.fd.Recv.List) > 0 {
			recv := exprString(o.fd.Recv.List[0].Type)
			p.errorf(d.pos(), "//kiln:service is on the method (%s).%s; want a package-level func, like func %s() http.Handler, or a type with a ServeHTTP method", recv, o.fd.Name.Name, exported(o.fd.Name.Name))
		}
	case "type":
	case "type group":
		p.errorf(d.pos(), "//kiln:service is on a group of types; put it in the doc comment of the one type of the group that is a handler")
	case "var", "const", "import":
		p.errorf(d.pos(), "//kiln:service is on a %s declaration; put it in the doc comment of the func or type that makes the handler", o.kind)
	case "package":
		p.errorf(d.pos(), "//kiln:service is in the package comment; put it in the doc comment of the func or type that makes the handler")
	default:
		p.errorf(d.pos(), "//kiln:service is not in the doc comment of a package-level func or type; put it in the comment right above the func that makes the handler, with no blank line between")
	}
}

// add makes s a service of the app, and records where each of its fields
// was set.
func (p *reader) add(s *serviceAnn) {
	v, pat := s.values, s.pattern.text
	svc := spec.Service{Name: s.name.text, Port: v.port, Public: v.public, Routers: v.routers, Egress: v.egress}
	switch pat {
	case "simple":
		svc.Simple = &spec.Simple{Replicas: v.replicas}
	case "shard":
		svc.Shard = &spec.Shard{Shards: v.shards, Key: v.key, Ambassador: v.ambassador}
	case "scatter":
		svc.Scatter = &spec.Scatter{Leaves: v.leaves, Gather: v.gather, Timeout: v.timeout, OnLeafError: v.onLeafError}
	case "spread":
		svc.Spread = &spec.Spread{Replicas: v.replicas, Choice: v.choice}
	case "job":
		svc.Job = &spec.Job{Completions: v.completions, Parallelism: v.parallelism, Retries: v.retries, Deadline: v.deadline}
	case "cron":
		svc.Cron = &spec.Cron{
			Schedule: v.schedule, TimeZone: v.timeZone, ConcurrencyPolicy: v.concurrency, StartingDeadline: v.startingDeadline, Suspend: v.suspend,
			Job: spec.Job{Completions: v.completions, Parallelism: v.parallelism, Retries: v.retries, Deadline: v.deadline},
		}
	}
	if v.storage != "" || v.storagePath != "" || v.storageClass != "" {
		svc.Storage = &spec.Storage{Size: v.storage, Path: v.storagePath, Class: v.storageClass}
	}
	if v.lease != "" || v.leaseDuration != 0 || v.lead.text != "" {
		// One lease a service, named after it unless lease= names it.
		svc.Leases = []spec.Lease{{Name: cmp.Or(v.lease, svc.Name), Duration: v.leaseDuration}}
	}
	i := len(p.pkg.App.Services)
	p.pkg.App.Services = append(p.pkg.App.Services, svc)
	p.pkg.Services = append(p.pkg.Services, Service{Name: svc.Name, Pos: p.fset.Position(s.d.pos())})
	s.index = i

	sp := spec.ServicePath(i, svc.Name)
	p.places[sp] = place{pos: s.d.pos(), label: "service " + svc.Name}
	p.places[sp.Dot("name")] = place{pos: s.name.pos, label: "service name"}
	p.places[sp.Dot(pat)] = place{pos: s.pattern.pos, label: pat}
	for name, w := range s.at {
		fp := sp.Dot(pat).Dot(fields[name])
		switch {
		case name == "port" || name == "public" || name == "routers":
			fp = sp.Dot(fields[name])
		case name == "egress":
			fp = sp.Dot(fields[name])
			for i := range v.egress {
				p.places[fp.Index(i)] = place{pos: w.pos, label: name}
			}
		case strings.HasPrefix(name, "storage"):
			fp = sp.Dot("storage").Dot(fields[name])
			if _, ok := p.places[sp.Dot("storage")]; !ok {
				p.places[sp.Dot("storage")] = place{pos: w.pos, label: name}
			}
		case name == "lease" || name == "lease-duration" || name == "lead":
			fp = sp.Dot("leases").Index(0).Dot(fields[name])
			if _, ok := p.places[sp.Dot("leases")]; !ok {
				p.places[sp.Dot("leases")] = place{pos: w.pos, label: name}
			}
		case pat == "cron" && slices.Contains(jobOptions, name):
			fp = sp.Dot(pat).Dot("job").Dot(fields[name])
		}
		p.places[fp] = place{pos: w.pos, label: name}
	}
	if _, ok := s.at["storage"]; svc.Storage != nil && !ok {
		// A storage option without storage=SIZE: the size is missing
		// from the first one's word.
		for _, name := range []string{"storage-path", "storage-class"} {
			if w, ok := s.at[name]; ok {
				p.places[sp.Dot("storage").Dot("size")] = place{pos: w.pos - token.Pos(len(name)+1), label: "storage"}
				break
			}
		}
	}
	if w, ok := s.at["key"]; ok && v.key.Regexp != "" {
		p.places[sp.Dot(pat).Dot("key").Dot("regexp")] = place{pos: w.pos, label: "key regexp"}
	}
}

// validate sets the app's defaults, validates it and reports what
// Validate finds at the words that set the fields.
func (p *reader) validate() {
	app := p.pkg.App
	if len(app.Services) == 0 {
		// Any other problem (a misspelt //kiln:service, say) explains
		// why there is no service.
		if len(p.errs) == 0 {
			f := p.files[0].f
			p.errorf(f.Name.Pos(), "package %s has no //kiln:service annotation; mark the func that makes a handler with //kiln:service NAME PATTERN, or give kiln a main package that calls sdk.Run", f.Name.Name)
		}
		app.SetDefaults()
		return
	}
	app.SetDefaults()
	err := app.Validate()
	var errs spec.Errors
	if !errors.As(err, &errs) {
		return
	}
	for _, e := range errs {
		if e.Path == "name" && p.app == nil {
			// The name is the first service's, which has its own error.
			continue
		}
		pl, exact := p.place(e.Path)
		if p.bad[pl.pos] {
			continue
		}
		msg := pl.label + " " + e.Msg
		if !exact {
			msg = string(e.Path) + " " + e.Msg
		}
		p.errorf(pl.pos, "%s", msg)
	}
}

// place is where the field at path was set: exactly, or else the place of
// the longest recorded path that encloses it, or else the first file's
// package clause.
func (p *reader) place(fp spec.Path) (pl place, exact bool) {
	if fp == "name" && p.app != nil {
		pos := p.appName.pos
		if pos == token.NoPos {
			pos = p.app.pos()
		}
		return place{pos: pos, label: "app name"}, true
	}
	if pl, ok := p.places[fp]; ok {
		return pl, true
	}
	best := ""
	for q := range p.places {
		s := string(q)
		if len(s) > len(best) && strings.HasPrefix(string(fp), s) && len(fp) > len(s) && (fp[len(s)] == '.' || fp[len(s)] == '[') {
			best = s
		}
	}
	if best != "" {
		return p.places[spec.Path(best)], false
	}
	return place{pos: p.files[0].f.Name.Pos(), label: "package " + p.pkg.Name}, false
}
