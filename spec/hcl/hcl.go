// Package hcl is kiln's kiln.hcl front-end: it reads a descriptor written in
// HCL and produces the same spec.App the Go SDK describes, with every problem
// reported as an hcl.Diagnostic at its place in the file.
//
// # Grammar
//
// Block and attribute names are the spec's JSON names; blocks that repeat
// take the singular (sidecar, init, volume, mount). As everywhere in HCL, a
// block written on one line holds at most one attribute and no block.
//
//	app = "shop"              # optional; default: the first service's name
//
//	variable "shards" {
//	  type        = number    # optional: string, number or bool; default:
//	                          # the default's type, else string
//	  default     = 3         # optional
//	  description = "how many cart shards"
//	}
//
//	locals {                  # locals may refer to variables and to
//	  prefix = "shop"         # each other, in any order, but not in a cycle
//	}
//
//	service "web" {
//	  source = "./cmd/web"    # optional: the directory of the service's Go
//	                          # main package, relative to this file; "."
//	  port   = 8080           # optional
//	  public = true           # optional
//	  routers = 3             # optional: shard, scatter and spread; how
//	                          # many routers a cluster runs (default 2)
//	  egress = ["10.20.0.0/16"] # optional: address blocks outside the app
//	                          # that its pods reach on a cluster
//	  env    = { GREETING = "hello ${local.prefix}" }
//
//	  simple { replicas = 2 } # exactly one of simple, shard, scatter, spread,
//	                          # job, cron
//
//	  resources {
//	    requests {
//	      cpu    = "250m"
//	      memory = "128Mi"
//	    }
//	    limits { memory = "256Mi" }
//	  }
//	  sidecar "agent" {       # sidecar and init blocks keep their order
//	    image = "registry.example/agent:1"
//	    args  = ["--flag"]
//	    env   = { A = "b" }
//	    ports = [9000]
//	    mount {
//	      volume = "cache"
//	      path   = "/cache"
//	    }
//	  }
//	  init "migrate" {        # the same body as sidecar
//	    image = "registry.example/migrate:1"
//	  }
//	  volume "cache" { path = "/var/cache" } # path optional
//	  storage {               # shard and scatter only: a volume per instance
//	    size          = "1Gi" # required
//	    path          = "/data" # optional: where the container sees it
//	    class         = "fast" # optional: the Kubernetes storage class
//	    on_delete     = "retain" # optional: retain (default) or delete
//	    on_scale_down = "retain" # optional: retain (default) or delete
//	  }
//	  lease "compactor" {     # taken with sdk.Lead or sdk.Lock by the
//	    duration = "15s"      # service's replicas, shards or leaves;
//	  }                       # duration optional, default 15s
//	  probes {
//	    readiness {
//	      path   = "/ready"
//	      period = "5s"
//	    }
//	    liveness { path = "/live" }
//	  }
//	  autoscale {
//	    min        = 1
//	    max        = 5
//	    target_cpu = 80
//	  }
//	}
//
// The other patterns:
//
//	shard {
//	  shards     = var.shards
//	  ambassador = "web"      # optional
//	  key { path_segment = 2 } # or regexp, header, query or func: exactly one
//	}
//	scatter {
//	  leaves        = 4
//	  gather        = "concat" # optional, as are the two below
//	  timeout       = "1500ms"
//	  on_leaf_error = "partial"
//	}
//	spread {
//	  replicas = 4
//	  choice   = "two-choices" # optional
//	}
//	job {                      # every attribute optional
//	  completions = 5          # default 1
//	  parallelism = 2          # default 1
//	  retries     = 3          # failed runs tolerated in all; default 0
//	  deadline    = "10m"      # of the whole job; default none
//	}
//	cron {
//	  schedule           = "*/5 * * * *" # or "@daily", "@every 1m"
//	  time_zone          = "Europe/Paris" # optional
//	  concurrency_policy = "forbid" # optional: allow (default), forbid, replace
//	  starting_deadline  = "30s" # optional
//	  suspend            = false # optional
//	  job { retries = 1 }      # optional: each run's job, as above
//	}
//
// A job or cron service serves nothing, so it takes no port, public,
// probes, autoscale, sidecar or lease.
//
// Durations (timeout, period, deadline, starting_deadline, duration) are strings in time.ParseDuration's form.
// Expressions may use var.NAME, local.NAME, string templates and these
// functions of go-cty's stdlib: abs, ceil, chomp, coalesce, coalescelist,
// compact, concat, contains, distinct, element, flatten, floor, format,
// formatlist, join, jsondecode, jsonencode, keys, length, lookup, lower,
// max, merge, min, parseint, regex, regexall, regex_replace, replace,
// reverse, slice, sort, split, strlen, strrev, substr, title, tobool,
// tonumber, tostring, trim, trimprefix, trimspace, trimsuffix, upper,
// values and zipmap.
//
// A variable's value is, highest first: Options.Vars (--var name=value), a
// KILN_VAR_name entry of Options.Env, its default. Values from Vars and Env
// are strings, converted to the variable's type.
//
// # Diagnostics
//
// Load reports every problem it finds, not only the first, sorted by
// position; the one exception is a syntax error, after which the file is
// not decoded. A problem spec.App.Validate finds is placed on the attribute
// that sets the field, or on the nearest enclosing block when the attribute
// is absent. A problem that only follows from one already reported (a field
// left zero because its expression failed, say) is not reported again.
package hcl

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	hclv2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/kiln-dev/kiln/spec"
)

// Options for Load.
type Options struct {
	// Vars are variable values given as --var name=value. They win over Env
	// and over defaults. Naming a variable the file does not declare is an
	// error. Nil sets none.
	Vars map[string]string
	// Env holds "KEY=VALUE" entries, as os.Environ returns them. Only
	// KILN_VAR_name entries are read, and those naming no declared variable
	// are ignored; when a key repeats, the last entry wins. Nil reads none:
	// Load never reads the process environment itself.
	Env []string
}

// File is a loaded descriptor.
type File struct {
	// Path is the file name as given to Load or LoadBytes.
	Path string
	// App has its defaults set. It is valid when Load returned no errors;
	// otherwise it holds what could be decoded. It is never nil.
	App *spec.App
	// Sources maps each service's name to the absolute directory of its
	// main package: its source attribute ("." when absent) resolved against
	// the file's directory. A service whose source is invalid, or that is
	// left out of App as a second service of the same name, has no entry.
	Sources map[string]string

	ranges map[spec.Path]hclv2.Range
	start  hclv2.Range
}

// Load parses, evaluates and validates the descriptor at path. The parser
// keeps the parsed file, so that hclv2.NewDiagnosticTextWriter(w, p.Files(),
// …) can show the source lines of each diagnostic.
//
// hclparse caches files by name and returns a cached file without its
// syntax errors, so use a fresh parser to load a file again after it
// changed.
//
// The returned File is never nil; when the diagnostics have errors its App
// may be partly filled.
func Load(p *hclparse.Parser, path string, o Options) (*File, hclv2.Diagnostics) {
	file, diags := p.ParseHCLFile(path)
	return load(file, diags, path, o)
}

// LoadBytes is Load for source already in memory; filename is used in
// positions and to resolve each service's source directory.
func LoadBytes(p *hclparse.Parser, src []byte, filename string, o Options) (*File, hclv2.Diagnostics) {
	file, diags := p.ParseHCL(src, filename)
	return load(file, diags, filename, o)
}

// Range is where field path p is set in the file: the attribute that sets
// it, or else the DefRange of the nearest enclosing block, or else the
// start of the file.
func (f *File) Range(p spec.Path) hclv2.Range {
	for q := p; ; q = parent(q) {
		if r, ok := f.ranges[q]; ok {
			return r
		}
		if q == "" {
			return f.start
		}
	}
}

// Diagnostics turns spec errors found after Load (by a deployer's own
// checks, for example, which also return spec.Errors of *spec.FieldError)
// into diagnostics at their positions in the file. Any other error becomes
// one diagnostic without a Subject. A nil err gives no diagnostics.
func (f *File) Diagnostics(err error) hclv2.Diagnostics {
	if err == nil {
		return nil
	}
	var errs spec.Errors
	var one *spec.FieldError
	switch {
	case errors.As(err, &errs):
	case errors.As(err, &one):
		errs = spec.Errors{one}
	default:
		return hclv2.Diagnostics{{
			Severity: hclv2.DiagError,
			Summary:  "Invalid app",
			Detail:   sentence(err.Error()),
		}}
	}
	var diags hclv2.Diagnostics
	for _, e := range errs {
		diags = append(diags, f.fieldDiagnostic(e))
	}
	sortDiagnostics(diags)
	return diags
}

func (f *File) fieldDiagnostic(e *spec.FieldError) *hclv2.Diagnostic {
	r := f.Range(e.Path)
	return &hclv2.Diagnostic{
		Severity: hclv2.DiagError,
		Summary:  summary(e.Path, e.Msg),
		Detail:   detail(e.Path, e.Msg),
		Subject:  &r,
	}
}

// sentence ends s with a period unless it ends a sentence already.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "!") {
		return s
	}
	return s + "."
}

// load turns a parsed file into a File.
func load(file *hclv2.File, diags hclv2.Diagnostics, path string, o Options) (*File, hclv2.Diagnostics) {
	f := &File{
		Path:    path,
		App:     &spec.App{},
		Sources: map[string]string{},
		ranges:  map[spec.Path]hclv2.Range{},
		start: hclv2.Range{
			Filename: path,
			Start:    hclv2.InitialPos,
			End:      hclv2.InitialPos,
		},
	}
	// A file with syntax errors is not decoded: its body is only what the
	// parser could recover, and decoding it mostly repeats the syntax errors.
	if file == nil || diags.HasErrors() {
		sortDiagnostics(diags)
		return f, diags
	}
	l := &loader{file: f, opts: o, diags: diags}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		l.errorf(f.start, "Cannot resolve the file's directory",
			"The directory of %s is needed to resolve service sources, but %v.", path, err)
	}
	l.dir = dir
	l.run(file.Body)
	sortDiagnostics(l.diags)
	return f, l.diags
}

// errorf adds an error diagnostic on subject.
func (l *loader) errorf(subject hclv2.Range, summary, format string, args ...any) {
	l.diags = append(l.diags, &hclv2.Diagnostic{
		Severity: hclv2.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}
