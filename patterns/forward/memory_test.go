package forward

// Tests of what slow and idle clients cost a Proxy: they must not stall
// other clients, and its memory must not grow with what they have not read.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// inUse is the memory the process holds in its heap and its goroutines'
// stacks, after a collection.
func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// slowClient GETs path from addr and reads the answer about rate bytes a
// second, on a socket with a small receive buffer, until stop is closed.
func slowClient(t *testing.T, addr, path string, rate int, stop <-chan struct{}) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
	buf := make([]byte, rate/10)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return // hangs up mid-answer
		case <-tick.C:
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Errorf("slow client: %v", err)
				return
			}
		}
	}
}

// TestSlowReadersStallNoOneAndHoldLittle: clients reading a 1 MB answer at
// 10 KB/s neither slow the other clients down nor make the Proxy hold what
// they have not read yet; once they hang up, their backends are free.
func TestSlowReadersStallNoOneAndHoldLittle(t *testing.T) {
	const slow = 20
	for _, path := range []string{"/large/k", "/stream/k"} {
		t.Run(strings.Trim(path, "/k"), func(t *testing.T) {
			p := newProxy(backend(t, laneBackend()))
			for _, base := range []struct{ name, url string }{{"lane", serve(t, p)}, {"net/http", reference(t, p)}} {
				addr := strings.TrimPrefix(base.url, "http://")
				fetch(t, base.url+"/echo/warm")
				before := inUse()
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for range slow {
					wg.Go(func() { slowClient(t, addr, path, 10<<10, stop) })
				}
				time.Sleep(500 * time.Millisecond) // every slow answer has filled the sockets' buffers

				// Others are served as quickly as ever meanwhile.
				var worst time.Duration
				for range 50 {
					start := time.Now()
					if resp, _ := fetch(t, base.url+"/echo/fast"); resp.StatusCode != 200 {
						t.Fatalf("%s: a fast request got %d", base.name, resp.StatusCode)
					}
					worst = max(worst, time.Since(start))
				}
				start := time.Now()
				if _, body := fetch(t, base.url+path); len(body) != len(large) {
					t.Errorf("%s: a fast client read %d bytes of %d", base.name, len(body), len(large))
				}
				whole := time.Since(start)
				grown := inUse() - before
				close(stop)
				wg.Wait()

				t.Logf("%s: %d slow readers of %s: the slowest of 50 small requests took %s, a 1 MB one %s; memory grew %d KB, %d KB per slow reader",
					base.name, slow, path, worst, whole, grown>>10, grown/slow>>10)
				if worst > 500*time.Millisecond || whole > 2*time.Second {
					t.Errorf("%s: with %d slow readers a small request took up to %s, a 1 MB one %s; want them served as usual", base.name, slow, worst, whole)
				}
				// Holding what they have not read would be 1 MB each.
				if perReader := grown / slow; perReader > 128<<10 {
					t.Errorf("%s: memory grew by %d KB per slow reader of a 1 MB answer, want at most 128 KB", base.name, perReader>>10)
				}
				b, _ := p.Pick(lanePick(path))
				waitIdle(t, b)
			}
		})
	}
}

// lanePick is a request for Pick, outside any connection.
func lanePick(path string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://h"+path, nil)
	return req
}

// TestIdleConnectionsCostLittle bounds a Proxy's memory under 1,000
// kept-alive client connections that have each made a request and wait for
// their next one.
func TestIdleConnectionsCostLittle(t *testing.T) {
	const conns = 1000
	p := newProxy(backend(t, echoPath))
	addr := strings.TrimPrefix(serve(t, p), "http://")
	fetch(t, "http://"+addr+"/warm")
	before := inUse()
	var cs []net.Conn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		io.WriteString(c, "GET /kv/k HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	per := (inUse() - before) / conns
	// Both ends of each connection are in this process: the client's part
	// is a few hundred bytes.
	t.Logf("%d idle connections: %d bytes each, heap and stacks", conns, per)
	if per > 16<<10 {
		t.Errorf("an idle connection costs %d KB, want at most 16 KB (a 64 KB buffer each would be 64)", per>>10)
	}
}
