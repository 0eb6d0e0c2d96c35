// Package simple is one greeting service of three replicas.
//
//kiln:app greet
package simple

import (
	"fmt"
	"net/http"
)

// New answers every request with a greeting.
//
//kiln:service hello simple replicas=3 port=8081 public
func New() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})
}
