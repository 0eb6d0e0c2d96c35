package annotations

import (
	"bytes"
	"errors"
	"go/ast"
	"go/format"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/golden"
)

// header is line 1 of every bad case's file kv.go, so that the case's own
// source starts on line 2.
const header = `package kv; import ("net/http"; "github.com/kiln-dev/kiln/sdk"; "github.com/kiln-dev/kiln/patterns")` + "\n"

// parseSource parses src as the one file kv.go of a package and reads its
// annotations.
func parseSource(t testing.TB, src string) (*Package, error) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "kv.go", src, parser.ParseComments)
	if err != nil {
		t.Fatalf("parser.ParseFile(kv.go) = %v, want a file that parses", err)
	}
	return Parse(fset, []*ast.File{f})
}

// errorLines is err as one "file:line:col: message" line per error.
func errorLines(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var list scanner.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v is a %T, want a scanner.ErrorList", err, err)
	}
	lines := make([]string, len(list))
	for i, e := range list {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

type badCase struct {
	name string
	src  string // after header, unless raw
	raw  bool   // src is the whole file
	want string // every error, one a line
}

var badCases = []badCase{
	{
		name: "invalid cron schedule",
		raw:  true,
		src: `package kv; import "context"
//kiln:cron report schedule="every minute"
func Report(ctx context.Context) error { return nil }`,
		want: `kv.go:2:29: schedule "every minute" is not a cron schedule (5 fields like "*/5 * * * *", or @yearly, @monthly, @weekly, @daily, @hourly, "@every 1m"): expected exactly 5 fields, found 2: [every minute]`,
	},
	{
		name: "cron without a schedule",
		raw:  true,
		src: `package kv; import "context"
//kiln:cron report retries=2
func Report(ctx context.Context) error { return nil }`,
		want: `kv.go:2:8: a cron service needs option schedule; add schedule="*/5 * * * *"`,
	},
	{
		name: "unknown time zone",
		raw:  true,
		src: `package kv; import "context"
//kiln:cron report schedule=@hourly time-zone=Mars/Olympus
func Report(ctx context.Context) error { return nil }`,
		want: `kv.go:2:47: time-zone "Mars/Olympus" is not an IANA time zone like "Europe/Paris" or "UTC"`,
	},
	{
		name: "unknown concurrency policy",
		raw:  true,
		src: `package kv; import "context"
//kiln:cron report schedule=@hourly concurrency=queue
func Report(ctx context.Context) error { return nil }`,
		want: `kv.go:2:49: bad value "queue" for concurrency; want allow, forbid or replace`,
	},
	{
		name: "job without a name",
		raw:  true,
		src: `package kv; import "context"
//kiln:job completions=2
func Migrate(ctx context.Context) error { return nil }`,
		want: `kv.go:2:12: missing job name; write //kiln:job NAME [option=value ...]`,
	},
	{
		name: "cron option on a job",
		raw:  true,
		src: `package kv; import "context"
//kiln:job migrate concurrency=forbid
func Migrate(ctx context.Context) error { return nil }`,
		want: `kv.go:2:20: concurrency is an option of cron, not job; a job service takes completions, parallelism, retries, deadline and egress`,
	},
	{
		name: "negative retries",
		raw:  true,
		src: `package kv; import "context"
//kiln:job migrate retries=-1
func Migrate(ctx context.Context) error { return nil }`,
		want: `kv.go:2:28: retries=-1 is out of range; want 0 or more`,
	},
	{
		name: "deadline without a unit",
		raw:  true,
		src: `package kv; import "context"
//kiln:job migrate deadline=10
func Migrate(ctx context.Context) error { return nil }`,
		want: `kv.go:2:29: bad duration "10" for deadline; want a Go duration with a unit, like deadline=10m`,
	},
	{
		name: "job function of the wrong type",
		src: `//kiln:job migrate completions=3
func Migrate() http.Handler { return nil }`,
		want: `kv.go:3:6: Migrate is func() http.Handler; a job service's function is func Migrate(ctx context.Context) error`,
	},
	{
		name: "job on a method",
		raw:  true,
		src: `package kv; import "context"
type T struct{}
//kiln:job migrate
func (T) Migrate(ctx context.Context) error { return nil }`,
		want: `kv.go:3:1: //kiln:job is on the method (T).Migrate; want a package-level func Migrate(ctx context.Context) error`,
	},
	{
		name: "cron on a var",
		raw:  true,
		src: `package kv; import "context"
//kiln:cron report schedule=@daily
var Report = func(ctx context.Context) error { return nil }`,
		want: `kv.go:2:1: //kiln:cron is not in the doc comment of a package-level func; put it right above the func Name(ctx context.Context) error that each run calls, with no blank line between`,
	},
	{
		name: "cron on a type",
		raw:  true,
		src: `package kv; import "context"
//kiln:cron report schedule=@daily
type Report struct{}`,
		want: `kv.go:3:6: //kiln:cron is on type Report; a cron runs a function: put it on func Name(ctx context.Context) error`,
	},
	{
		name: "unknown option with a likely typo",
		src: `//kiln:service kv shard shads=3 key=path:2
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:25: unknown option "shads" (did you mean shards?); a shard service takes shards, key, ambassador, routers, port, public, egress, storage, storage-path, storage-class, lease, lease-duration and lead`,
	},
	{
		name: "unknown option",
		src: `//kiln:service kv shard shards=3 key=path:2 colour=red
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:45: unknown option "colour"; a shard service takes shards, key, ambassador, routers, port, public, egress, storage, storage-path, storage-class, lease, lease-duration and lead`,
	},
	{
		name: "unknown option of an unknown pattern",
		src: `//kiln:service kv shrad colour=red
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:19: unknown pattern "shrad" (did you mean shard?); use simple, shard, scatter, spread, job or cron
kv.go:2:25: unknown option "colour"; the options are replicas, shards, key, ambassador, leaves, gather, timeout, on-leaf-error, choice, routers, port, public, egress, storage, storage-path, storage-class, lease, lease-duration, lead, schedule, time-zone, concurrency, starting-deadline, suspend, completions, parallelism, retries and deadline`,
	},
	{
		name: "unknown pattern",
		src: `//kiln:service kv shrad shards=3
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:19: unknown pattern "shrad" (did you mean shard?); use simple, shard, scatter, spread, job or cron`,
	},
	{
		name: "missing service name",
		src: `//kiln:service
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:15: missing service name; write //kiln:service NAME PATTERN [option=value ...]`,
	},
	{
		name: "missing service name before the pattern",
		src: `//kiln:service shard shards=3 key=path:2
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:16: missing service name before the pattern shard; write //kiln:service NAME shard ...`,
	},
	{
		name: "missing pattern",
		src: `//kiln:service kv
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:18: missing pattern after service name kv; write //kiln:service kv PATTERN, where PATTERN is simple, shard, scatter, spread, job or cron`,
	},
	{
		name: "missing pattern before the options",
		src: `//kiln:service kv shards=3
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:19: missing pattern after service name kv; write //kiln:service kv PATTERN, where PATTERN is simple, shard, scatter, spread, job or cron`,
	},
	{
		name: "missing value",
		src: `//kiln:service kv shard shards= key=path:2
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:32: missing value for shards; write shards=3`,
	},
	{
		name: "missing value of a bare option",
		src: `//kiln:service kv simple replicas
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:34: missing value for replicas; write replicas=2`,
	},
	{
		name: "missing option name",
		src: `//kiln:service kv simple replicas=2 =3
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:37: missing option name in "=3"; write name=value, like replicas=2`,
	},
	{
		name: "missing required option",
		src: `//kiln:service kv shard key=path:2
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:19: a shard service needs option shards; add shards=3`,
	},
	{
		name: "duplicate option",
		src: `//kiln:service kv shard shards=3 key=path:2 shards=4
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:45: option shards is given twice; remove one`,
	},
	{
		name: "zero shards",
		src: `//kiln:service kv shard shards=0 key=path:2
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:32: shards=0 is out of range; want at least 1`,
	},
	{
		name: "port out of range",
		src: `//kiln:service kv simple replicas=1 port=70000
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:42: port=70000 is out of range; want a port in 1–65535`,
	},
	{
		name: "bad number",
		src: `//kiln:service kv shard shards=three key=path:2
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:32: bad number "three" for shards; want a whole number, like shards=3`,
	},
	{
		name: "bad duration",
		src: `//kiln:service search scatter leaves=4 timeout=5
func NewSearch() http.Handler { return nil }`,
		want: `kv.go:2:48: bad duration "5" for timeout; want a Go duration with a unit, like timeout=500ms`,
	},
	{
		name: "zero duration",
		src: `//kiln:service search scatter leaves=4 timeout=0s
func NewSearch() http.Handler { return nil }`,
		want: `kv.go:2:48: timeout=0s is out of range; want a duration > 0`,
	},
	{
		name: "bad path segment",
		src: `//kiln:service kv shard shards=3 key=path:x
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:43: bad path segment "x" in key=path:x; want a whole number ≥ 1, like key=path:2`,
	},
	{
		name: "unknown key form",
		src: `//kiln:service kv shard shards=3 key=foo:1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:38: unknown key form "foo:1"; want path:N, regexp:RE, header:NAME, query:NAME or func:Ident`,
	},
	{
		name: "bad quoted value",
		src: `//kiln:service kv shard shards=3 key=regexp:"^/u/(\d+)"
func NewKV() http.Handler { return nil }`,
		want: "kv.go:2:45: \"^/u/(\\d+)\" is not a Go string literal; write key=regexp:\"^/u/(\\\\d+)\" or key=regexp:`^/u/(\\d+)`",
	},
	{
		name: "unterminated string",
		src: `//kiln:service kv shard shards=3 key="regexp:^/u/
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:38: unterminated string literal; end it with "`,
	},
	{
		name: "bad public",
		src: `//kiln:service kv simple replicas=1 public=yes
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:44: bad value "yes" for public; want public, public=true or public=false`,
	},
	{
		name: "bad choice",
		src: `//kiln:service kv spread replicas=2 choice=best
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:44: bad value "best" for choice; want random or two-choices`,
	},
	{
		name: "bad on-leaf-error",
		src: `//kiln:service search scatter leaves=2 on-leaf-error=ignore
func NewSearch() http.Handler { return nil }`,
		want: `kv.go:2:54: bad value "ignore" for on-leaf-error; want fail or partial`,
	},
	{
		name: "bad gather",
		src: `//kiln:service search scatter leaves=2 gather=merge-all
func NewSearch() http.Handler { return nil }`,
		want: `kv.go:2:47: bad gather "merge-all"; want concat, merge, first or the name of a Go gather function of package kv`,
	},
	{
		name: "egress that is no address block",
		src: `//kiln:service web simple replicas=2 egress=0.0.0.0/0,internal
func New() http.Handler { return nil }`,
		want: `kv.go:2:45: egress "internal" is not an address block like "10.0.0.0/8", or "0.0.0.0/0" for anywhere`,
	},
	{
		name: "too many routers",
		src: `//kiln:service kv shard shards=3 key=path:2 routers=40
func New() http.Handler { return nil }`,
		want: `kv.go:2:53: routers must be in 1–16, got 40`,
	},
	{
		name: "storage on replicas",
		src: `//kiln:service web simple replicas=2 storage=1Gi
func New() http.Handler { return nil }`,
		want: `kv.go:2:38: storage is an option of shard and scatter, not simple; a simple service takes replicas, port, public, egress, lease, lease-duration and lead`,
	},
	{
		name: "storage size that is no size",
		src: `//kiln:service kv shard shards=3 key=path:2 storage=lots
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:53: storage "lots" is not a size like "512Mi" or "1Gi"`,
	},
	{
		name: "storage path without a size",
		src: `//kiln:service kv shard shards=3 key=path:2 storage-path=/var/kv
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:45: storage must be set, like "1Gi"`,
	},
	{
		name: "lease duration too short",
		src: `//kiln:service c simple replicas=3 lease=l lease-duration=1s
func New() http.Handler { return nil }`,
		want: `kv.go:2:59: lease-duration must be 2s to 1h, got 1s`,
	},
	{
		name: "lease name not a label",
		src: `//kiln:service c simple replicas=3 lease=Big_Lock
func New() http.Handler { return nil }`,
		want: `kv.go:2:42: lease "Big_Lock" is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
	},
	{
		name: "leader function missing",
		src: `//kiln:service c simple replicas=3 lead=Compact
func New() http.Handler { return nil }`,
		want: `kv.go:2:41: no func Compact in package kv; want func Compact(ctx context.Context, token uint64) error`,
	},
	{
		name: "leader function of the wrong type",
		src: `//kiln:service c simple replicas=3 lead=Compact
func New() http.Handler { return nil }
func Compact(token int) error { return nil }`,
		want: `kv.go:2:41: leader function Compact is func(token int) error; want func Compact(ctx context.Context, token uint64) error`,
	},
	{
		name: "lease on a job",
		raw:  true,
		src: `package kv; import "context"
//kiln:job migrate lease=l
func Migrate(ctx context.Context) error { return nil }`,
		want: `kv.go:2:20: lease is an option of simple, shard, scatter and spread, not job; a job service takes completions, parallelism, retries, deadline and egress`,
	},
	{
		name: "option of another pattern",
		src: `//kiln:service kv shard shards=3 key=path:2 leaves=4
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:45: leaves is an option of scatter, not shard; a shard service takes shards, key, ambassador, routers, port, public, egress, storage, storage-path, storage-class, lease, lease-duration and lead`,
	},
	{
		name: "two annotations on one func",
		src: `//kiln:service kv shard shards=3 key=path:2
//kiln:service kv2 simple replicas=1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:3:1: NewKV already carries //kiln:service kv (at kv.go:2:1); a func or type makes the handler of one service, so give kv2 one of its own`,
	},
	{
		name: "annotation on a method",
		src: `type store struct{}

//kiln:service kv simple replicas=1
func (s *store) Handler() http.Handler { return nil }`,
		want: `kv.go:4:1: //kiln:service is on the method (*store).Handler; want a package-level func, like func Handler() http.Handler, or a type with a ServeHTTP method`,
	},
	{
		name: "func returning the wrong type",
		src: `//kiln:service kv simple replicas=1
func NewKV() string { return "" }`,
		want: `kv.go:3:14: NewKV returns string; want func NewKV() http.Handler`,
	},
	{
		name: "func returning nothing",
		src: `//kiln:service web simple replicas=1
func NewWeb(carts *sdk.Conn) {}

//kiln:service carts simple replicas=1
func NewCarts() http.Handler { return nil }`,
		want: `kv.go:3:6: NewWeb returns nothing; want func NewWeb(carts *sdk.Conn) http.Handler`,
	},
	{
		name: "generic func",
		src: `//kiln:service kv simple replicas=1
func NewKV[T any]() http.Handler { return nil }`,
		want: `kv.go:3:11: NewKV has type parameters; want func NewKV() http.Handler`,
	},
	{
		name: "unexported func",
		src: `//kiln:service kv simple replicas=1
func newKV() http.Handler { return nil }`,
		want: `kv.go:3:6: newKV is not exported; the generated main package calls it, so rename it NewKV`,
	},
	{
		name: "parameter not a conn",
		src: `//kiln:service kv simple replicas=1
func NewKV(size int) http.Handler { return nil }`,
		want: `kv.go:3:12: parameter size of NewKV is int; a handler func takes only *sdk.Conn parameters, each named after the service it dials`,
	},
	{
		name: "parameter naming no service",
		src: `//kiln:service web simple replicas=1
func NewWeb(cart *sdk.Conn) http.Handler { return nil }

//kiln:service carts simple replicas=1
func NewCarts() http.Handler { return nil }`,
		want: `kv.go:3:13: parameter cart of NewWeb names no service of package kv (did you mean carts?); its services are carts and web`,
	},
	{
		name: "key function that does not exist",
		src: `//kiln:service users shard shards=2 key=func:UserOf
func NewUsers() http.Handler { return nil }`,
		want: `kv.go:2:46: no func UserOf in package kv; want func UserOf(*http.Request) (string, error)`,
	},
	{
		name: "key function of the wrong type",
		src: `//kiln:service users shard shards=2 key=func:UserOf
func NewUsers() http.Handler { return nil }

func UserOf(r *http.Request) string { return "" }`,
		want: `kv.go:2:46: key function UserOf is func(r *http.Request) string; want func UserOf(*http.Request) (string, error)`,
	},
	{
		name: "key function that is a var",
		src: `//kiln:service users shard shards=2 key=func:UserOf
func NewUsers() http.Handler { return nil }

var UserOf = 3`,
		want: `kv.go:2:46: key function UserOf is a var of package kv; want func UserOf(*http.Request) (string, error)`,
	},
	{
		name: "gather that does not exist",
		src: `//kiln:service search scatter leaves=2 gather=MergeHits
func NewSearch() http.Handler { return nil }`,
		want: `kv.go:2:47: no func MergeHits in package kv; want func MergeHits(parts []T) (T, error) or func MergeHits(parts []patterns.LeafResponse) (patterns.Response, error)`,
	},
	{
		name: "gather of the wrong type",
		src: `//kiln:service search scatter leaves=2 gather=MergeHits
func NewSearch() http.Handler { return nil }

func MergeHits(parts [][]string) (string, error) { return "", nil }`,
		want: `kv.go:2:47: gather MergeHits is func(parts [][]string) (string, error); want func MergeHits(parts []T) (T, error) or func MergeHits(parts []patterns.LeafResponse) (patterns.Response, error)`,
	},
	{
		name: "unexported gather",
		src: `//kiln:service search scatter leaves=2 gather=mergeHits
func NewSearch() http.Handler { return nil }

func mergeHits(parts [][]string) ([]string, error) { return nil, nil }`,
		want: `kv.go:2:47: gather mergeHits is not exported; the generated main package passes it to sdk.Gather, so rename it MergeHits`,
	},
	{
		name: "two services with one name",
		src: `//kiln:service kv simple replicas=1
func NewKV() http.Handler { return nil }

//kiln:service kv simple replicas=2
func NewKV2() http.Handler { return nil }`,
		want: `kv.go:5:16: service kv is declared twice (first at kv.go:2:16); rename one`,
	},
	{
		name: "app given twice",
		src: `//kiln:app shop
//kiln:service kv simple replicas=1
func NewKV() http.Handler { return nil }

//kiln:app store
//kiln:service web simple replicas=1
func NewWeb() http.Handler { return nil }`,
		want: `kv.go:6:1: //kiln:app is given twice (first at kv.go:2:1); keep one`,
	},
	{
		name: "app beside no service",
		src: `//kiln:app shop
func Helper() {}

//kiln:service kv simple replicas=1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:1: //kiln:app belongs in the doc comment of a package clause, or beside a //kiln:service; move it there`,
	},
	{
		name: "unknown annotation",
		src: `//kiln:servce kv simple replicas=1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:1: unknown annotation //kiln:servce (did you mean //kiln:service?); kiln reads //kiln:service, //kiln:job, //kiln:cron and //kiln:app`,
	},
	{
		name: "annotation inside a function body",
		src: `func NewKV() http.Handler {
	//kiln:service kv simple replicas=1
	return nil
}`,
		want: `kv.go:3:2: //kiln:service is not in the doc comment of a package-level func or type; put it in the comment right above the func that makes the handler, with no blank line between`,
	},
	{
		name: "annotation on a var",
		src: `//kiln:service kv simple replicas=1
var NewKV http.Handler`,
		want: `kv.go:2:1: //kiln:service is on a var declaration; put it in the doc comment of the func or type that makes the handler`,
	},
	{
		name: "annotation separated by a blank line",
		src: `//kiln:service kv simple replicas=1

func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:1: //kiln:service is not in the doc comment of a package-level func or type; put it in the comment right above the func that makes the handler, with no blank line between`,
	},
	{
		name: "handler type without ServeHTTP",
		src: `//kiln:service hello simple replicas=1
type Hello struct{}`,
		want: `kv.go:3:6: Hello has no ServeHTTP method in package kv; want func (h *Hello) ServeHTTP(w http.ResponseWriter, r *http.Request)`,
	},
	{
		name: "handler type with a wrong ServeHTTP",
		src: `//kiln:service hello simple replicas=1
type Hello struct{}

func (h *Hello) ServeHTTP(w http.ResponseWriter) {}`,
		want: `kv.go:5:17: ServeHTTP of Hello is func(w http.ResponseWriter); want func (h *Hello) ServeHTTP(w http.ResponseWriter, r *http.Request)`,
	},
	{
		name: "invalid service name",
		src: `//kiln:service KV simple replicas=1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:16: service name "KV" is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
	},
	{
		name: "invalid app name",
		src: `//kiln:app Shop
//kiln:service kv simple replicas=1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:12: app name "Shop" is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
	},
	{
		name: "invalid ambassador",
		src: `//kiln:service kv shard shards=2 key=path:2 ambassador=Web_1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:56: ambassador "Web_1" is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
	},
	{
		name: "regexp that does not compile",
		src: `//kiln:service kv shard shards=2 key=regexp:(
func NewKV() http.Handler { return nil }`,
		want: "kv.go:2:38: key regexp does not compile: error parsing regexp: missing closing ): `(`",
	},
	{
		name: "regexp without a capture group",
		src: `//kiln:service kv shard shards=2 key=regexp:^/u/
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:38: key regexp "^/u/" has no capture group; wrap the key in ( )`,
	},
	{
		name: "no annotation",
		src:  `func NewKV() http.Handler { return nil }`,
		want: `kv.go:1:9: package kv has no //kiln:service annotation; mark the func that makes a handler with //kiln:service NAME PATTERN, or give kiln a main package that calls sdk.Run`,
	},
	{
		name: "unterminated raw string",
		src:  "//kiln:service kv shard shards=3 key=regexp:`^/u/(\\d+)\nfunc NewKV() http.Handler { return nil }",
		want: "kv.go:2:45: unterminated string literal; end it with `",
	},
	{
		name: "annotation with no name",
		src: `//kiln:
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:1: //kiln: names no annotation; write //kiln:service, //kiln:job, //kiln:cron or //kiln:app`,
	},
	{
		name: "app without a name",
		src: `//kiln:app
//kiln:service kv simple replicas=1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:11: missing app name; write //kiln:app NAME`,
	},
	{
		name: "app with two names",
		src: `//kiln:app shop store
//kiln:service kv simple replicas=1
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:17: unexpected "store" after the app name; //kiln:app takes one name`,
	},
	{
		name: "service in the package comment",
		raw:  true,
		src: `//kiln:service kv simple replicas=1
package kv

import "net/http"

func NewKV() http.Handler { return nil }`,
		want: `kv.go:1:1: //kiln:service is in the package comment; put it in the doc comment of the func or type that makes the handler`,
	},
	{
		name: "annotation on a group of types",
		src: `//kiln:service hello simple replicas=1
type (
	Hello struct{}
	World struct{}
)`,
		want: `kv.go:2:1: //kiln:service is on a group of types; put it in the doc comment of the one type of the group that is a handler`,
	},
	{
		name: "empty header name",
		src: `//kiln:service kv shard shards=3 key=header:
func NewKV() http.Handler { return nil }`,
		want: `kv.go:2:45: missing NAME after key=header:; write key=header:NAME`,
	},
	{
		name: "unexported key function",
		src: `//kiln:service users shard shards=2 key=func:userOf
func NewUsers() http.Handler { return nil }

func userOf(r *http.Request) (string, error) { return "", nil }`,
		want: `kv.go:2:46: key function userOf is not exported; the generated main package passes it to sdk.KeyFunc, so rename it UserOf`,
	},
	{
		name: "unnamed conn parameter",
		src: `//kiln:service kv simple replicas=1
func NewKV(*sdk.Conn) http.Handler { return nil }`,
		want: `kv.go:3:12: a *sdk.Conn parameter of NewKV has no name; name it after the service it dials, like carts *sdk.Conn`,
	},
	{
		name: "raw gather of the wrong result",
		src: `//kiln:service search scatter leaves=2 gather=Join
func NewSearch() http.Handler { return nil }

func Join(parts []patterns.LeafResponse) ([]byte, error) { return nil, nil }`,
		want: `kv.go:2:47: gather Join is func(parts []patterns.LeafResponse) ([]byte, error); want func Join(parts []T) (T, error) or func Join(parts []patterns.LeafResponse) (patterns.Response, error)`,
	},
}

func TestParseReportsEachBadAnnotationAtItsWord(t *testing.T) {
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			src := header + tc.src + "\n"
			if tc.raw {
				src = tc.src + "\n"
			}
			_, err := parseSource(t, src)
			if got := errorLines(t, err); got != tc.want {
				t.Errorf("Parse(%s) =\n%s\nwant\n%s", tc.name, got, tc.want)
			}
		})
	}
}

func TestParseReportsEveryProblemOfAFileSorted(t *testing.T) {
	src := header + `//kiln:app Shop
//kiln:service web simple replicas=0 colour=red port=0
func NewWeb(cart *sdk.Conn, n int) string { return "" }

//kiln:service kv shard leaves=4 key=path:x timeout=5
func newKV() http.Handler { return nil }

//kiln:servce users shard shards=2
func NewUsers() http.Handler { return nil }

//kiln:service search scatter leaves=2 gather=Merge timeout=1m
func NewSearch() http.Handler {
	//kiln:service inner simple replicas=1
	return nil
}

//kiln:service search spread replicas=2 choice=best
type Search struct{}
`
	want := `kv.go:2:12: app name "Shop" is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit
kv.go:3:36: replicas=0 is out of range; want at least 1
kv.go:3:38: unknown option "colour"; a simple service takes replicas, port, public, egress, lease, lease-duration and lead
kv.go:3:54: port=0 is out of range; want a port in 1–65535
kv.go:4:13: parameter cart of NewWeb names no service of package kv; its services are inner, kv, search and web
kv.go:4:29: parameter n of NewWeb is int; a handler func takes only *sdk.Conn parameters, each named after the service it dials
kv.go:4:36: NewWeb returns string; want func NewWeb(cart *sdk.Conn) http.Handler
kv.go:6:19: a shard service needs option shards; add shards=3
kv.go:6:25: leaves is an option of scatter, not shard; a shard service takes shards, key, ambassador, routers, port, public, egress, storage, storage-path, storage-class, lease, lease-duration and lead
kv.go:6:43: bad path segment "x" in key=path:x; want a whole number ≥ 1, like key=path:2
kv.go:6:45: timeout is an option of scatter, not shard; a shard service takes shards, key, ambassador, routers, port, public, egress, storage, storage-path, storage-class, lease, lease-duration and lead
kv.go:7:6: newKV is not exported; the generated main package calls it, so rename it NewKV
kv.go:9:1: unknown annotation //kiln:servce (did you mean //kiln:service?); kiln reads //kiln:service, //kiln:job, //kiln:cron and //kiln:app
kv.go:12:47: no func Merge in package kv; want func Merge(parts []T) (T, error) or func Merge(parts []patterns.LeafResponse) (patterns.Response, error)
kv.go:14:2: //kiln:service is not in the doc comment of a package-level func or type; put it in the comment right above the func that makes the handler, with no blank line between
kv.go:18:16: service search is declared twice (first at kv.go:12:16); rename one
kv.go:18:48: bad value "best" for choice; want random or two-choices
kv.go:19:6: Search has no ServeHTTP method in package kv; want func (h *Search) ServeHTTP(w http.ResponseWriter, r *http.Request)`
	_, err := parseSource(t, src)
	if got := errorLines(t, err); got != want {
		t.Errorf("Parse(many problems) =\n%s\nwant\n%s", got, want)
	}
}

// goodPackages are the annotated packages under testdata/good; each
// compiles.
var goodPackages = []string{"simple", "shard", "scatter", "spread", "shop", "funcs", "types", "clash", "batch", "leases"}

const goodImport = "github.com/kiln-dev/kiln/spec/annotations/testdata/good/"

// goFiles lists the Go files of dir, as go list's GoFiles would.
func goFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
			names = append(names, e.Name())
		}
	}
	return names
}

func parseGood(t testing.TB, name string) *Package {
	t.Helper()
	dir := filepath.Join("testdata", "good", name)
	p, err := ParseDir(token.NewFileSet(), dir, goFiles(t, dir))
	if err != nil {
		t.Fatalf("ParseDir(%s) = %v, want no error", dir, err)
	}
	return p
}

func TestParseAndMainOfEveryGoodPackage(t *testing.T) {
	for _, name := range goodPackages {
		t.Run(name, func(t *testing.T) {
			p := parseGood(t, name)
			b, err := p.App.MarshalStable()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "golden/"+name+".json", b)
			if err := p.App.Validate(); err != nil {
				t.Errorf("Parse(%s).App.Validate() = %v, want nil", name, err)
			}

			src, err := Main(p, goodImport+name)
			if err != nil {
				t.Fatalf("Main(%s) = %v, want no error", name, err)
			}
			golden.Check(t, "golden/"+name+".go.golden", src)
			first, _, _ := strings.Cut(string(src), "\n")
			if want := "// Code generated by kiln from the //kiln: annotations of " + goodImport + name + ". DO NOT EDIT."; first != want {
				t.Errorf("Main(%s) starts %q, want %q", name, first, want)
			}
			f, err := parser.ParseFile(token.NewFileSet(), "main.go", src, parser.ParseComments)
			if err != nil {
				t.Fatalf("Main(%s) does not parse: %v", name, err)
			}
			if f.Name.Name != "main" || f.Doc != nil {
				t.Errorf("Main(%s) is package %s with doc %v, want package main with no doc comment", name, f.Name.Name, f.Doc)
			}
			formatted, err := format.Source(src)
			if err != nil || !bytes.Equal(formatted, src) {
				t.Errorf("Main(%s) is not gofmt-formatted (%v)", name, err)
			}
			again, _ := Main(p, goodImport+name)
			if !bytes.Equal(again, src) {
				t.Errorf("Main(%s) differs from one call to the next", name)
			}
		})
	}
}

func TestParseFillsWhatMainNeeds(t *testing.T) {
	tests := []struct {
		pkg  string
		want []Service
	}{
		{"shop", []Service{
			{Name: "carts", Handler: "NewCarts", Dials: []string{"catalog"}},
			{Name: "catalog", Handler: "NewCatalog"},
			{Name: "web", Handler: "NewWeb", Dials: []string{"carts", "catalog"}},
		}},
		{"funcs", []Service{
			{Name: "users", Handler: "NewUsers", KeyFunc: "UserOf"},
			{Name: "profiles", Handler: "NewProfiles"},
			{Name: "search", Handler: "NewSearch", Gather: "MergeHits"},
			{Name: "logs", Handler: "NewLogs", Gather: "JoinLines", GatherRaw: true},
			{Name: "queries", Handler: "NewQueries"},
		}},
		{"types", []Service{
			{Name: "hello", Handler: "Hello", Type: true, Pointer: true},
			{Name: "static", Handler: "Static", Type: true},
			{Name: "text", Handler: "Text", Type: true, Pointer: true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			p := parseGood(t, tc.pkg)
			if p.Name != tc.pkg {
				t.Errorf("Parse(%s).Name = %q, want %q", tc.pkg, p.Name, tc.pkg)
			}
			got := make([]Service, len(p.Services))
			for i, s := range p.Services {
				if s.Pos.Filename == "" || s.Pos.Line < 1 || s.Pos.Column != 1 && s.Pos.Column != 2 {
					t.Errorf("Parse(%s).Services[%d].Pos = %v, want the start of its annotation", tc.pkg, i, s.Pos)
				}
				s.Pos = token.Position{}
				got[i] = s
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%s).Services = %+v, want %+v", tc.pkg, got, tc.want)
			}
		})
	}
}

func TestParseKeepsTheOrderTheFilesAreGivenIn(t *testing.T) {
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range []string{"web.go", "catalog.go", "carts.go"} {
		f, err := parser.ParseFile(fset, filepath.Join("testdata", "good", "shop", name), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	p, err := Parse(fset, files)
	if err != nil {
		t.Fatalf("Parse(shop) = %v, want no error", err)
	}
	var got []string
	for _, s := range p.App.Services {
		got = append(got, s.Name)
	}
	if want := []string{"web", "catalog", "carts"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(web.go, catalog.go, carts.go) services = %v, want %v", got, want)
	}
}

func TestParseDirReportsSyntaxErrorsAndUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.go"), []byte("package a\n\nfunc {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ParseDir(token.NewFileSet(), dir, []string{"a.go"})
	var list scanner.ErrorList
	if p != nil || !errors.As(err, &list) || len(list) == 0 || list[0].Pos.Filename != filepath.Join(dir, "a.go") {
		t.Errorf("ParseDir(syntax error) = %v, %v, want nil and a scanner.ErrorList in a.go", p, err)
	}
	p, err = ParseDir(token.NewFileSet(), dir, []string{"missing.go"})
	if p != nil || err == nil || errors.As(err, &list) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseDir(missing file) = %v, %v, want nil and a not-exist error", p, err)
	}
	p, err = Parse(token.NewFileSet(), nil)
	if p != nil || err == nil {
		t.Errorf("Parse(no files) = %v, %v, want nil and an error", p, err)
	}
}

func TestHasTellsAnnotatedPackagesFromOthers(t *testing.T) {
	tests := []struct {
		src  string
		want bool
	}{
		{"package a\n\n//kiln:service a simple replicas=1\nfunc New() {}\n", true},
		{"package a\n\nfunc New() {\n\t//kiln:bogus\n}\n", true},
		{"//kiln:app a\npackage a\n", true},
		{"package a\n\n// kiln:service a simple replicas=1\nfunc New() {}\n", false},
		{"package a\n\n/*kiln:service a simple replicas=1*/\nfunc New() {}\n", false},
		{"package a\n\nconst s = \"//kiln:service a simple\"\n", false},
	}
	for _, tc := range tests {
		f, err := parser.ParseFile(token.NewFileSet(), "a.go", tc.src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if got := Has([]*ast.File{f}); got != tc.want {
			t.Errorf("Has(%q) = %v, want %v", tc.src, got, tc.want)
		}
	}
}

func TestParseRefusesPackageMain(t *testing.T) {
	_, err := parseSource(t, "package main\n\nimport \"net/http\"\n\n//kiln:service kv simple replicas=1\nfunc NewKV() http.Handler { return nil }\n")
	want := "kv.go:1:9: package main cannot carry //kiln: annotations, since kiln writes the main package itself; move the handlers to a package of their own"
	if got := errorLines(t, err); got != want {
		t.Errorf("Parse(package main) =\n%s\nwant\n%s", got, want)
	}
}

func TestParseResolvesImportsByTheirLocalNames(t *testing.T) {
	src := `package kv

import (
	web "net/http"
	kiln "github.com/kiln-dev/kiln/sdk"
	. "github.com/kiln-dev/kiln/patterns"
)

//kiln:service kv scatter leaves=2 gather=Join
func NewKV(kv *kiln.Conn) web.Handler { return nil }

func Join(parts []LeafResponse) (Response, error) { return Response{}, nil }
`
	p, err := parseSource(t, src)
	if err != nil {
		t.Fatalf("Parse(renamed imports) = %v, want no error", err)
	}
	if s := p.Services[0]; s.Gather != "Join" || !s.GatherRaw || !reflect.DeepEqual(s.Dials, []string{"kv"}) {
		t.Errorf("Parse(renamed imports).Services[0] = %+v, want a raw gather Join and a Dial of kv", s)
	}
	// http.Handler means nothing when net/http is imported as web.
	_, err = parseSource(t, strings.Replace(src, "web.Handler", "http.Handler", 1))
	want := "kv.go:10:27: NewKV returns http.Handler; want func NewKV(kv *sdk.Conn) http.Handler"
	if got := errorLines(t, err); got != want {
		t.Errorf("Parse(http.Handler with net/http imported as web) =\n%s\nwant\n%s", got, want)
	}
}

func TestMainRefusesAPackageThatDoesNotHoldTogether(t *testing.T) {
	good := func() *Package { return parseGood(t, "funcs") }
	tests := []struct {
		name   string
		change func(p *Package) *Package
		want   string
	}{
		{"nil package", func(*Package) *Package { return nil }, "no package"},
		{"a service too few", func(p *Package) *Package { p.Services = p.Services[1:]; return p }, "4 services for the 5 of the app"},
		{"services out of order", func(p *Package) *Package {
			p.Services[0], p.Services[1] = p.Services[1], p.Services[0]
			return p
		}, `service 0 is "profiles", but the app's is "users"`},
		{"no handler", func(p *Package) *Package { p.Services[1].Handler = ""; return p }, `service profiles: handler "" is not an identifier`},
		{"a field annotations cannot set", func(p *Package) *Package {
			p.App.Services[1].Env = map[string]string{"A": "b"}
			return p
		}, "service profiles sets fields that //kiln: annotations cannot"},
		{"a key function without its Go function", func(p *Package) *Package { p.Services[0].KeyFunc = ""; return p }, `service users: key function "UserOf" has no Go function`},
		{"a gather without its Go function", func(p *Package) *Package { p.Services[2].Gather = ""; return p }, `service search: gather "MergeHits" has no Go function`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Main(tc.change(good()), goodImport+"funcs")
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Errorf("Main(%s) = %v, want …%s", tc.name, err, tc.want)
			}
		})
	}
}
