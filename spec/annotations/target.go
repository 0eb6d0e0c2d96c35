package annotations

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// param is one parameter or result: its name (nil when unnamed) and type.
type param struct {
	name *ast.Ident
	typ  ast.Expr
}

// flatten lists fl one name at a time.
func flatten(fl *ast.FieldList) []param {
	if fl == nil {
		return nil
	}
	var out []param
	for _, f := range fl.List {
		if len(f.Names) == 0 {
			out = append(out, param{typ: f.Type})
			continue
		}
		for _, n := range f.Names {
			out = append(out, param{name: n, typ: f.Type})
		}
	}
	return out
}

func exprString(e ast.Expr) string { return types.ExprString(e) }

// resultsString shows a result list as Go writes it: "string",
// "(string, error)", or "nothing".
func resultsString(fl *ast.FieldList) string {
	if fl == nil || len(fl.List) == 0 {
		return "nothing"
	}
	s := exprString(&ast.FuncType{Params: &ast.FieldList{}, Results: fl})
	return strings.TrimSpace(strings.TrimPrefix(s, "func()"))
}

// exported is name with its first letter upper case.
func exported(name string) string {
	r, n := utf8.DecodeRuneInString(name)
	if n == 0 || r == utf8.RuneError {
		return name
	}
	return string(unicode.ToUpper(r)) + name[n:]
}

func hasTypeParams(fl *ast.FieldList) bool { return fl != nil && len(fl.List) > 0 }

// checkTarget checks the func or type s annotates, and fills in what the
// generated main needs to call it.
func (p *reader) checkTarget(s *serviceAnn) {
	o := s.owner
	var target ast.Node
	switch {
	case o.fd != nil && o.fd.Recv == nil:
		target = o.fd
	case o.ts != nil:
		target = o.ts
	default:
		return // checkPlace reported it
	}
	if p.byTarget[target] != s {
		return // checked with the first annotation on it
	}
	out := &Service{}
	if s.index >= 0 {
		out = &p.pkg.Services[s.index]
	}
	switch {
	case s.pattern.text == "job" || s.pattern.text == "cron":
		p.checkJobFunc(out, s, o)
	case o.fd != nil:
		p.checkFunc(out, o.fd, o.fi)
	default:
		p.checkType(out, o.ts)
	}
}

// checkJobFunc checks the function of a job or cron service:
// func Name(ctx context.Context) error.
func (p *reader) checkJobFunc(out *Service, s *serviceAnn, o owner) {
	if o.fd == nil {
		p.errorf(o.ts.Name.Pos(), "//kiln:%s is on type %s; a %s runs a function: put it on func Name(ctx context.Context) error", s.pattern.text, o.ts.Name.Name, s.pattern.text)
		return
	}
	fd, fi := o.fd, o.fi
	name := fd.Name.Name
	want := "func " + name + "(ctx context.Context) error"
	out.Handler, out.Job = name, true
	p.needExported(fd.Name.Pos(), name, name, "hands it to app.Job")
	ft := fd.Type
	ps, rs := flatten(ft.Params), flatten(ft.Results)
	if hasTypeParams(ft.TypeParams) || len(ps) != 1 || !fi.is(ps[0].typ, contextPath, "Context") || len(rs) != 1 || !isIdent(rs[0].typ, "error") {
		p.errorf(fd.Name.Pos(), "%s is %s; a %s service's function is %s", name, exprString(ft), s.pattern.text, want)
	}
}

// checkFunc checks a handler constructor: func Name(a, b *sdk.Conn)
// http.Handler.
func (p *reader) checkFunc(out *Service, fd *ast.FuncDecl, fi *fileInfo) {
	name := fd.Name.Name
	ft := fd.Type
	var conns []string
	for _, pa := range flatten(ft.Params) {
		if pa.name != nil && pa.name.Name != "_" && fi.isPtr(pa.typ, sdkPath, "Conn") {
			conns = append(conns, pa.name.Name)
		}
	}
	want := "func " + name + "() http.Handler"
	if len(conns) > 0 {
		want = "func " + name + "(" + strings.Join(conns, ", ") + " *sdk.Conn) http.Handler"
	}
	out.Handler = name
	p.needExported(fd.Name.Pos(), name, name, "calls it")
	if hasTypeParams(ft.TypeParams) {
		p.errorf(ft.TypeParams.Opening, "%s has type parameters; want %s", name, want)
	}
	res := flatten(ft.Results)
	if len(res) != 1 || !fi.is(res[0].typ, httpPath, "Handler") {
		pos := fd.Name.Pos()
		if ft.Results != nil && len(ft.Results.List) > 0 {
			pos = ft.Results.Pos()
		}
		p.errorf(pos, "%s returns %s; want %s", name, resultsString(ft.Results), want)
	}
	for _, pa := range flatten(ft.Params) {
		pos := pa.typ.Pos()
		if pa.name != nil {
			pos = pa.name.Pos()
		}
		switch {
		case !fi.isPtr(pa.typ, sdkPath, "Conn"):
			what := "a parameter"
			if pa.name != nil {
				what = "parameter " + pa.name.Name
			}
			p.errorf(pos, "%s of %s is %s; a handler func takes only *sdk.Conn parameters, each named after the service it dials", what, name, exprString(pa.typ))
		case pa.name == nil || pa.name.Name == "_":
			p.errorf(pos, "a *sdk.Conn parameter of %s has no name; name it after the service it dials, like carts *sdk.Conn", name)
		case p.byName[pa.name.Name] == nil:
			if p.unread {
				continue // it may name the service that could not be read
			}
			names := make([]string, 0, len(p.byName))
			for n := range p.byName {
				names = append(names, n)
			}
			slices.Sort(names)
			p.errorf(pos, "parameter %s of %s names no service of package %s%s; its services are %s", pa.name.Name, name, p.pkg.Name, didYouMean(pa.name.Name, names), list(names, "and"))
		default:
			out.Dials = append(out.Dials, pa.name.Name)
		}
	}
}

// checkType checks a handler type: one with a ServeHTTP method.
func (p *reader) checkType(out *Service, ts *ast.TypeSpec) {
	name := ts.Name.Name
	out.Handler, out.Type = name, true
	p.needExported(ts.Name.Pos(), name, name, "makes one")
	if hasTypeParams(ts.TypeParams) {
		p.errorf(ts.TypeParams.Opening, "%s has type parameters; a handler type cannot, since the generated main makes one with new(%s)", name, name)
	}
	_, isStruct := ts.Type.(*ast.StructType)
	ms := p.methods[name]
	if len(ms) == 0 {
		p.errorf(ts.Name.Pos(), "%s has no ServeHTTP method in package %s; want func (h *%s) ServeHTTP(w http.ResponseWriter, r *http.Request)", name, p.pkg.Name, name)
		out.Pointer = !isStruct
		return
	}
	m := ms[0]
	_, ptr := receiver(m.fd.Recv.List[0].Type)
	out.Pointer = ptr || !isStruct
	ps, ft := flatten(m.fd.Type.Params), m.fd.Type
	if len(ps) != 2 || !m.fi.is(ps[0].typ, httpPath, "ResponseWriter") || !m.fi.isPtr(ps[1].typ, httpPath, "Request") || ft.Results != nil && len(ft.Results.List) > 0 {
		recv := name
		if ptr {
			recv = "*" + name
		}
		p.errorf(m.fd.Name.Pos(), "ServeHTTP of %s is %s; want func (h %s) ServeHTTP(w http.ResponseWriter, r *http.Request)", name, exprString(ft), recv)
	}
}

// needExported reports name, which what names in the message ("gather
// mergeHits"), when the generated main package cannot reach it: it lives
// in another package, and use says what main does with it.
func (p *reader) needExported(pos token.Pos, what, name, use string) {
	if !ast.IsExported(name) {
		p.errorf(pos, "%s is not exported; the generated main package %s, so rename it %s", what, use, exported(name))
	}
}

// checkFuncs checks the Go key function and gather s names.
func (p *reader) checkFuncs(s *serviceAnn) {
	out := &Service{}
	if s.index >= 0 {
		out = &p.pkg.Services[s.index]
	}
	if w := s.values.keyFunc; w.text != "" {
		name := w.text
		want := fmt.Sprintf("func %s(*http.Request) (string, error)", name)
		if d, ok := p.lookupFunc(w, "key function", want); ok {
			out.KeyFunc = name
			p.needExported(w.pos, "key function "+name, name, "passes it to sdk.KeyFunc")
			ft := d.fd.Type
			ps, rs := flatten(ft.Params), flatten(ft.Results)
			if hasTypeParams(ft.TypeParams) || len(ps) != 1 || !d.fi.isPtr(ps[0].typ, httpPath, "Request") ||
				len(rs) != 2 || !isIdent(rs[0].typ, "string") || !isIdent(rs[1].typ, "error") {
				p.errorf(w.pos, "key function %s is %s; want %s", name, exprString(ft), want)
			}
		}
	}
	if w := s.values.goGather; w.text != "" {
		name := w.text
		want := fmt.Sprintf("func %s(parts []T) (T, error) or func %s(parts []patterns.LeafResponse) (patterns.Response, error)", name, name)
		if d, ok := p.lookupFunc(w, "gather", want); ok {
			out.Gather = name
			p.needExported(w.pos, "gather "+name, name, "passes it to sdk.Gather")
			ft := d.fd.Type
			ps, rs := flatten(ft.Params), flatten(ft.Results)
			good := false
			if !hasTypeParams(ft.TypeParams) && len(ps) == 1 && len(rs) == 2 && isIdent(rs[1].typ, "error") {
				if at, ok := ps[0].typ.(*ast.ArrayType); ok && at.Len == nil {
					switch {
					case d.fi.is(at.Elt, patternsPath, "LeafResponse") && d.fi.is(rs[0].typ, patternsPath, "Response"):
						good, out.GatherRaw = true, true
					case exprString(at.Elt) == exprString(rs[0].typ):
						good = true
					}
				}
			}
			if !good {
				p.errorf(w.pos, "gather %s is %s; want %s", name, exprString(ft), want)
			}
		}
	}
	if w := s.values.lead; w.text != "" {
		name := w.text
		want := fmt.Sprintf("func %s(ctx context.Context, token uint64) error", name)
		if d, ok := p.lookupFunc(w, "leader function", want); ok {
			out.Lead = name
			p.needExported(w.pos, "leader function "+name, name, "passes it to sdk.Leader")
			ft := d.fd.Type
			ps, rs := flatten(ft.Params), flatten(ft.Results)
			if hasTypeParams(ft.TypeParams) || len(ps) != 2 || !d.fi.is(ps[0].typ, contextPath, "Context") || !isIdent(ps[1].typ, "uint64") ||
				len(rs) != 1 || !isIdent(rs[0].typ, "error") {
				p.errorf(w.pos, "leader function %s is %s; want %s", name, exprString(ft), want)
			}
		}
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// lookupFunc finds the package-level func w names, or reports why there is
// none.
func (p *reader) lookupFunc(w word, what, want string) (decl, bool) {
	name := w.text
	if d, ok := p.funcs[name]; ok {
		return d, true
	}
	switch kind := p.others[name]; {
	case kind != "":
		p.errorf(w.pos, "%s %s is a %s of package %s; want %s", what, name, kind, p.pkg.Name, want)
	case p.types[name].ts != nil:
		p.errorf(w.pos, "%s %s is a type of package %s; want %s", what, name, p.pkg.Name, want)
	default:
		p.errorf(w.pos, "no func %s in package %s; want %s", name, p.pkg.Name, want)
	}
	return decl{}, false
}
