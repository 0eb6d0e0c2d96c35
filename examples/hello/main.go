// Command hello is the simple pattern: three identical replicas behind one
// round-robin entry point.
package main

import (
	"fmt"
	"net/http"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	self := sdk.Self()
	sdk.Run(spec.Service{
		Name:   "hello",
		Simple: &spec.Simple{Replicas: 3},
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		fmt.Fprintf(w, "hello, %s, from replica %d\n", name, self.Index)
	}))
}
