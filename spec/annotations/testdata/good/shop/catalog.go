package shop

import "net/http"

// NewCatalog is one leaf of the catalog.
//
//kiln:service catalog scatter leaves=4 timeout=500ms on-leaf-error=partial
func NewCatalog() http.Handler { return http.NotFoundHandler() }
