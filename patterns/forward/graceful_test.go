package forward

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// serveGraceful serves h through a Graceful on a loopback port until the
// test ends, and returns its address.
func serveGraceful(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGraceful(&http.Server{Handler: h})
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	t.Cleanup(func() {
		g.Shutdown(t.Context())
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// A handler that hijacks its connection and writes to it from several
// goroutines at once gets every write through whole, as net.Conn promises.
func TestGracefulHijackedConnectionTakesConcurrentWrites(t *testing.T) {
	const writers, lines = 8, 500
	addr := serveGraceful(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				for j := range lines {
					// One Write per line, long enough to take several
					// system calls' worth of room in a busy socket.
					line := fmt.Sprintf("%d %d %s\n", i, j, strings.Repeat(string(rune('a'+i)), 2000))
					if _, err := c.Write([]byte(line)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
	sc := bufio.NewScanner(c)
	sc.Buffer(nil, 1<<20)
	next := make([]int, writers)
	n := 0
	for sc.Scan() {
		var i, j int
		var rest string
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %s", &i, &j, &rest); err != nil || i < 0 || i >= writers {
			t.Fatalf("line %d is not one write: %.60q", n, sc.Text())
		}
		if j != next[i] || rest != strings.Repeat(string(rune('a'+i)), 2000) {
			t.Fatalf("line %d: writer %d's line %d, want its line %d, whole", n, i, j, next[i])
		}
		next[i]++
		n++
	}
	if n != writers*lines {
		t.Fatalf("got %d lines, want %d (%v)", n, writers*lines, sc.Err())
	}
}

// A handler that copies a file into its answer (where net/http uses
// sendfile) sends every byte of it.
func TestGracefulServesAFileWhole(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := serveGraceful(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	}))
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, "http://"+addr+"/blob", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != int64(len(data)) {
			t.Errorf("%s: Content-Length %d, want %d", method, resp.ContentLength, len(data))
		}
		if method == "GET" && sha256.Sum256(got) != sha256.Sum256(data) {
			t.Errorf("GET: %d bytes that differ from the file's %d", len(got), len(data))
		}
	}
}
