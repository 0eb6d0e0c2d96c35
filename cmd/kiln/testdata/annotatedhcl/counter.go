// Package counter is an annotated package with a kiln.hcl beside it, for
// the CLI's tests: the annotation says the pattern, the descriptor adds
// what an annotation cannot say.
package counter

import (
	"fmt"
	"net/http"
	"os"
)

// New answers the greeting its environment gives it.
//
//kiln:service counter shard shards=2 key=header:X-User
func New() http.Handler {
	greeting := os.Getenv("GREETING")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s, %s\n", greeting, r.Header.Get("X-User"))
	})
}
