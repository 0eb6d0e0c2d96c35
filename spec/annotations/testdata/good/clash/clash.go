// Package spec has a name the generated main imports too, and services
// named like its variables.
package spec

import (
	"net/http"

	"github.com/kiln-dev/kiln/sdk"
)

//kiln:service app simple replicas=1
func NewApp() http.Handler { return http.NotFoundHandler() }

//kiln:service time simple replicas=1
func NewTime() http.Handler { return http.NotFoundHandler() }

//kiln:service new simple replicas=1
func NewNew() http.Handler { return http.NotFoundHandler() }

//kiln:service web simple replicas=1
func NewWeb(app, time, new *sdk.Conn) http.Handler {
	_, _, _ = app, time, new
	return http.NotFoundHandler()
}
