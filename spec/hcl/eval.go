package hcl

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	hclv2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/kiln-dev/kiln/spec"
)

// envVarPrefix marks the Options.Env entries that set variables.
const envVarPrefix = "KILN_VAR_"

// loader holds the state of one Load.
type loader struct {
	file  *File
	opts  Options
	dir   string // the file's directory, absolute
	diags hclv2.Diagnostics
	funcs map[string]function.Function

	vars       map[string]cty.Value // declared variables; broken ones are cty.DynamicVal
	brokenVars map[string]bool      // declared but without a usable value (already reported)
	locals     map[string]*hclv2.Attribute
	localVals  map[string]cty.Value
	broken     map[string]bool // locals without a usable value (already reported)

	// refs are the var.X, local.X and other references in the file. A
	// diagnostic on an expression that refers to something undefined or
	// broken is a consequence of a problem already reported, so it is
	// dropped (see consequence).
	refs []reference
	// skip holds paths whose spec errors follow from a problem reported
	// already, where ranges cannot show it.
	skip map[spec.Path]bool
}

type reference struct {
	root, name string // "var", "shards"; name is "" without an attribute step
	rng        hclv2.Range
}

// evalContext is what service bodies and locals are evaluated in.
func (l *loader) evalContext() *hclv2.EvalContext {
	locals := map[string]cty.Value{}
	for name, v := range l.localVals {
		locals[name] = v
	}
	for name := range l.broken {
		locals[name] = cty.DynamicVal
	}
	return &hclv2.EvalContext{
		Variables: map[string]cty.Value{
			"var":   objectVal(l.vars),
			"local": objectVal(locals),
		},
		Functions: l.funcs,
	}
}

func objectVal(m map[string]cty.Value) cty.Value {
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

// variables gives each declared variable its value.
func (l *loader) variables(blocks []*variableBlock) {
	l.vars = map[string]cty.Value{}
	l.brokenVars = map[string]bool{}
	declared := map[string]*variableBlock{}
	fromEnv := map[string]string{}
	for _, kv := range l.opts.Env {
		k, v, ok := strings.Cut(kv, "=")
		if name, isVar := strings.CutPrefix(k, envVarPrefix); ok && isVar {
			fromEnv[name] = v
		}
	}
	// Functions only: a default may not refer to other variables.
	constCtx := &hclv2.EvalContext{Functions: l.funcs}

	for _, b := range blocks {
		if first, dup := declared[b.Name]; dup {
			l.errorf(b.DefRange, "Duplicate variable",
				"A variable named %q is already declared at %s; rename or remove this one.", b.Name, first.DefRange)
			continue
		}
		declared[b.Name] = b
		if !hclsyntax.ValidIdentifier(b.Name) {
			l.errorf(b.DefRange, "Invalid variable name",
				"%q cannot be written as var.%s; a variable name must be a letter followed by letters, digits, '_' or '-'.", b.Name, b.Name)
		}

		ty, tyOK := l.variableType(b)
		var def cty.Value
		hasDefault := false
		if b.DefaultRange.Start.Line > 0 {
			v, diags := b.Default.Value(constCtx)
			l.diags = append(l.diags, diags...)
			switch {
			case diags.HasErrors():
				l.brokenVars[b.Name] = true
			case v.IsNull():
			default:
				hasDefault = true
				def = v
				if tyOK && b.TypeRange.Start.Line > 0 {
					conv, err := convert.Convert(v, ty)
					if err != nil {
						l.errorf(b.DefaultRange, "Invalid default value",
							"The default of variable %q must be a %s: %s.", b.Name, ty.FriendlyName(), err)
						l.brokenVars[b.Name] = true
					}
					def = conv
				} else {
					ty = v.Type()
				}
			}
		}
		if !tyOK {
			l.brokenVars[b.Name] = true
		}

		raw, from, given := "", "", false
		if v, ok := l.opts.Vars[b.Name]; ok {
			raw, from, given = v, fmt.Sprintf("--var %s=%s", b.Name, v), true
		} else if v, ok := fromEnv[b.Name]; ok {
			raw, from, given = v, fmt.Sprintf("%s%s=%s", envVarPrefix, b.Name, v), true
		}
		switch {
		case given && tyOK:
			v, err := convert.Convert(cty.StringVal(raw), ty)
			if err != nil {
				l.errorf(b.DefRange, "Invalid value for variable",
					"Variable %q is a %s, but %s cannot be converted to one: %s.", b.Name, ty.FriendlyName(), from, err)
				l.brokenVars[b.Name] = true
				break
			}
			l.brokenVars[b.Name] = false
			l.vars[b.Name] = v
		case given:
		case hasDefault && !l.brokenVars[b.Name]:
			l.vars[b.Name] = def
		case !l.brokenVars[b.Name]:
			l.errorf(b.DefRange, "No value for variable",
				"Variable %q has no default and no value was given; set a default, pass --var %s=VALUE or set %s%s.", b.Name, b.Name, envVarPrefix, b.Name)
			l.brokenVars[b.Name] = true
		}
		if l.brokenVars[b.Name] {
			l.vars[b.Name] = cty.DynamicVal
		} else {
			delete(l.brokenVars, b.Name)
		}
	}

	// --var is an explicit request, so naming no variable is an error;
	// the environment may hold anything, so KILN_VAR_ entries are not.
	for _, name := range sortedKeys(l.opts.Vars) {
		if _, ok := declared[name]; !ok {
			l.diags = append(l.diags, &hclv2.Diagnostic{
				Severity: hclv2.DiagError,
				Summary:  fmt.Sprintf("Undeclared variable in --var %s", name),
				Detail: fmt.Sprintf("%s declares no variable %q; declare it with a variable %q block, or drop --var %s=….",
					l.file.Path, name, name, name),
			})
		}
	}
}

// variableType is the variable's declared type, or cty.String when it
// declares none (a default then overrides it). It is false after reporting
// a type it does not know.
func (l *loader) variableType(b *variableBlock) (cty.Type, bool) {
	if b.TypeRange.Start.Line == 0 {
		return cty.String, true
	}
	name := hclv2.ExprAsKeyword(b.Type)
	if name == "" {
		// Also accept the quoted form, type = "number".
		if v, diags := b.Type.Value(nil); !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
			name = v.AsString()
		}
	}
	switch name {
	case "string":
		return cty.String, true
	case "number":
		return cty.Number, true
	case "bool":
		return cty.Bool, true
	}
	l.errorf(b.TypeRange, "Invalid variable type",
		"The type of variable %q must be string, number or bool.", b.Name)
	return cty.DynamicPseudoType, false
}

// collectLocals gathers the locals of every locals block.
func (l *loader) collectLocals(blocks []*localsBlock) {
	l.locals = map[string]*hclv2.Attribute{}
	l.localVals = map[string]cty.Value{}
	l.broken = map[string]bool{}
	for _, b := range blocks {
		for _, a := range sortedAttributes(b.Attrs) {
			if first, dup := l.locals[a.Name]; dup {
				l.errorf(a.Range, "Duplicate local value",
					"A local value named %q is already defined at %s; rename or remove this one.", a.Name, first.Range)
				continue
			}
			l.locals[a.Name] = a
		}
	}
}

// scanReferences records every reference in body and reports those to
// undeclared variables and locals. Variable blocks are skipped: their
// attributes are evaluated without variables.
func (l *loader) scanReferences(body hclv2.Body) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return
	}
	for _, a := range sortedSyntaxAttributes(sb.Attributes) {
		l.scanExpression(a.Expr)
	}
	for _, b := range sb.Blocks {
		if b.Type == "variable" {
			continue
		}
		l.scanReferences(b.Body)
	}
}

func (l *loader) scanExpression(e hclv2.Expression) {
	for _, t := range e.Variables() {
		ref := reference{root: t.RootName(), rng: t.SourceRange()}
		if len(t) > 1 {
			if a, ok := t[1].(hclv2.TraverseAttr); ok {
				ref.name = a.Name
			}
		}
		l.refs = append(l.refs, ref)
		switch {
		case ref.root == "var" && ref.name != "":
			if _, ok := l.vars[ref.name]; !ok {
				l.errorf(ref.rng, "Undeclared variable",
					"There is no variable named %q; declare it with a variable %q block.", ref.name, ref.name)
			}
		case ref.root == "local" && ref.name != "":
			if _, ok := l.locals[ref.name]; !ok {
				l.errorf(ref.rng, "Undeclared local value",
					"There is no local value named %q; define it in a locals block.", ref.name)
			}
		case ref.root != "var" && ref.root != "local":
			l.errorf(ref.rng, "Unknown reference",
				"There is nothing named %q here. Refer to variables as var.NAME and to local values as local.NAME, or quote the text to write a string.", ref.root)
		}
	}
}

// consequence reports whether a diagnostic at r follows from a reference
// to something undeclared or broken, which was reported already.
func (l *loader) consequence(r *hclv2.Range) bool {
	if r == nil {
		return false
	}
	for _, ref := range l.refs {
		if !ref.rng.Overlaps(*r) {
			continue
		}
		switch ref.root {
		case "var":
			if _, ok := l.vars[ref.name]; ref.name != "" && (!ok || l.brokenVars[ref.name]) {
				return true
			}
		case "local":
			if _, ok := l.locals[ref.name]; ref.name != "" && (!ok || l.broken[ref.name]) {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// addEval adds the diagnostics of an evaluation, less the consequences of
// problems already reported.
//
// An expression that fails evaluates to an unknown value, which gohcl then
// cannot convert ("value must be known"): an error whose Context holds the
// Subject of an earlier error of the same evaluation is dropped too.
func (l *loader) addEval(diags hclv2.Diagnostics) {
	var subjects []hclv2.Range
	for _, d := range diags {
		if d.Severity != hclv2.DiagError {
			l.diags = append(l.diags, d)
			continue
		}
		if l.consequence(d.Subject) || l.consequence(d.Context) ||
			(d.Context != nil && overlapsAny(*d.Context, subjects)) {
			continue
		}
		if d.Subject != nil {
			subjects = append(subjects, *d.Subject)
		}
		l.diags = append(l.diags, d)
	}
}

// evalLocals evaluates the locals in dependency order and reports cycles.
func (l *loader) evalLocals() {
	deps := map[string][]string{}
	for name, a := range l.locals {
		for _, t := range a.Expr.Variables() {
			if t.RootName() != "local" || len(t) < 2 {
				continue
			}
			if s, ok := t[1].(hclv2.TraverseAttr); ok {
				if _, declared := l.locals[s.Name]; declared {
					deps[name] = append(deps[name], s.Name)
				}
			}
		}
	}
	pending := sortedKeys(l.locals)
	done := func(name string) bool {
		_, ok := l.localVals[name]
		return ok || l.broken[name]
	}
	for len(pending) > 0 {
		progress := false
		for _, name := range slices.Clone(pending) {
			if !allFunc(deps[name], done) {
				continue
			}
			l.evalLocal(name)
			pending = slices.DeleteFunc(pending, func(s string) bool { return s == name })
			progress = true
		}
		if progress {
			continue
		}
		// Every pending local waits on another: report those on a cycle and
		// treat them as broken, which frees the locals that merely use them.
		for _, name := range pending {
			if path := cyclePath(name, deps, done); path != nil {
				a := l.locals[name]
				l.errorf(a.Range, "Cycle in local values",
					"The value of local.%s depends on itself (%s); remove one of these references.",
					name, "local."+strings.Join(path, " → local."))
				l.broken[name] = true
			}
		}
		before := len(pending)
		pending = slices.DeleteFunc(pending, func(s string) bool { return l.broken[s] })
		if len(pending) == before {
			// Unreachable: locals that all wait on each other form a cycle.
			for _, name := range pending {
				l.broken[name] = true
			}
			return
		}
	}
}

func (l *loader) evalLocal(name string) {
	a := l.locals[name]
	v, diags := a.Expr.Value(l.evalContext())
	l.addEval(diags)
	if diags.HasErrors() || !v.IsWhollyKnown() {
		l.broken[name] = true
		return
	}
	l.localVals[name] = v
}

// cyclePath is the path from name back to itself through locals not yet
// done, or nil when name is on no cycle.
func cyclePath(name string, deps map[string][]string, done func(string) bool) []string {
	seen := map[string]bool{}
	var walk func(at string, path []string) []string
	walk = func(at string, path []string) []string {
		for _, d := range deps[at] {
			if done(d) {
				continue
			}
			if d == name {
				return append(slices.Clone(path), d)
			}
			if seen[d] {
				continue
			}
			seen[d] = true
			if p := walk(d, append(path, d)); p != nil {
				return p
			}
		}
		return nil
	}
	return walk(name, []string{name})
}

func allFunc(ss []string, f func(string) bool) bool {
	for _, s := range ss {
		if !f(s) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sortedAttributes is attrs in source order.
func sortedAttributes(attrs hclv2.Attributes) []*hclv2.Attribute {
	out := make([]*hclv2.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Range.Start.Byte < out[j].Range.Start.Byte })
	return out
}

func sortedSyntaxAttributes(attrs hclsyntax.Attributes) []*hclsyntax.Attribute {
	out := make([]*hclsyntax.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SrcRange.Start.Byte < out[j].SrcRange.Start.Byte })
	return out
}
