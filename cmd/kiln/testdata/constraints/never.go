//go:build never

package constraints

import "net/http"

//kiln:service never simple replicas=1
func NewNever() http.Handler { return http.NotFoundHandler() }
