package tmpcheck

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

func TestKnownLengthStreams(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("hello"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(3 * time.Second):
		}
		w.Write([]byte("world"))
	}))
	defer be.Close()
	u, _ := url.Parse(be.URL)
	svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 1, Key: spec.Key{PathSegment: 1}}}
	h, err := patterns.NewRouter(svc, []*url.URL{u}, patterns.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rt := httptest.NewServer(h)
	defer rt.Close()
	start := time.Now()
	resp, err := http.Get(rt.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != 10 || resp.Header.Get(patterns.HeaderBackend) != "shard-0" {
		t.Fatalf("len %d backend %q", resp.ContentLength, resp.Header.Get(patterns.HeaderBackend))
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, b); err != nil || string(b) != "hello" {
		t.Fatalf("%q %v", b, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("first half took %v: buffered", d)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "world" {
		t.Fatalf("rest %q", rest)
	}
	// HEAD and 204 still answer.
	for _, m := range []string{"HEAD", "GET"} {
		req, _ := http.NewRequest(m, rt.URL+"/y", nil)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
}
