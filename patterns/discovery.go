package patterns

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// Discovery says where each service of an app is reached: the URL of its
// entry point on the target the app runs on. Deployers compute it (a
// loopback address locally and in a microVM, the entry Service's DNS name on
// Kubernetes) and hand it to every process in EnvServices; the SDK reads it
// back so that a handler can call another service by name.
type Discovery []Endpoint

// Endpoint is where one service is reached.
type Endpoint struct {
	Service string
	URL     string
}

// ByName is the discovery of a target on which each service's entry
// answers to the service's own name on the app's network (a Kubernetes
// Service, a Docker network alias): http://NAME:PORT.
func ByName(app *spec.App) Discovery {
	d := make(Discovery, len(app.Services))
	for i, s := range app.Services {
		d[i] = Endpoint{Service: s.Name, URL: "http://" + s.Name + ":" + strconv.Itoa(s.HandlerPort())}
	}
	return d
}

// String is the EnvServices form: name=URL pairs separated by spaces, in
// app order. Not commas: a microVM's kernel command line carries the whole
// environment as comma-separated KEY=VALUE pairs.
func (d Discovery) String() string {
	parts := make([]string, len(d))
	for i, e := range d {
		parts[i] = e.Service + "=" + e.URL
	}
	return strings.Join(parts, " ")
}

// Lookup returns the URL of service name.
func (d Discovery) Lookup(name string) (string, bool) {
	for _, e := range d {
		if e.Service == name {
			return e.URL, true
		}
	}
	return "", false
}

// Names lists the services, in app order.
func (d Discovery) Names() []string {
	out := make([]string, len(d))
	for i, e := range d {
		out[i] = e.Service
	}
	return out
}

// ParseDiscovery reads the EnvServices form.
func ParseDiscovery(s string) (Discovery, error) {
	var d Discovery
	for _, part := range strings.Fields(s) {
		name, raw, ok := strings.Cut(part, "=")
		u, err := url.Parse(raw)
		if !ok || name == "" || err != nil || u.Host == "" {
			return nil, fmt.Errorf("%s: %q is not name=http://host:port", EnvServices, part)
		}
		d = append(d, Endpoint{Service: name, URL: raw})
	}
	return d, nil
}
