package hcl

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	hclv2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/kiln-dev/kiln/spec"
)

// run decodes, evaluates and validates body into l.file.
func (l *loader) run(body hclv2.Body) {
	l.funcs = functions()
	l.skip = map[spec.Path]bool{}
	var fs fileSchema
	// No context: what may use variables (app, locals, service bodies) is
	// kept as expressions and bodies, and evaluated below.
	l.diags = append(l.diags, gohcl.DecodeBody(body, nil, &fs)...)
	l.variables(fs.Variables)
	l.collectLocals(fs.Locals)
	l.scanReferences(body)
	l.evalLocals()
	ctx := l.evalContext()

	f, app := l.file, l.file.App
	appSet := fs.AppRange.Start.Line > 0
	if appSet {
		l.at("name", fs.AppRange)
		l.addEval(gohcl.DecodeExpression(fs.App, ctx, &app.Name))
	}
	seen := map[string]*serviceHeader{}
	for _, h := range fs.Services {
		// Paths name services by name, so a second service of the same name
		// could not be told apart from the first: it is reported and left out.
		if first, dup := seen[h.Name]; dup {
			l.errorf(h.DefRange, "Duplicate service name",
				"A service named %q is already defined at %s; service names must be unique, so rename one of them.", h.Name, first.DefRange)
			continue
		}
		seen[h.Name] = h
		s, dir, ok := l.service(spec.ServicePath(len(app.Services), h.Name), h, ctx)
		app.Services = append(app.Services, s)
		if ok {
			f.Sources[h.Name] = dir
		}
	}
	if len(fs.Services) < countBlocks(body, "service") {
		// A service block was refused (a missing label, say), so "no
		// services" would only repeat that.
		l.skip["services"] = true
	}
	if !appSet && len(fs.Services) > 0 {
		// The default app name is the first service's.
		l.at("name", fs.Services[0].DefRange)
	}

	var prior []hclv2.Range
	for _, d := range l.diags {
		if d.Severity != hclv2.DiagError {
			continue
		}
		for _, r := range []*hclv2.Range{d.Subject, d.Context} {
			if r != nil {
				prior = append(prior, *r)
			}
		}
	}
	app.SetDefaults()
	var errs spec.Errors
	if err := app.Validate(); !errors.As(err, &errs) {
		return
	}
	for _, e := range errs {
		if e.Path == "name" && !appSet {
			continue // the first service's name, reported on the service
		}
		if l.skip[e.Path] {
			continue
		}
		d := f.fieldDiagnostic(e)
		if overlapsAny(*d.Subject, prior) || l.consequence(d.Subject) {
			continue // a field that could not be decoded, already reported
		}
		l.diags = append(l.diags, d)
	}
}

func overlapsAny(r hclv2.Range, rs []hclv2.Range) bool {
	for _, o := range rs {
		if r.Overlaps(o) {
			return true
		}
	}
	return false
}

// at records that field p is set at r, unless r is unset (the attribute
// is absent) or p has a range already.
func (l *loader) at(p spec.Path, r hclv2.Range) {
	if r.Start.Line == 0 {
		return
	}
	if _, ok := l.file.ranges[p]; !ok {
		l.file.ranges[p] = r
	}
}

// settled reports whether the attribute at r has a problem accounted for
// already: an error reported on it, or a reference to something broken.
func (l *loader) settled(r hclv2.Range) bool {
	if r.Start.Line == 0 {
		return false
	}
	for _, d := range l.diags {
		if d.Severity == hclv2.DiagError && d.Subject != nil && d.Subject.Overlaps(r) {
			return true
		}
	}
	return l.consequence(&r)
}

// countBlocks counts the blocks of the given types written in body,
// whether or not they decoded.
func countBlocks(body hclv2.Body, types ...string) int {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return 0
	}
	n := 0
	for _, b := range sb.Blocks {
		if slices.Contains(types, b.Type) {
			n++
		}
	}
	return n
}

// block is a block that may appear at most once.
type block interface{ defRange() hclv2.Range }

// single is the first of bs, reporting any others.
func single[B block](l *loader, kind string, bs []B) (B, bool) {
	var zero B
	if len(bs) == 0 {
		return zero, false
	}
	for _, b := range bs[1:] {
		l.errorf(b.defRange(), fmt.Sprintf("Duplicate %s block", kind),
			"Only one %s block is allowed here, and one is already defined at %s; merge the two or remove this one.", kind, bs[0].defRange())
	}
	return bs[0], true
}

// service decodes one service block at path p. It also returns the
// absolute directory of the service's main package, and whether that
// source is valid.
func (l *loader) service(p spec.Path, h *serviceHeader, ctx *hclv2.EvalContext) (spec.Service, string, bool) {
	l.at(p, h.DefRange)
	l.at(p.Dot("name"), h.DefRange)
	s := spec.Service{Name: h.Name}
	var b serviceBody
	l.addEval(gohcl.DecodeBody(h.Body, ctx, &b))

	dir, dirOK := l.source(b.Source, b.SourceRange)

	s.Port = b.Port
	l.at(p.Dot("port"), b.PortRange)
	s.Public = b.Public
	l.at(p.Dot("public"), b.PublicRange)
	s.Routers = b.Routers
	l.at(p.Dot("routers"), b.RouterRange)
	s.Egress = b.Egress
	l.at(p.Dot("egress"), b.EgressRange)
	for i := range b.Egress {
		l.at(p.Dot("egress").Index(i), b.EgressRange)
	}
	s.Env = l.stringMap(p.Dot("env"), b.Env, b.EnvRange, ctx)

	if len(b.Simple)+len(b.Shard)+len(b.Scatter)+len(b.Spread)+len(b.Job)+len(b.Cron) < countBlocks(h.Body, "simple", "shard", "scatter", "spread", "job", "cron") {
		l.skip[p] = true // a pattern block was refused, and reported
	}
	if x, ok := single(l, "simple", b.Simple); ok {
		pp := p.Dot("simple")
		l.at(pp, x.DefRange)
		l.at(pp.Dot("replicas"), x.ReplicasRange)
		s.Simple = &spec.Simple{Replicas: x.Replicas}
	}
	if x, ok := single(l, "shard", b.Shard); ok {
		pp := p.Dot("shard")
		l.at(pp, x.DefRange)
		l.at(pp.Dot("shards"), x.ShardsRange)
		l.at(pp.Dot("ambassador"), x.AmbassadorRange)
		s.Shard = &spec.Shard{Shards: x.Shards, Ambassador: x.Ambassador}
		if k, ok := single(l, "key", x.Key); ok {
			kp := pp.Dot("key")
			l.at(kp, k.DefRange)
			l.at(kp.Dot("path_segment"), k.PathSegmentRange)
			l.at(kp.Dot("regexp"), k.RegexpRange)
			l.at(kp.Dot("header"), k.HeaderRange)
			l.at(kp.Dot("query"), k.QueryRange)
			l.at(kp.Dot("func"), k.FuncRange)
			s.Shard.Key = spec.Key{PathSegment: k.PathSegment, Regexp: k.Regexp, Header: k.Header, Query: k.Query, Func: k.Func}
			// A rule that failed to decode is zero, which would make the
			// count of rules wrong.
			for _, r := range []hclv2.Range{k.PathSegmentRange, k.RegexpRange, k.HeaderRange, k.QueryRange, k.FuncRange} {
				if l.settled(r) {
					l.skip[kp] = true
				}
			}
		}
		if len(x.Key) < countBlocks(x.Body, "key") {
			l.skip[pp.Dot("key")] = true // a key block was refused, and reported
		}
	}
	if x, ok := single(l, "scatter", b.Scatter); ok {
		pp := p.Dot("scatter")
		l.at(pp, x.DefRange)
		l.at(pp.Dot("leaves"), x.LeavesRange)
		l.at(pp.Dot("gather"), x.GatherRange)
		l.at(pp.Dot("timeout"), x.TimeoutRange)
		l.at(pp.Dot("on_leaf_error"), x.OnLeafErrorRange)
		s.Scatter = &spec.Scatter{
			Leaves:      x.Leaves,
			Gather:      x.Gather,
			Timeout:     l.duration("timeout", x.Timeout, x.TimeoutRange),
			OnLeafError: x.OnLeafError,
		}
	}
	if x, ok := single(l, "spread", b.Spread); ok {
		pp := p.Dot("spread")
		l.at(pp, x.DefRange)
		l.at(pp.Dot("replicas"), x.ReplicasRange)
		l.at(pp.Dot("choice"), x.ChoiceRange)
		s.Spread = &spec.Spread{Replicas: x.Replicas, Choice: x.Choice}
	}
	if x, ok := single(l, "job", b.Job); ok {
		s.Job = l.job(p.Dot("job"), x)
	}
	if x, ok := single(l, "cron", b.Cron); ok {
		pp := p.Dot("cron")
		l.at(pp, x.DefRange)
		l.at(pp.Dot("schedule"), x.ScheduleRange)
		l.at(pp.Dot("time_zone"), x.TimeZoneRange)
		l.at(pp.Dot("concurrency_policy"), x.ConcurrencyPolicyRange)
		l.at(pp.Dot("starting_deadline"), x.StartingDeadlineRange)
		l.at(pp.Dot("suspend"), x.SuspendRange)
		s.Cron = &spec.Cron{
			Schedule:          x.Schedule,
			TimeZone:          x.TimeZone,
			ConcurrencyPolicy: x.ConcurrencyPolicy,
			StartingDeadline:  l.duration("starting_deadline", x.StartingDeadline, x.StartingDeadlineRange),
			Suspend:           x.Suspend,
		}
		// Without a job block, the template's fields are the cron block's.
		l.at(pp.Dot("job"), x.DefRange)
		if j, ok := single(l, "job", x.Job); ok {
			s.Cron.Job = *l.job(pp.Dot("job"), j)
		}
	}
	if x, ok := single(l, "resources", b.Resources); ok {
		pp := p.Dot("resources")
		l.at(pp, x.DefRange)
		s.Resources = &spec.Resources{
			Requests: l.quantities(pp.Dot("requests"), "requests", x.Requests),
			Limits:   l.quantities(pp.Dot("limits"), "limits", x.Limits),
		}
	}
	for i, c := range b.Sidecars {
		s.Sidecars = append(s.Sidecars, l.container(p.Dot("sidecars").Index(i), c, ctx))
	}
	for i, c := range b.Init {
		s.Init = append(s.Init, l.container(p.Dot("init").Index(i), c, ctx))
	}
	volumes := map[string]*volumeBlock{}
	for i, v := range b.Volumes {
		// spec.Validate does not refuse two volumes of one name, but every
		// target would.
		if first, dup := volumes[v.Name]; dup {
			l.errorf(v.DefRange, "Duplicate volume name",
				"A volume named %q is already declared at %s; volume names must be unique within a service, so rename one of them.", v.Name, first.DefRange)
		} else {
			volumes[v.Name] = v
		}
		vp := p.Dot("volumes").Index(i)
		l.at(vp, v.DefRange)
		l.at(vp.Dot("name"), v.DefRange)
		l.at(vp.Dot("path"), v.PathRange)
		s.Volumes = append(s.Volumes, spec.Volume{Name: v.Name, Path: v.Path})
	}
	if x, ok := single(l, "storage", b.Storage); ok {
		sp := p.Dot("storage")
		l.at(sp, x.DefRange)
		l.at(sp.Dot("size"), x.SizeRange)
		l.at(sp.Dot("path"), x.PathRange)
		l.at(sp.Dot("class"), x.ClassRange)
		l.at(sp.Dot("on_delete"), x.OnDeleteRange)
		l.at(sp.Dot("on_scale_down"), x.OnScaleDownRange)
		s.Storage = &spec.Storage{Size: x.Size, Path: x.Path, Class: x.Class, OnDelete: x.OnDelete, OnScaleDown: x.OnScaleDown}
	}
	if len(b.Leases) > 0 {
		l.at(p.Dot("leases"), b.Leases[0].DefRange)
	}
	for i, x := range b.Leases {
		lp := p.Dot("leases").Index(i)
		l.at(lp, x.DefRange)
		l.at(lp.Dot("name"), x.DefRange)
		l.at(lp.Dot("duration"), x.DurationRange)
		s.Leases = append(s.Leases, spec.Lease{Name: x.Name, Duration: l.duration("duration", x.Duration, x.DurationRange)})
	}
	if x, ok := single(l, "probes", b.Probes); ok {
		pp := p.Dot("probes")
		l.at(pp, x.DefRange)
		s.Probes = &spec.Probes{
			Readiness: l.probe(pp.Dot("readiness"), "readiness", x.Readiness),
			Liveness:  l.probe(pp.Dot("liveness"), "liveness", x.Liveness),
		}
	}
	if x, ok := single(l, "autoscale", b.Autoscale); ok {
		pp := p.Dot("autoscale")
		l.at(pp, x.DefRange)
		l.at(pp.Dot("min"), x.MinRange)
		l.at(pp.Dot("max"), x.MaxRange)
		l.at(pp.Dot("target_cpu"), x.TargetCPURange)
		s.Autoscale = &spec.Autoscale{Min: x.Min, Max: x.Max, TargetCPU: x.TargetCPU}
	}
	return s, dir, dirOK
}

// source is the absolute directory a service's source attribute names.
func (l *loader) source(src *string, r hclv2.Range) (string, bool) {
	rel := "."
	if src != nil {
		rel = *src
	}
	if rel != "." && rel != ".." && !strings.HasPrefix(rel, "./") && !strings.HasPrefix(rel, "../") {
		l.errorf(r, "Invalid source",
			"source = %q is not a relative path; write the directory of the service's main package relative to %s, as \"./cmd/web\" or \"../web\".",
			rel, filepath.Base(l.file.Path))
		return "", false
	}
	if l.dir == "" || l.settled(r) {
		return "", false
	}
	return filepath.Join(l.dir, filepath.FromSlash(rel)), true
}

// duration parses the duration attribute name, set to s at r.
func (l *loader) duration(name, s string, r hclv2.Range) spec.Duration {
	if r.Start.Line == 0 || l.settled(r) {
		return 0 // absent, or its value is already reported
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		l.errorf(r, "Invalid duration",
			"%s = %q is not a duration; write a number with a unit, such as \"1500ms\" or \"2s\".", name, s)
		return 0
	}
	return spec.Duration(d)
}

// job decodes a job block, the pattern's or a cron block's template, at p.
func (l *loader) job(p spec.Path, x *jobBlock) *spec.Job {
	l.at(p, x.DefRange)
	l.at(p.Dot("completions"), x.CompletionsRange)
	l.at(p.Dot("parallelism"), x.ParallelismRange)
	l.at(p.Dot("retries"), x.RetriesRange)
	l.at(p.Dot("deadline"), x.DeadlineRange)
	return &spec.Job{
		Completions: x.Completions,
		Parallelism: x.Parallelism,
		Retries:     x.Retries,
		Deadline:    l.duration("deadline", x.Deadline, x.DeadlineRange),
	}
}

func (l *loader) quantities(p spec.Path, kind string, bs []*quantitiesBlock) spec.Quantities {
	x, ok := single(l, kind, bs)
	if !ok {
		return spec.Quantities{}
	}
	l.at(p, x.DefRange)
	l.at(p.Dot("cpu"), x.CPURange)
	l.at(p.Dot("memory"), x.MemoryRange)
	return spec.Quantities{CPU: x.CPU, Memory: x.Memory}
}

func (l *loader) probe(p spec.Path, kind string, bs []*probeBlock) *spec.Probe {
	x, ok := single(l, kind, bs)
	if !ok {
		return nil
	}
	l.at(p, x.DefRange)
	l.at(p.Dot("path"), x.PathRange)
	l.at(p.Dot("period"), x.PeriodRange)
	return &spec.Probe{Path: x.Path, Period: l.duration("period", x.Period, x.PeriodRange)}
}

func (l *loader) container(p spec.Path, c *containerBlock, ctx *hclv2.EvalContext) spec.Container {
	l.at(p, c.DefRange)
	l.at(p.Dot("name"), c.DefRange)
	l.at(p.Dot("image"), c.ImageRange)
	l.at(p.Dot("args"), c.ArgsRange)
	out := spec.Container{
		Name:  c.Name,
		Image: c.Image,
		Args:  c.Args,
		Env:   l.stringMap(p.Dot("env"), c.Env, c.EnvRange, ctx),
	}
	if c.PortsRange.Start.Line > 0 {
		pp := p.Dot("ports")
		l.at(pp, c.PortsRange)
		l.addEval(gohcl.DecodeExpression(c.Ports, ctx, &out.Ports))
		if items, diags := hclv2.ExprList(c.Ports); !diags.HasErrors() {
			for i, e := range items {
				l.at(pp.Index(i), e.Range())
			}
		}
	}
	for i, m := range c.Mounts {
		mp := p.Dot("mounts").Index(i)
		l.at(mp, m.DefRange)
		l.at(mp.Dot("volume"), m.VolumeRange)
		l.at(mp.Dot("path"), m.PathRange)
		out.Mounts = append(out.Mounts, spec.Mount{Volume: m.Volume, Path: m.Path})
	}
	return out
}

// stringMap decodes an env attribute, recording the range of each key
// written in an object constructor.
func (l *loader) stringMap(p spec.Path, e hclv2.Expression, r hclv2.Range, ctx *hclv2.EvalContext) map[string]string {
	if r.Start.Line == 0 {
		return nil
	}
	l.at(p, r)
	var m map[string]string
	l.addEval(gohcl.DecodeExpression(e, ctx, &m))
	pairs, diags := hclv2.ExprMap(e)
	if diags.HasErrors() {
		return m
	}
	for _, kv := range pairs {
		k, diags := kv.Key.Value(ctx)
		if diags.HasErrors() || !k.IsWhollyKnown() || k.IsNull() {
			continue
		}
		if k, err := convert.Convert(k, cty.String); err == nil && !k.IsNull() {
			l.at(p.Key(k.AsString()), hclv2.RangeBetween(kv.Key.Range(), kv.Value.Range()))
		}
	}
	return m
}
