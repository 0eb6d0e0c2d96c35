package child

import (
	"slices"
	"strings"
)

// Getenv is the value of key in env, a process's KEY=value entries: the
// last one where there are several, as exec takes it; "" where none.
func Getenv(env []string, key string) string {
	for _, kv := range slices.Backward(env) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
