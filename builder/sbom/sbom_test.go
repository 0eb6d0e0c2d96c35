package sbom_test

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/builder/sbom"
	"github.com/kiln-dev/kiln/internal/testbin"
)

type doc struct {
	SPDXVersion  string
	CreationInfo struct{ Created string }
	Packages     []struct {
		SPDXID, Name, VersionInfo, DownloadLocation string
		Checksums                                   []struct{ Algorithm, ChecksumValue string }
		ExternalRefs                                []struct{ ReferenceType, ReferenceLocator string }
	}
	Relationships []struct{ SpdxElementId, RelationshipType, RelatedSpdxElement string }
}

func parse(t *testing.T, b []byte) doc {
	t.Helper()
	var d doc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSPDX(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      "example.com/app/cmd/app",
		Main:      debug.Module{Path: "example.com/app", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/BurntSushi/toml", Version: "v1.4.0", Sum: "h1:x"},
			{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v1.1.0"}},
		},
	}
	created := time.Unix(1700000000, 0)
	b, err := sbom.SPDX(sbom.Binary{Name: "app", Platform: "linux/amd64", SHA256: "abc", Info: info}, created)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := sbom.SPDX(sbom.Binary{Name: "app", Platform: "linux/amd64", SHA256: "abc", Info: info}, created)
	if !bytes.Equal(b, again) {
		t.Fatal("the same input gave different documents")
	}
	d := parse(t, b)
	if d.SPDXVersion != "SPDX-2.3" || d.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Fatalf("document %+v", d)
	}
	for _, tc := range []struct{ id, name, version, location, purl string }{
		{"SPDXRef-Binary", "app", "", "NOASSERTION", ""},
		{"SPDXRef-Module-1-example.com-app", "example.com/app", "", "NOASSERTION", ""},
		{"SPDXRef-Module-2-github.com-BurntSushi-toml", "github.com/BurntSushi/toml", "v1.4.0", "https://proxy.golang.org/github.com/!burnt!sushi/toml/@v/v1.4.0.zip", "pkg:golang/github.com/BurntSushi/toml@v1.4.0"},
		{"SPDXRef-Module-3-example.com-new", "example.com/new", "v1.1.0", "https://proxy.golang.org/example.com/new/@v/v1.1.0.zip", "pkg:golang/example.com/new@v1.1.0"},
		{"SPDXRef-Module-4-stdlib", "stdlib", "go1.26.8", "NOASSERTION", "pkg:golang/stdlib@go1.26.8"},
	} {
		found := false
		for _, p := range d.Packages {
			if p.SPDXID != tc.id {
				continue
			}
			found = true
			purl := ""
			if len(p.ExternalRefs) > 0 {
				purl = p.ExternalRefs[0].ReferenceLocator
			}
			if p.Name != tc.name || p.VersionInfo != tc.version || p.DownloadLocation != tc.location || purl != tc.purl {
				t.Errorf("package %+v\nwant %+v", p, tc)
			}
		}
		if !found {
			t.Errorf("no package %s in %s", tc.id, b)
		}
	}
	if d.Packages[0].Checksums[0].ChecksumValue != "abc" || len(d.Relationships) != 5 || d.Relationships[0].RelationshipType != "DESCRIBES" {
		t.Fatalf("binary or relationships wrong: %s", b)
	}
}

// TestExampleModules builds examples/kv and finds every module go list
// says it is made of in its SBOM, with the same version.
func TestExampleModules(t *testing.T) {
	bin, err := testbin.Build(t.TempDir(), "./examples/kv", "-trimpath")
	if err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sbom.SPDX(sbom.Binary{Name: "kv", Platform: "linux/amd64", Info: info}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, p := range parse(t, b).Packages {
		listed[p.Name] = p.VersionInfo
	}
	root, _ := testbin.Root()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}", "./examples/kv")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	mods := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" {
			mods[line] = true
		}
	}
	if len(mods) == 0 {
		t.Fatal("go list found no dependency modules")
	}
	for m := range mods {
		path, version, _ := strings.Cut(m, " ")
		if listed[path] != version {
			t.Errorf("module %s %s: the SBOM has version %q", path, version, listed[path])
		}
	}
	if listed["github.com/prometheus/client_golang"] == "" || listed["stdlib"] != info.GoVersion {
		t.Errorf("SBOM packages %v", listed)
	}
}
