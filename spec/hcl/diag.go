package hcl

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	hclv2 "github.com/hashicorp/hcl/v2"

	"github.com/kiln-dev/kiln/spec"
)

// segment is one step of a spec.Path: a field name, or a bracketed
// service name, list index or map key.
type segment struct {
	start int    // offset of the '.' or '[' that begins it (0 for the first)
	name  string // the field name, or the text in brackets (a key unquoted)
	index bool   // bracketed
}

// segments splits p into its steps. It accepts any string, since paths
// may come from outside spec (Diagnostics takes any error).
func segments(p spec.Path) []segment {
	s := string(p)
	var segs []segment
	for i := 0; i < len(s); {
		start := i
		if s[i] == '[' {
			rest := s[i+1:]
			if q, err := strconv.QuotedPrefix(rest); err == nil && strings.HasPrefix(rest[len(q):], "]") {
				k, _ := strconv.Unquote(q)
				segs = append(segs, segment{start, k, true})
				i += 1 + len(q) + 1
				continue
			}
			j := strings.IndexByte(rest, ']')
			if j < 0 {
				segs = append(segs, segment{start, rest, true})
				break
			}
			segs = append(segs, segment{start, rest[:j], true})
			i += 1 + j + 1
			continue
		}
		if s[i] == '.' {
			i++
		}
		j := i
		for j < len(s) && s[j] != '.' && s[j] != '[' {
			j++
		}
		segs = append(segs, segment{start, s[i:j], false})
		i = j
	}
	return segs
}

// parent is p without its last step; "" has no parent and is its own.
func parent(p spec.Path) spec.Path {
	segs := segments(p)
	if len(segs) < 2 {
		return ""
	}
	return p[:segs[len(segs)-1].start]
}

// summary is a short title for a spec.FieldError: "Invalid shard count".
func summary(p spec.Path, msg string) string {
	segs := segments(p)
	last := segment{}
	if len(segs) > 0 {
		last = segs[len(segs)-1]
	}
	switch {
	case p == "services":
		return "No services"
	case len(segs) == 2 && segs[0].name == "services" && last.index:
		switch {
		case strings.HasPrefix(msg, "must set"):
			return "Missing pattern"
		case strings.HasPrefix(msg, "sets "):
			return "Conflicting patterns"
		}
		return "Invalid service"
	case last.name == "key" && !last.index:
		switch {
		case strings.HasPrefix(msg, "must set"):
			return "Missing shard key"
		case strings.HasPrefix(msg, "sets "):
			return "Conflicting key rules"
		}
	case strings.Contains(msg, "is not one of the service's volumes"):
		return "Undeclared volume"
	}
	n := noun(segs)
	switch {
	case strings.Contains(msg, "is used by"):
		return "Duplicate " + n
	case strings.HasPrefix(msg, "must be set"):
		return "Missing " + n
	}
	return "Invalid " + n
}

// nouns name the fields whose name alone says what they are.
var nouns = map[string]string{
	"ambassador":         "ambassador name",
	"args":               "container arguments",
	"choice":             "spread choice",
	"completions":        "completion count",
	"parallelism":        "parallelism",
	"retries":            "retry count",
	"deadline":           "deadline",
	"duration":           "lease duration",
	"size":               "storage size",
	"class":              "storage class",
	"on_delete":          "storage deletion policy",
	"on_scale_down":      "storage scale-down policy",
	"schedule":           "cron schedule",
	"time_zone":          "time zone",
	"concurrency_policy": "concurrency policy",
	"starting_deadline":  "starting deadline",
	"cpu":                "CPU quantity",
	"env":                "environment",
	"func":               "key function",
	"gather":             "gather",
	"header":             "key header",
	"image":              "image",
	"leaves":             "leaf count",
	"max":                "autoscale maximum",
	"memory":             "memory quantity",
	"min":                "autoscale minimum",
	"on_leaf_error":      "leaf-error policy",
	"path_segment":       "key path segment",
	"period":             "probe period",
	"port":               "port",
	"query":              "key query parameter",
	"regexp":             "key regexp",
	"replicas":           "replica count",
	"routers":            "router count",
	"shards":             "shard count",
	"target_cpu":         "CPU target",
	"timeout":            "timeout",
	"volume":             "mount volume",
}

// noun names the field at segs for a summary.
func noun(segs []segment) string {
	if len(segs) == 0 {
		return "app"
	}
	last := segs[len(segs)-1]
	// list is the name of the list or map the field's parent is in:
	// "sidecars" for sidecars[0].name.
	list := func(back int) string {
		if i := len(segs) - back; i >= 0 && !segs[i].index {
			return segs[i].name
		}
		return ""
	}
	if last.index {
		switch list(2) {
		case "env":
			return "environment variable"
		case "ports":
			return "container port"
		case "egress":
			return "egress block"
		}
		return "element"
	}
	switch last.name {
	case "name":
		switch list(3) {
		case "services":
			return "service name"
		case "sidecars", "init":
			return "container name"
		case "volumes":
			return "volume name"
		case "leases":
			return "lease name"
		}
		if len(segs) == 1 {
			return "app name"
		}
	case "path":
		switch {
		case list(3) == "volumes":
			return "volume path"
		case list(2) == "storage":
			return "storage path"
		case list(3) == "mounts":
			return "mount path"
		case list(2) == "readiness" || list(2) == "liveness":
			return "probe path"
		}
	}
	if n, ok := nouns[last.name]; ok {
		return n
	}
	return strings.ReplaceAll(last.name, "_", " ")
}

// detail is a FieldError's message as a sentence that names the field:
// `In service "kv", shard.shards must be ≥ 1, got 0.`
func detail(p spec.Path, msg string) string {
	segs := segments(p)
	var where, field string
	switch {
	case len(segs) >= 2 && segs[0].name == "services" && !segs[0].index && segs[1].index:
		svc := fmt.Sprintf("service %q", segs[1].name)
		if _, err := strconv.Atoi(segs[1].name); err == nil {
			svc = "the service at services[" + segs[1].name + "]" // unnamed
		}
		if len(segs) == 2 {
			return sentence(capitalize(join(svc, msg)))
		}
		where = "In " + svc + ", "
		field = strings.TrimPrefix(string(p[segs[2].start:]), ".")
	case p == "name":
		field = "app"
	case p == "services":
		field = "the file"
	default:
		return sentence(join(string(p), msg)) // a path from outside spec
	}
	return sentence(capitalize(where + join(field, msg)))
}

// join puts field before msg: a message that is a verb phrase ("must be
// set") follows the field, any other is set off by a colon.
func join(field, msg string) string {
	for _, verb := range []string{"must ", "is ", "sets ", "does ", "has "} {
		if strings.HasPrefix(msg, verb) {
			return field + " " + msg
		}
	}
	return field + ": " + msg
}

func capitalize(s string) string {
	if s != "" && 'a' <= s[0] && s[0] <= 'z' {
		return string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

// sortDiagnostics orders diags as they read in the file; those without a
// Subject come first.
func sortDiagnostics(diags hclv2.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}
