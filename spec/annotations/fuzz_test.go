package annotations

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fuzzFile holds one //kiln:service line, and the Go functions its options
// may name.
const fuzzFile = `package kv

import (
	"net/http"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/sdk"
)

//kiln:service %s
func NewKV(web *sdk.Conn) http.Handler { return nil }

//kiln:service web simple replicas=1
func NewWeb() http.Handler { return nil }

func UserOf(r *http.Request) (string, error) { return "", nil }

func MergeHits(parts [][]string) ([]string, error) { return nil, nil }

func Join(parts []patterns.LeafResponse) (patterns.Response, error) { return patterns.Response{}, nil }
`

// FuzzParse checks that no input makes Parse or Main panic, that every
// error has a position in the file, sorted, and that a package Parse
// accepts gives a valid app whose generated main parses. Each input is
// tried twice: as a whole file, and as the words of a //kiln:service in
// the doc comment of a valid func.
func FuzzParse(f *testing.F) {
	for _, name := range goodPackages {
		dir := filepath.Join("testdata", "good", name)
		for _, file := range goFiles(f, dir) {
			src, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
			for _, line := range strings.Split(string(src), "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "//kiln:service "); ok {
					f.Add([]byte(rest))
				}
			}
		}
	}
	for _, tc := range badCases {
		f.Add([]byte(header + tc.src + "\n"))
		for _, line := range strings.Split(tc.src, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "//kiln:service "); ok {
				f.Add([]byte(rest))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkParse(t, string(in))
		line := strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, string(in))
		checkParse(t, fmt.Sprintf(fuzzFile, line))
	})
}

// checkParse runs Parse on src as kv.go, when src is Go at all.
func checkParse(t *testing.T, src string) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "kv.go", src, parser.ParseComments)
	if err != nil {
		return
	}
	p, err := Parse(fset, []*ast.File{f})
	if p == nil || p.App == nil {
		t.Fatalf("Parse(%q) = nil Package or App", src)
	}
	if err != nil {
		var list scanner.ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("Parse(%q) = %v (%T), want a non-empty scanner.ErrorList", src, err, err)
		}
		for _, e := range list {
			if e.Pos.Filename != "kv.go" || e.Pos.Line < 1 || e.Pos.Column < 1 {
				t.Fatalf("Parse(%q) reports %q at %v, want a position in kv.go", src, e.Msg, e.Pos)
			}
		}
		if !sort.IsSorted(list) {
			t.Fatalf("Parse(%q) = unsorted\n%v", src, err)
		}
		return
	}
	if err := p.App.Validate(); err != nil {
		t.Fatalf("Parse(%q) = no error, but its app is invalid: %v", src, err)
	}
	gen, err := Main(p, "example.com/m/kv")
	if err != nil {
		t.Fatalf("Main(Parse(%q)) = %v, want no error", src, err)
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "main.go", gen, 0); err != nil {
		t.Fatalf("Main(Parse(%q)) does not parse: %v\n%s", src, err, gen)
	}
}
