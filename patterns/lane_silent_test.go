package patterns

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// TestLaneClosesSilentConnections: a connection that never sends a byte is
// closed after the header timeout, as net/http closes it.
func TestLaneClosesSilentConnections(t *testing.T) {
	h, err := NewRouter(&spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, startBackends(t, 1, whoAmI), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newLaneServer(h.(*frontend).lane, &http.Server{Handler: h}, ln)
	s.headerTimeout = 200 * time.Millisecond
	go s.serve()
	t.Cleanup(func() { s.shutdown(context.Background()); s.srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a silent connection: %v after %s; want it closed", err, time.Since(start))
	}
	// The timeout runs from the accept, a little before start.
	if took := time.Since(start); took < s.headerTimeout/2 {
		t.Fatalf("closed after %s, well before the header timeout", took)
	}
}
