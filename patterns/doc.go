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
// A router chooses backends and counts what they serve; moving the bytes
// is package forward's job: Serve runs a router's forward.Proxy, whose
// fast lane forwards plain requests on the client connection's goroutine
// at about half net/http's CPU per request.
package patterns
