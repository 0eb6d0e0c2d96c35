package tmpcheck

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

func BenchmarkRouter(b *testing.B) {
	val := []byte("value-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
	var peers []*url.URL
	for i := 0; i < 3; i++ {
		mux := http.NewServeMux()
		mux.HandleFunc("/kv/{key}", func(w http.ResponseWriter, r *http.Request) { w.Write(val) })
		s := httptest.NewServer(patterns.Leaf(mux))
		defer s.Close()
		u, _ := url.Parse(s.URL)
		peers = append(peers, u)
	}
	svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}}
	h, _ := patterns.NewRouter(svc, peers, patterns.Options{})
	rt := httptest.NewServer(h)
	defer rt.Close()
	urls := make([]string, 1000)
	for i := range urls {
		urls[i] = rt.URL + "/kv/key-" + strconv.Itoa(i)
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			resp, err := c.Get(urls[i%len(urls)])
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			i++
		}
	})
}
