package patterns

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/kiln-dev/kiln/patterns/forward"
	"github.com/kiln-dev/kiln/spec"
)

// BenchmarkShardRouter measures one proxied GET through a shard router,
// for each backend transport.
func BenchmarkShardRouter(b *testing.B) {
	backends := func(t *testing.B) []*url.URL {
		var out []*url.URL
		for i := range 3 {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "value of "+r.URL.Path+" from "+strconv.Itoa(i))
			}))
			out = append(out, srv)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		tr   func() http.RoundTripper // nil: kiln's own, with the lane
	}{
		{"net/http+http.Transport", func() http.RoundTripper { return &http.Transport{MaxIdleConnsPerHost: 512} }},
		{"net/http+forward.NewTransport", forward.NewTransport},
		{"lane", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}}
			var opts Options
			if tc.tr != nil {
				opts.Transport = tc.tr()
			}
			opts.Logger = quiet
			h, err := NewRouter(svc, backends(b), opts)
			if err != nil {
				b.Fatal(err)
			}
			front, _ := url.Parse(serve(b, h).URL)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					resp, err := client.Get(front.String() + "/kv/key-" + strconv.Itoa(i%1000))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

func newServer(t testing.TB, h http.Handler) *url.URL {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}
