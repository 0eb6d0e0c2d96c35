package constraints

import "net/http"

//kiln:service fromtest simple replicas=1
func NewFromTest() http.Handler { return http.NotFoundHandler() }
