package builder

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
)

// Platform is an image platform: always linux, since images run FROM
// scratch on a Linux kernel.
type Platform struct {
	OS, Arch, Variant string
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// HostPlatform is linux on this machine's architecture: what runs here.
func HostPlatform() Platform {
	p := Platform{OS: "linux", Arch: runtime.GOARCH}
	if p.Arch == "arm" {
		p.Variant = "v7"
	}
	return p
}

// linuxArches are the GOARCH values Go builds for linux without cgo
// (go tool dist list).
var linuxArches = []string{"386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64", "ppc64le", "riscv64", "s390x"}

// variants are the variants each architecture accepts, mapped to the Go
// environment variable that selects them.
var variants = map[string]struct {
	env  string
	vals map[string]string
}{
	"arm":   {"GOARM", map[string]string{"v5": "5", "v6": "6", "v7": "7"}},
	"arm64": {"GOARM64", map[string]string{"v8": "v8.0", "v8.0": "v8.0", "v9": "v9.0", "v9.0": "v9.0"}},
	"amd64": {"GOAMD64", map[string]string{"v1": "v1", "v2": "v2", "v3": "v3", "v4": "v4"}},
}

// ParsePlatforms parses a comma-separated list like
// "linux/amd64,linux/arm64,linux/arm/v7". An empty string means the host's
// platform.
func ParsePlatforms(s string) ([]Platform, error) {
	if strings.TrimSpace(s) == "" {
		return []Platform{HostPlatform()}, nil
	}
	var out []Platform
	for _, f := range strings.Split(s, ",") {
		p, err := parsePlatform(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("--platform %s: %s is listed twice", s, p)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/amd64 or linux/arm/v7", s)
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	if p.OS != "linux" {
		return Platform{}, fmt.Errorf("unsupported platform %s: kiln builds Linux images FROM scratch, so the OS must be linux (e.g. linux/%s)", s, p.Arch)
	}
	if !slices.Contains(linuxArches, p.Arch) {
		return Platform{}, fmt.Errorf("unsupported platform %s: Go cannot build linux/%s; use one of linux/%s", s, p.Arch, strings.Join(linuxArches, ", linux/"))
	}
	if p.Arch == "arm" && p.Variant == "" {
		p.Variant = "v7" // what registries and engines assume for linux/arm
	}
	if p.Variant != "" {
		v, ok := variants[p.Arch]
		if _, known := v.vals[p.Variant]; !ok || !known {
			return Platform{}, fmt.Errorf("unsupported platform %s: linux/%s has no variant %q", s, p.Arch, p.Variant)
		}
	}
	return p, nil
}

// goEnv is the environment that makes the go command build for p.
func (p Platform) goEnv() []string {
	env := []string{"GOOS=" + p.OS, "GOARCH=" + p.Arch}
	if v, ok := variants[p.Arch]; ok && p.Variant != "" {
		env = append(env, v.env+"="+v.vals[p.Variant])
	}
	return env
}

// key names p in file names: linux-arm-v7.
func (p Platform) key() string { return strings.ReplaceAll(p.String(), "/", "-") }
