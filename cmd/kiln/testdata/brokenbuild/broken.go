// Package broken has good annotations and a type error, for the CLI's
// tests: the compiler's message must point here, not at generated code.
package broken

import "net/http"

//kiln:service kv simple replicas=1
func New() http.Handler {
	var n int = "not a number"
	_ = n
	return http.NotFoundHandler()
}
