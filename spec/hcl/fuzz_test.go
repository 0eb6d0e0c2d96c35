package hcl

import (
	"os"
	"testing"

	hclv2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/kiln-dev/kiln/spec"
)

// FuzzLoad checks that no input makes LoadBytes panic, and that every
// error it reports has a position in the file: with no Options.Vars, no
// diagnostic lacks a Subject by design.
func FuzzLoad(f *testing.F) {
	for _, path := range []string{goodPath, badPath} {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(variablesSrc))
	for _, tc := range badCases {
		f.Add([]byte(tc.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, diags := LoadBytes(hclparse.NewParser(), src, "kiln.hcl", Options{})
		if file == nil || file.App == nil {
			t.Fatalf("LoadBytes(%q) = nil File or App", src)
		}
		check := func(what string, diags hclv2.Diagnostics) {
			for _, d := range diags {
				if d.Severity != hclv2.DiagError {
					continue
				}
				if d.Subject == nil || d.Subject.Filename != "kiln.hcl" || d.Subject.Start.Line < 1 {
					t.Fatalf("%s(%q) reports %q (%s) at %v, want a position in kiln.hcl", what, src, d.Summary, d.Detail, d.Subject)
				}
			}
		}
		check("LoadBytes", diags)
		// Paths that reach Diagnostics need not come from spec.Validate.
		check("Diagnostics", file.Diagnostics(spec.Errors{{Path: spec.Path(src), Msg: "is wrong"}}))
		check("Diagnostics", file.Diagnostics(file.App.Validate()))
	})
}
