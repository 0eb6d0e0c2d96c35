// Package annotations is kiln's //kiln: front-end: it reads an ordinary Go
// package whose handler constructors carry //kiln: comments, produces the
// same spec.App the Go SDK describes, and writes the main package that runs
// it as SDK code.
//
// # Grammar
//
// An annotation is a line comment that starts exactly with //kiln: (no
// space, like //go: directives). It is one line: words separated by spaces
// or tabs.
//
//	//kiln:app NAME
//	//kiln:service NAME PATTERN [OPTION=VALUE | public] ...
//	//kiln:job NAME [OPTION=VALUE] ...
//	//kiln:cron NAME schedule=SCHEDULE [OPTION=VALUE | suspend] ...
//
// //kiln:app names the app. It goes in the doc comment of any file's package
// clause, or beside a //kiln:service, at most once per package. Without it
// the app is named after its first service.
//
// //kiln:service goes in the doc comment of the package-level func or type
// that makes the service's handler, with no blank line between:
//
//	// NewKV makes the kv store.
//	//
//	//kiln:service kv shard shards=3 key=path:2
//	func NewKV() http.Handler { ... }
//
//	//kiln:service web simple replicas=2 port=8081 public
//	func NewWeb(carts, catalog *sdk.Conn) http.Handler { ... }
//
//	//kiln:service hello simple replicas=3
//	type Hello struct{}
//
//	func (h *Hello) ServeHTTP(w http.ResponseWriter, r *http.Request) { ... }
//
// A func must be exported, have no receiver and no type parameters, return
// exactly one http.Handler, and take only *sdk.Conn parameters. Each
// parameter is a Dial of the service of the package named like the
// parameter, so a service that is dialled needs a name that is a Go
// identifier. A type must be exported, have no type parameters, and have a
// ServeHTTP(http.ResponseWriter, *http.Request) method in the package, on a
// value or a pointer receiver. http, sdk and patterns are the packages
// "net/http", "github.com/kiln-dev/kiln/sdk" and
// "github.com/kiln-dev/kiln/patterns", under whatever name the file imports
// them.
//
// //kiln:job and //kiln:cron are //kiln:service NAME job and //kiln:service
// NAME cron. They go on the service's function, which must be exported, have
// no receiver and no type parameters, and be
//
//	func Name(ctx context.Context) error
//
// which the generated main hands to app.Job.
//
// NAME is the service's name, a DNS label. PATTERN is simple, shard,
// scatter, spread, job or cron. Options come in any order, each at most once. The
// options each pattern takes, with the spec field each sets:
//
//	simple   replicas=N          simple.replicas (required)
//	shard    shards=N            shard.shards (required)
//	         key=KEY             shard.key (required)
//	         ambassador=NAME     shard.ambassador
//	scatter  leaves=N            scatter.leaves (required)
//	         gather=GATHER       scatter.gather; default concat
//	         timeout=DURATION    scatter.timeout; default 1s
//	         on-leaf-error=fail|partial   scatter.on_leaf_error; default fail
//	spread   replicas=N          spread.replicas (required)
//	         choice=random|two-choices    spread.choice; default two-choices
//	shard,   routers=N           routers: how many routers a cluster runs;
//	scatter,                     default 2
//	spread
//	every    egress=CIDR,...     egress: address blocks outside the app
//	                             that the service reaches on a cluster
//	serving  port=N              port, 1–65535; default 8080 (every pattern
//	         public              but job and cron); public=true or public=false
//	shard,   storage=SIZE        storage.size: a volume per shard or leaf,
//	scatter                      which the program finds as
//	                             sdk.Self().Data, like 1Gi
//	         storage-path=PATH   storage.path; default /data
//	         storage-class=NAME  storage.class, for Kubernetes
//	serving  lease=NAME          leases[0].name: a lease the service's
//	                             replicas, shards or leaves take with
//	                             sdk.Lock or sdk.Lead; default the
//	                             service's name when one of the two below
//	                             is given
//	         lease-duration=DURATION  leases[0].duration; default 15s
//	         lead=Ident          a Go function of the package that runs
//	                             while its process holds the lease:
//	                             func Ident(ctx context.Context, token uint64) error
//	job      completions=N       job.completions; default 1
//	         parallelism=N       job.parallelism; default 1
//	         retries=N           job.retries, N ≥ 0; default 0
//	         deadline=DURATION   job.deadline, ≥ 0; default none
//	cron     schedule=SCHEDULE   cron.schedule (required): 5 fields or a
//	                             descriptor, quoted when it has spaces:
//	                             schedule="*/5 * * * *", schedule=@daily
//	         time-zone=ZONE      cron.time_zone, an IANA zone
//	         concurrency=allow|forbid|replace  cron.concurrency_policy; default allow
//	         starting-deadline=DURATION        cron.starting_deadline
//	         suspend             cron.suspend; also suspend=true or suspend=false
//	         and the job options, which set cron.job
//
// N is a whole number ≥ 1. DURATION is a time.ParseDuration duration > 0,
// like 500ms or 2s. KEY is one of
//
//	path:N         the Nth path segment (1-based): key=path:2 takes k from /kv/k
//	regexp:RE      the first capture group of RE on the path
//	header:NAME    a request header
//	query:NAME     a query parameter
//	func:Ident     a Go function of the package: func Ident(*http.Request) (string, error)
//
// GATHER is concat, merge, first, or the name of a Go function of the
// package (a built-in name always means the built-in), either
//
//	func Ident(parts []T) (T, error)
//	func Ident(parts []patterns.LeafResponse) (patterns.Response, error)
//
// where the two T are written alike. Both Go functions must be exported,
// package-level funcs of the files given, since the generated main passes
// them to sdk.KeyFunc, sdk.Gather or sdk.GatherResponses; the spec records
// their names (key.func, scatter.gather), as the SDK does.
//
// A value, or the part of a key after its colon, may be a Go string literal,
// which strconv.Unquote reads, so that it can hold spaces:
//
//	//kiln:service users shard shards=4 key=regexp:`^/u/(\d+)`
//	//kiln:service users shard shards=4 key="header:X-User Id"
//
// An interpreted string ("...") follows Go's escapes, so a regexp's
// backslashes are doubled there ("^/u/(\\d+)"); a raw string (`...`) takes
// them as written.
//
// # The generated main
//
// Main writes the package main that runs the app as SDK code: sdk.NewApp
// with the app's name, an app.Dial for each service a handler dials, an
// app.Service for each service in order (calling its func, or making its
// type with new(T) or T{}), and app.Run. It imports the annotated package
// under its own name, or under name+"pkg" when that clashes with sdk, spec,
// time, main, app, new or true. kiln compiles it beside the package with go build
// -overlay, and kiln eject writes it out.
//
// # What is not seen
//
// A comment that does not start with //kiln: is not an annotation: "//
// kiln:service" and /*kiln:service*/ are ordinary comments. Parse reads only
// the files it is given; the caller leaves out files excluded by build
// constraints and _test.go files, so an annotation in a test file is never
// seen.
//
// # Errors
//
// Parse reports every problem at once, as a scanner.ErrorList sorted by
// position. Each error is placed on the word of the annotation it is about
// (the value of an option when the value is wrong), or on the Go code it is
// about (a parameter, a result, a method), and says what to write instead.
// A problem spec.App.Validate finds is placed on the word that set the
// field, or on the start of the annotation when no word did. A problem that
// only follows from one already reported (a field left zero because its
// value was wrong, say) is not reported again.
package annotations

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"path/filepath"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// ErrNone is what ParseDir returns, wrapped, for a package without a single
// //kiln: annotation, so that a caller that also takes main packages (or
// other kinds) can tell that from an annotated package with mistakes.
var ErrNone = errors.New("no //kiln: annotation")

// Package is an annotated package: its app and what the generated main
// needs.
type Package struct {
	// Name is the Go package name.
	Name string
	// App has its defaults set. It is valid when Parse returned no error;
	// otherwise it holds what could be read. It is never nil.
	App *spec.App
	// Services are the app's services in source order (files in the order
	// given, then position), one for each of App.Services and in the same
	// order.
	Services []Service
}

// Service is what the generated main needs to run one service beyond its
// spec.
type Service struct {
	// Name is the service's name, as in App.
	Name string
	// Handler is the identifier of the function or type that makes the
	// handler; "" when the annotation is not on one.
	Handler string
	// Type says Handler is a type. Then Pointer says the generated main makes
	// the handler with new(T) (ServeHTTP has a pointer receiver, or T is not a
	// struct type); otherwise with T{}.
	Type    bool
	Pointer bool
	// Job says Handler is the function of a job or cron service,
	// func Name(ctx context.Context) error, which the generated main hands
	// to app.Job.
	Job bool
	// Dials are the services the handler's *sdk.Conn parameters name, in
	// parameter order; nil for a type or a func without parameters.
	Dials []string
	// KeyFunc is the Go key function (key=func:KeyFunc); "" when the key
	// rule is not a function.
	KeyFunc string
	// Gather is the Go gather function; "" for a built-in gather. GatherRaw
	// says it works on []patterns.LeafResponse.
	Gather    string
	GatherRaw bool
	// Lead is the leader function (lead=Lead), func Name(ctx
	// context.Context, token uint64) error, which the generated main hands
	// to sdk.Leader with the service's lease; "" for none.
	Lead string
	// Pos is the position of the //kiln:service annotation.
	Pos token.Position
}

// prefix starts every annotation.
const prefix = "//kiln:"

// Has reports whether any of files carries a //kiln: annotation: a cheap
// check that tells an annotated package from others before Parse.
func Has(files []*ast.File) bool {
	for _, f := range files {
		if f == nil {
			continue
		}
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				if strings.HasPrefix(c.Text, prefix) {
					return true
				}
			}
		}
	}
	return false
}

// Parse reads the annotations of one package, given as its files parsed
// with parser.ParseComments into fset, and builds its app.
//
// The error is nil or a scanner.ErrorList of every problem, sorted; the
// returned Package is then partly filled, but never nil. A package without
// //kiln:service is an error. When files is empty, Parse returns a nil
// Package and an error that is not a list, since there is no position to
// give.
func Parse(fset *token.FileSet, files []*ast.File) (*Package, error) {
	var fs []*ast.File
	for _, f := range files {
		if f != nil {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return nil, errors.New("annotations: no Go files")
	}
	p := newReader(fset, fs)
	p.run()
	p.errs.Sort()
	return p.pkg, p.errs.Err()
}

// ParseDir parses the Go files fileNames of dir (as go list's GoFiles gives
// them: names relative to dir) with comments into fset, then calls Parse.
//
// A file that cannot be read stops ParseDir with that error. Syntax errors
// are returned together as a scanner.ErrorList, with a nil Package: the
// annotations of a package that does not parse are not read.
func ParseDir(fset *token.FileSet, dir string, fileNames []string) (*Package, error) {
	var files []*ast.File
	var syntax scanner.ErrorList
	for _, name := range fileNames {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, name)
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		var list scanner.ErrorList
		switch {
		case errors.As(err, &list):
			syntax = append(syntax, list...)
			continue
		case err != nil:
			return nil, fmt.Errorf("annotations: %w", err)
		}
		files = append(files, f)
	}
	if len(syntax) > 0 {
		syntax.Sort()
		return nil, syntax
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("annotations: no Go files in %s", dir)
	}
	if !Has(files) {
		return nil, fmt.Errorf("package %s: %w", files[0].Name.Name, ErrNone)
	}
	return Parse(fset, files)
}
