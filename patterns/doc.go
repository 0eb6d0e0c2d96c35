// Package patterns holds kiln's service patterns: for each one its data plane
// (the router, root or leaf code that runs inside the user's binary) and its
// topology (which workloads the pattern needs, in target-neutral terms).
//
// The data planes are plain http.Handlers:
//
//   - NewRouter forwards each request to one backend: round robin (simple),
//     by a hashed key (shard), or at random (spread);
//   - NewRoot sends each request to every leaf and gathers the answers
//     (scatter/gather);
//   - Leaf wraps the program's own handler.
//
// Every one answers /healthz and /readyz, and routers and roots also serve
// Prometheus /metrics and name the backend that served a request in the
// Kiln-Backend response header. Serve runs any of them and drains in-flight
// requests when its context ends.
//
// Serve gives a router a fast lane (lane.go): it forwards plain requests —
// HTTP/1.1, a body of at most a few KB — itself, on the client
// connection's goroutine, and
// hands any other connection to net/http and the router's
// httputil.ReverseProxy, which answer the same (lane_test.go compares the
// two byte for byte). The lane roughly halves a router's CPU per request.
package patterns
