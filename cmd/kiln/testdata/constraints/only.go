// Package constraints has annotations in files the build leaves out, for
// the CLI's tests: only this file's service is the package's.
package constraints

import "net/http"

//kiln:service only simple replicas=1
func New() http.Handler { return http.NotFoundHandler() }
