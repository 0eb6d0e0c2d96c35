// Package types declares its handlers as types: a struct with a pointer
// receiver, a struct with a value receiver and a string type.
package types

import (
	"fmt"
	"net/http"
)

// Hello counts the requests it answers.
//
//kiln:service hello simple replicas=3
type Hello struct {
	n int
}

func (h *Hello) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.n++
	fmt.Fprintln(w, "hello", h.n)
}

type (
	// Static answers with a fixed page.
	//
	//kiln:service static spread replicas=2
	Static struct{}

	// Text answers with itself.
	//
	//kiln:service text simple replicas=1
	Text string
)

func (Static) ServeHTTP(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "static") }

func (t Text) ServeHTTP(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, string(t)) }
