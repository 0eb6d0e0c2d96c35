package patterns

import (
	"net/http"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

// TestLaneSurvivesAPanickingKeyFunc: a panic in the program's key function
// ends that request's connection only, as it would on net/http; the router
// goes on serving.
func TestLaneSurvivesAPanickingKeyFunc(t *testing.T) {
	keyFunc := func(r *http.Request) (string, error) {
		if r.Header.Get("X-Boom") != "" {
			var m map[string]int
			m["x"] = 1 // a bug in the program's key function
		}
		return r.URL.Path, nil
	}
	svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 1, Key: spec.Key{Func: "k"}}}
	rt := startRouter(t, svc, startBackends(t, 1, whoAmI), Options{KeyFunc: keyFunc, Logger: quiet})
	req, _ := http.NewRequest("GET", rt.URL+"/a", nil)
	req.Header.Set("X-Boom", "1")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a request whose key function panicked got %d", resp.StatusCode)
	}
	if resp, body := get(t, rt.URL+"/b"); resp.StatusCode != 200 || body != "backend 0 path /b" {
		t.Fatalf("the next request: %d %q", resp.StatusCode, body)
	}
}
