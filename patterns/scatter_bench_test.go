package patterns

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// BenchmarkRoot measures one request through a scatter/gather root, one at
// a time, over 4 and 8 leaves that answer a small JSON array.
func BenchmarkRoot(b *testing.B) {
	for _, n := range []int{4, 8} {
		b.Run(strconv.Itoa(n)+"-leaves", func(b *testing.B) {
			var leaves []*url.URL
			for i := range n {
				answer := `[{"doc":"leaf ` + strconv.Itoa(i) + `","score":0.5}]` + "\n"
				leaves = append(leaves, newServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, answer)
				})))
			}
			h, err := NewRoot(scatterSvc(n, "concat", spec.OnLeafErrorPartial, time.Second), leaves, Options{Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			front := serve(b, h).URL + "/search?q=s"
			client := &http.Client{Transport: &http.Transport{}}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(front)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
