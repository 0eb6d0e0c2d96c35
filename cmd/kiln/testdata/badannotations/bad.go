// Package bad has annotations with mistakes, for the CLI's tests.
package bad

import "net/http"

// New has an unknown option and a bad count.
//
//kiln:service kv shard shards=0 key=path:2 colour=blue
func New() http.Handler { return http.NotFoundHandler() }
