// Package forward is kiln's HTTP/1.1 forwarding engine: it moves each
// request to the backend its caller picks, and the answer back. Which
// backend that is, and what a service answers itself, are the caller's
// (package patterns' routers): the caller chooses, the engine moves bytes.
//
// A Proxy is configured through its fields and hooks, as
// httputil.ReverseProxy is. It forwards on two paths that answer the same:
//
//   - ServeHTTP, an http.Handler built on httputil.ReverseProxy, for any
//     request net/http serves;
//   - the lane, which Serve runs in front of an http.Server, for plain
//     requests.
//
// # The lane
//
// The lane forwards plain requests — HTTP/1.1, no upgrade, a head that
// fits one 4 KB read buffer, a body of known length — on the goroutine
// that serves the client connection (and, done with it, waits for the
// next one rather than end): it parses the head, asks Pick for the
// backend, writes the request to a pooled backend connection in one write
// and relays the answer, streaming. A body too large for the read buffer
// is read whole first if it fits 64 KB, and sent with the head; a larger
// one streams to the backend from a goroutine of its own, beside the
// answer. On Linux such a body, and the part of an answer past the first
// 64 KB, go from socket to socket through a pipe (splice(2)), never copied
// into the router. net/http's server and ReverseProxy do the same job with about
// twice the CPU per request (a background reader goroutine per request,
// header maps cloned and sorted both ways), which on a core shared with
// the backends halves a router's throughput.
//
// The lane only has to recognise a plain request, never to reject one: a
// connection whose next request is anything else (a chunked body, a
// malformed head, HTTP/1.0, one Pick leaves to the handler with
// ErrUseHandler) is handed, unread, to the http.Server, which serves it
// and the rest of that connection with its handler. So nothing the lane
// does not understand reaches a backend through it.
//
// Where the two paths answer differently, the lane is the more literal: it
// does not guess a Content-Type for an answer that has none (net/http's
// server sniffs one), and it refuses answers with folded header lines (502)
// where http.Transport unfolds them. lane_test.go compares, request by
// request, what clients and backends get on the two paths.
//
// # Draining
//
// Shutdown answers every request that reaches a connection accepted before
// it, closing the connection after the answer; http.Server.Shutdown drops
// one read after it began. Graceful gives any http.Server the same drain,
// and the handler side of Serve uses it.
//
// # Backends that come back
//
// A backend being restarted, or rescheduled under the same DNS name,
// refuses connections or does not resolve for a moment. Nothing was sent
// to it yet, so any request, whatever its method, is dialled again, with
// backoff, for up to 5 s (or its deadline) before it fails with a 502. A
// backend that stayed out of reach that long is remembered as down and is
// then dialled once per request, until a dial to it succeeds (dial.go).
//
// # Sockets
//
// The lane and the Proxy's own transport (NewTransport) keep idle
// connections to each backend in one pool. They, and the connections a
// Graceful serves, read and write sockets with raw system calls through the
// poller on Linux (sysconn_linux.go), which the Go scheduler does not count
// as blocking, so that they do not wake its sysmon thread.
//
// A pooled connection may have been closed by its backend, or carry bytes
// no one asked for, while it was idle; before a request goes on it, a
// look at the socket (a system call) finds out. The lane skips that look
// for a request it may send again when the connection's last answer was
// framed (a Content-Length or chunked body, read whole) and ended less
// than 100 ms ago: a backend closes an idle connection after seconds, or
// at once when it drains, and a request that meets such a close goes again
// on the next connection. It saves one system call in six on a kept-alive
// request (bench/README.md). A 204 or 304 answer has no body, but some
// servers write one after it anyway: the lane skips the look after those
// only for a backend whose last eight looks after one found nothing, and
// looks for good at one seen writing (a look found bytes, or the next
// answer began with bytes that were none: that answer is lost).
package forward
