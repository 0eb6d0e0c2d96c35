package dashboard

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// TestTheLookupMapsAKeyWhereTheRouterDoes compares shardFor with the
// router's own extraction and hashing of the request that carries the key.
func TestTheLookupMapsAKeyWhereTheRouterDoes(t *testing.T) {
	for _, tc := range []struct {
		rule  spec.Key
		input string // what a person types
		req   func(r *http.Request)
	}{
		{spec.Key{PathSegment: 2}, "ann", func(r *http.Request) { r.URL.Path = "/cart/ann" }},
		{spec.Key{PathSegment: 2}, "/cart/ann", func(r *http.Request) { r.URL.Path = "/cart/ann" }},
		{spec.Key{PathSegment: 1}, "/zoë/items", func(r *http.Request) { r.URL.Path = "/zoë/items" }},
		{spec.Key{Regexp: `^/users/([^/]+)`}, "/users/bob/orders", func(r *http.Request) { r.URL.Path = "/users/bob/orders" }},
		{spec.Key{Regexp: `^/users/([^/]+)`}, "bob", func(r *http.Request) { r.URL.Path = "/users/bob" }},
		{spec.Key{Header: "X-Tenant"}, "acme", func(r *http.Request) { r.Header.Set("X-Tenant", "acme") }},
		{spec.Key{Header: "X-Tenant"}, "/not/a/path", func(r *http.Request) { r.Header.Set("X-Tenant", "/not/a/path") }},
		{spec.Key{Query: "user"}, "carol", func(r *http.Request) { r.URL.RawQuery = url.Values{"user": {"carol"}}.Encode() }},
	} {
		for _, n := range []int{1, 3, 32} {
			req, _ := http.NewRequest(http.MethodGet, "http://kiln.test/", nil)
			tc.req(req)
			extract, err := patterns.KeyExtractor(tc.rule, nil)
			if err != nil {
				t.Fatal(err)
			}
			routerKey, err := extract(req)
			if err != nil {
				t.Fatal(err)
			}
			key, shard, err := shardFor(tc.rule, n, tc.input)
			if want := patterns.ShardOf(routerKey, n); err != nil || key != routerKey || shard != want {
				t.Errorf("shardFor(%s, %d, %q) = %q, %d, %v, want %q, %d as the router takes it", tc.rule, n, tc.input, key, shard, err, routerKey, want)
			}
		}
	}
	if _, _, err := shardFor(spec.Key{PathSegment: 3}, 3, "/cart/ann"); err == nil {
		t.Errorf("shardFor(path segment 3, /cart/ann) gave a shard, want the router's missing-key error")
	}
}

func TestQuantileInterpolatesWithinItsBucket(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name string
		q    float64
		bs   []bucket
		want float64 // ms; -1 for none
	}{
		{"empty", 0.5, nil, -1},
		{"no requests", 0.5, []bucket{{0.001, 0}, {inf, 0}}, -1},
		{"all in the first bucket", 0.5, []bucket{{0.001, 10}, {0.01, 10}, {inf, 10}}, 0.5},
		{"half way through the second", 0.5, []bucket{{0.001, 0}, {0.011, 20}, {inf, 20}}, 6},
		{"p99 in the last finite", 0.99, []bucket{{0.001, 50}, {0.1, 100}, {inf, 100}}, 98.02},
		{"beyond the last bound", 0.99, []bucket{{0.001, 1}, {0.1, 1}, {inf, 100}}, 100},
	} {
		got := quantileMS(tc.q, tc.bs)
		switch {
		case tc.want < 0 && got != nil:
			t.Errorf("%s: quantileMS(%v) = %v, want none", tc.name, tc.q, *got)
		case tc.want >= 0 && (got == nil || math.Abs(*got-tc.want) > 1e-9):
			t.Errorf("%s: quantileMS(%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestCountsSinceTreatsACounterThatWentDownAsARestart(t *testing.T) {
	old := counts{requests: 100, errors: 4, buckets: []bucket{{0.01, 90}, {math.Inf(1), 100}}}
	now := counts{requests: 130, errors: 5, buckets: []bucket{{0.01, 115}, {math.Inf(1), 130}}}
	if d := now.since(old); d.requests != 30 || d.errors != 1 || d.buckets[0].n != 25 || d.buckets[1].n != 30 {
		t.Errorf("since = %+v, want 30 requests, 1 error, buckets 25 and 30", d)
	}
	restarted := counts{requests: 7, buckets: []bucket{{0.01, 7}, {math.Inf(1), 7}}}
	if d := restarted.since(old); d.requests != 7 {
		t.Errorf("since after a restart = %+v, want all 7 requests as new", d)
	}
}

// TestTopologyOfShopMatchesTheGoldenFile draws examples/shop's spec, with
// a sidecar on carts, as /api/topology answers it.
func TestTopologyOfShopMatchesTheGoldenFile(t *testing.T) {
	app := &spec.App{Name: "shop", Services: []spec.Service{
		{Name: "web", Simple: &spec.Simple{Replicas: 2}},
		{Name: "carts", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}},
			Sidecars: []spec.Container{{Name: "backup", Image: "kiln.test/backup:1"}}},
		{Name: "catalog", Scatter: &spec.Scatter{Leaves: 4, Gather: spec.GatherConcat, Timeout: spec.Duration(500 * time.Millisecond), OnLeafError: spec.OnLeafErrorPartial}},
	}}
	app.SetDefaults()
	topo, err := patterns.Build(app)
	if err != nil {
		t.Fatal(err)
	}
	endpoints := patterns.Discovery{{Service: "web", URL: "http://127.0.0.1:8001"}, {Service: "carts", URL: "http://127.0.0.1:8002"}, {Service: "catalog", URL: "http://127.0.0.1:8003"}}
	b, err := json.MarshalIndent(topologyJSON{App: topo.App, Services: services(topo, endpoints)}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "shop-topology.json", append(b, '\n'))
}
