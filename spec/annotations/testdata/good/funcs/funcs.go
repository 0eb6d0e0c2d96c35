// Package funcs uses Go functions where the spec names them: a key
// function, a typed gather and a gather of raw answers.
package funcs

import (
	"errors"
	"net/http"
	"strings"

	"github.com/kiln-dev/kiln/patterns"
)

// NewUsers is one shard of the users.
//
//kiln:service users shard shards=4 key=func:UserOf
func NewUsers() http.Handler { return http.NotFoundHandler() }

// UserOf takes the user from the X-User header.
func UserOf(r *http.Request) (string, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return "", errors.New("no X-User header")
	}
	return u, nil
}

// NewProfiles is one shard of the profiles, keyed by the digits of /u/{id}.
//
//kiln:service profiles shard shards=2 key=regexp:`^/u/(\d+)`
func NewProfiles() http.Handler { return http.NotFoundHandler() }

// NewSearch is one leaf of the search.
//
//kiln:service search scatter leaves=3 gather=MergeHits
func NewSearch() http.Handler { return http.NotFoundHandler() }

// Hit is one search result.
type Hit struct {
	Word  string  `json:"word"`
	Score float64 `json:"score"`
}

// MergeHits joins the leaves' hits.
func MergeHits(parts [][]Hit) ([]Hit, error) {
	var all []Hit
	for _, p := range parts {
		all = append(all, p...)
	}
	return all, nil
}

// NewLogs is one leaf of the logs.
//
//kiln:service logs scatter leaves=2 gather=JoinLines on-leaf-error=partial
func NewLogs() http.Handler { return http.NotFoundHandler() }

// JoinLines joins the leaves' answers as lines of text.
func JoinLines(parts []patterns.LeafResponse) (patterns.Response, error) {
	var b strings.Builder
	for _, p := range parts {
		b.Write(p.Body)
	}
	return patterns.Response{Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(b.String())}, nil
}

// NewQueries is one shard of the queries, keyed by a query parameter whose
// name holds a space.
//
//kiln:service queries shard shards=2 key="query:user id"
func NewQueries() http.Handler { return http.NotFoundHandler() }
