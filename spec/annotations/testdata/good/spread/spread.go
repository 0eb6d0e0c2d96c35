// Package spread is two spread services, one for each choice.
package spread

import "net/http"

// NewWorkers picks a random replica for each request.
//
//kiln:service workers spread replicas=4 choice=random
func NewWorkers() http.Handler { return http.NotFoundHandler() }

// NewRenderers sends each request to the less loaded of two replicas.
//
//kiln:service renderers spread replicas=3 public=true
func NewRenderers() http.Handler { return http.NotFoundHandler() }
