// Package sbom writes a Go binary's software bill of materials: an SPDX 2.3
// JSON document listing the modules the binary was linked from, with their
// versions, as its build information records them.
package sbom

import (
	"encoding/json"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
	"unicode"
)

// MediaType is SPDX JSON's media type, used as the artifact type of an SBOM
// attached to an image.
const MediaType = "application/spdx+json"

// Binary is what the document describes.
type Binary struct {
	Name     string // the program's name, e.g. "kv"
	Platform string // e.g. "linux/amd64"
	SHA256   string // hex digest of the binary
	Info     *debug.BuildInfo
}

type document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      creationInfo   `json:"creationInfo"`
	Packages          []pkg          `json:"packages"`
	Relationships     []relationship `json:"relationships"`
}

type creationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type pkg struct {
	SPDXID                string        `json:"SPDXID"`
	Name                  string        `json:"name"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	Checksums             []checksum    `json:"checksums,omitempty"`
	ExternalRefs          []externalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
	Comment               string        `json:"comment,omitempty"`
}

type checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type externalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// SPDX is b's bill of materials: the binary, the main module, every
// dependency module (replacements resolved) and the Go standard library.
// created dates the document; with the same inputs the bytes are the same.
func SPDX(b Binary, created time.Time) ([]byte, error) {
	if b.Info == nil {
		return nil, fmt.Errorf("sbom: %s has no build information", b.Name)
	}
	doc := document{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              strings.TrimSpace(b.Name + " " + b.Platform),
		DocumentNamespace: "https://kiln.dev/spdx/" + url(b.Name) + "-" + b.SHA256,
		CreationInfo: creationInfo{
			Created:  created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: kiln", "Tool: " + b.Info.GoVersion},
		},
	}
	bin := pkg{
		SPDXID:                "SPDXRef-Binary",
		Name:                  b.Name,
		VersionInfo:           version(b.Info.Main.Version),
		DownloadLocation:      "NOASSERTION",
		PrimaryPackagePurpose: "APPLICATION",
		Comment:               fmt.Sprintf("the %s binary of %s", b.Platform, b.Info.Path),
	}
	if b.SHA256 != "" {
		bin.Checksums = []checksum{{Algorithm: "SHA256", ChecksumValue: b.SHA256}}
	}
	doc.Packages = append(doc.Packages, bin)
	doc.Relationships = append(doc.Relationships, relationship{"SPDXRef-DOCUMENT", "DESCRIBES", bin.SPDXID})

	add := func(m debug.Module, comment string) {
		if m.Replace != nil {
			comment = strings.TrimSpace(comment + " replaced by " + m.Replace.Path + " " + m.Replace.Version)
			m = debug.Module{Path: m.Replace.Path, Version: m.Replace.Version}
		}
		p := pkg{
			SPDXID:                fmt.Sprintf("SPDXRef-Module-%d-%s", len(doc.Packages), idChars.ReplaceAllString(m.Path, "-")),
			Name:                  m.Path,
			VersionInfo:           version(m.Version),
			DownloadLocation:      "NOASSERTION",
			PrimaryPackagePurpose: "LIBRARY",
			Comment:               comment,
		}
		if p.VersionInfo != "" {
			p.ExternalRefs = []externalRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + m.Path + "@" + p.VersionInfo}}
			if !strings.HasPrefix(m.Path, "stdlib") {
				p.DownloadLocation = "https://proxy.golang.org/" + escape(m.Path) + "/@v/" + escape(p.VersionInfo) + ".zip"
			}
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, relationship{bin.SPDXID, "CONTAINS", p.SPDXID})
	}
	add(b.Info.Main, "main module")
	for _, d := range b.Info.Deps {
		add(*d, "")
	}
	add(debug.Module{Path: "stdlib", Version: b.Info.GoVersion}, "the Go standard library and runtime")
	// The main module built from a working tree has no download location.
	doc.Packages[1].DownloadLocation = "NOASSERTION"
	return json.MarshalIndent(doc, "", "  ")
}

var idChars = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// version drops "(devel)", which names no version.
func version(v string) string {
	if v == "(devel)" {
		return ""
	}
	return v
}

// escape is the module proxy's case encoding: an upper-case letter becomes
// "!" and its lower case.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func url(s string) string { return idChars.ReplaceAllString(s, "-") }
