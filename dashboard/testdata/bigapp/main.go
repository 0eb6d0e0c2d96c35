// Command bigapp is an app at the edge of what the dashboard must lay out
// readably: 12 services, one of them 32 shards under a long name, and a
// front door that calls all the others on every request.
package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

// Long is the long service's name: 56 characters of a 63 allowed.
const Long = "an-extraordinarily-long-service-name-that-goes-on-and-on"

func main() {
	app := sdk.NewApp("bigapp")
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	var others []*sdk.Conn
	names := []string{Long}
	for i := range 10 {
		names = append(names, fmt.Sprintf("svc-%02d", i))
	}
	for _, n := range names {
		others = append(others, app.Dial(n))
	}
	app.Service(spec.Service{Name: "front-door", Simple: &spec.Simple{Replicas: 1}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range others {
			resp, err := c.Get(r.Context(), "/k"+r.URL.Path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		fmt.Fprintln(w, "ok")
	}))
	app.Service(spec.Service{Name: Long, Shard: &spec.Shard{Shards: 32, Key: spec.Key{PathSegment: 2}}}, ok)
	for _, n := range names[1:] {
		app.Service(spec.Service{Name: n, Simple: &spec.Simple{Replicas: 1}}, ok)
	}
	app.Run()
}
