package vminit

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// EncodeEnv writes env as the value of kiln.env: KEY=VALUE pairs in key
// order, joined by commas. Every byte the pairs cannot carry as they are
// (a percent sign, a comma, a double quote, a space or any byte outside
// printable ASCII) is written %XX, so that any value, KILN_PEERS' list or
// a GODEBUG of several settings, stays one variable and the whole line one
// word of the kernel command line. Keys may not hold '='.
func EncodeEnv(env map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(env)) {
		if i > 0 {
			b.WriteByte(',')
		}
		escapeEnv(&b, k)
		b.WriteByte('=')
		escapeEnv(&b, env[k])
	}
	return b.String()
}

func escapeEnv(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%', c == ',', c == '"', c <= ' ', c >= 0x7f:
			fmt.Fprintf(b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
}

// DecodeEnv reads the value of kiln.env back into KEY=VALUE entries. A
// comma-separated piece without '=' continues the value before it, so that
// a hand-written kiln.env=KILN_PEERS=http://a,http://b still means one list.
func DecodeEnv(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var pairs []string
	for p := range strings.SplitSeq(s, ",") {
		if strings.Contains(p, "=") || len(pairs) == 0 {
			pairs = append(pairs, p)
		} else {
			pairs[len(pairs)-1] += "," + p
		}
	}
	env := make([]string, 0, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not KEY=VALUE", ArgEnv, p)
		}
		key, err1 := url.PathUnescape(k)
		val, err2 := url.PathUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: %q: a %% must begin %%XX, two hex digits (%%25 for a percent sign itself)", ArgEnv, p)
		}
		env = append(env, key+"="+val)
	}
	return env, nil
}
