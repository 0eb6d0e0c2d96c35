package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// images are the test images in the engine, built once FROM scratch by
// kiln's builder: by name, shop, kv and sidecar, plus shop-b, shop's image
// under a second tag.
var (
	imagesOnce sync.Once
	images     map[string]string
	imagesErr  error
)

func testImages(t *testing.T) map[string]string {
	t.Helper()
	imagesOnce.Do(func() {
		images, imagesErr = buildImages()
	})
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	return images
}

func buildImages() (map[string]string, error) {
	root, err := testbin.Root()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	patient, err := patientShop(root)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, b := range []struct{ name, pkg, tag, overlay string }{
		{"shop", "./examples/shop", "docker-test", ""},
		{"shop-b", "./examples/shop", "docker-test-b", ""},
		{"shop-patient", "./examples/shop", "docker-test-patient", patient},
		{"shop-patient-b", "./examples/shop", "docker-test-patient-b", patient},
		{"kv", "./examples/kv", "docker-test", ""},
		{"spread", "./examples/spread", "docker-test", ""},
		{"sidecar", "./deployer/docker/testdata/sidecar", "docker-test", ""},
	} {
		ref, err := buildImage(ctx, root, b.pkg, b.tag, b.overlay)
		if err != nil {
			return nil, err
		}
		out[b.name] = ref
	}
	return out, nil
}

// patientTimeout is the gather deadline of shop's catalog in the
// shop-patient images.
const patientTimeout = 5 * time.Second

// patientShop writes a go build overlay that gives examples/shop's catalog
// a gather deadline of patientTimeout instead of 500 ms, for tests that
// count lost requests under load: a machine busy with the rest of the
// suite can stall a leaf past 500 ms, which is no request lost.
func patientShop(root string) (string, error) {
	main := filepath.Join(root, "examples", "shop", "main.go")
	src, err := os.ReadFile(main)
	if err != nil {
		return "", err
	}
	const deadline = "spec.Duration(500 * time.Millisecond)"
	if bytes.Count(src, []byte(deadline)) != 1 {
		return "", fmt.Errorf("%s no longer sets catalog's timeout as %s", main, deadline)
	}
	src = bytes.Replace(src, []byte(deadline), []byte("spec.Duration(5 * time.Second)"), 1)
	dir, err := os.MkdirTemp("", "kiln-shop-patient-")
	if err != nil {
		return "", err
	}
	return builder.WriteOverlay(dir, map[string][]byte{main: src})
}

// buildImage builds pkg FROM scratch, with the go build overlay file
// overlay unless it is "", and loads it into the engine as tag.
func buildImage(ctx context.Context, root, pkg, tag, overlay string) (string, error) {
	res, err := builder.Build(ctx, pkg, builder.Options{Dir: root, Overlay: overlay})
	if err != nil {
		return "", fmt.Errorf("building %s: %w", pkg, err)
	}
	pub, err := publish.Publish(ctx, res, publish.Target{Kind: publish.Engine}, publish.Options{Tag: tag})
	if err != nil {
		return "", fmt.Errorf("loading %s: %w", pkg, err)
	}
	return pub.Ref, nil
}

// exampleImages are the images of the examples that only their own test
// runs, each built the first time a test asks for it.
var exampleImages sync.Map // name → func() (string, error)

func exampleImage(t *testing.T, name string) string {
	t.Helper()
	build, _ := exampleImages.LoadOrStore(name, sync.OnceValues(func() (string, error) {
		root, err := testbin.Root()
		if err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		return buildImage(ctx, root, "./examples/"+name, "docker-test", "")
	}))
	ref, err := build.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// engineFor connects to the engine, or skips (fails under KILN_E2E=require),
// and removes app's objects before and after the test.
func engineFor(t *testing.T, app string) *Engine {
	t.Helper()
	c := e2e.Docker(t)
	c.Close()
	e, err := Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	down := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := e.Down(ctx, app); err != nil {
			t.Errorf("Down(%s): %v", app, err)
		}
	}
	down()
	t.Cleanup(func() { down(); e.Close() })
	return e
}

// apply renders app with o and applies it.
func apply(t *testing.T, e *Engine, app *spec.App, o Options) (*Plan, patterns.Discovery) {
	t.Helper()
	p, err := Render(app, o)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := e.Apply(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Apply(%s): %d pods ready in %s", app.Name, len(p.Pods), time.Since(start).Round(time.Millisecond))
	return p, d
}

func named(a *spec.App, name string) *spec.App { a.Name = name; return a }

func do(t *testing.T, method, url, body string) (*http.Response, string) {
	t.Helper()
	return doWithin(t, 10*time.Second, method, url, body)
}

func doWithin(t *testing.T, timeout time.Duration, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func productNames(t *testing.T, body string) []string {
	t.Helper()
	var ps []struct{ Name string }
	if err := json.Unmarshal([]byte(body), &ps); err != nil {
		t.Fatalf("answer %q is not a JSON array of products: %v", body, err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func url(t *testing.T, d patterns.Discovery, svc string) string {
	t.Helper()
	u, ok := d.Lookup(svc)
	if !ok {
		t.Fatalf("Apply returned %v, without %s", d, svc)
	}
	return u
}

// inspect returns a container of app's pod by its LabelContainer.
func inspect(t *testing.T, e *Engine, app, pod, c string) container.InspectResponse {
	t.Helper()
	r, err := e.c.ContainerInspect(context.Background(), containerName(app, pod, c), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Container
}

// ids maps each container name of app to its ID.
func ids(t *testing.T, e *Engine, app string) map[string]string {
	t.Helper()
	cs, err := e.containers(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range cs {
		out[first(c.Names)] = c.ID
	}
	return out
}

func TestShopServesThroughContainers(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "shop-serve")
	_, d := apply(t, e, named(example(t, "shop"), "shop-serve"), Options{Image: im["shop"]})
	if got := d.Names(); !slices.Equal(got, []string{"web", "carts", "catalog"}) {
		t.Fatalf("Apply = %v, want web, carts, catalog in app order", got)
	}
	web := url(t, d, "web")
	if resp, body := do(t, "PUT", web+"/cart/ann", `["tea"]`); resp.StatusCode != 204 {
		t.Fatalf("PUT /cart/ann through web = %d %q, want 204", resp.StatusCode, body)
	}
	if resp, body := do(t, "GET", web+"/cart/ann", ""); resp.StatusCode != 200 || strings.TrimSpace(body) != `["tea"]` {
		t.Fatalf("GET /cart/ann through web = %d %q, want 200 [\"tea\"]", resp.StatusCode, body)
	}
	resp, body := do(t, "GET", web+"/find?q=tea", "")
	want := []string{"black tea", "green tea", "tea towel", "teapot"}
	if got := productNames(t, body); resp.StatusCode != 200 || !slices.Equal(got, want) {
		t.Fatalf("GET /find?q=tea through web = %d %v, want 200 %v", resp.StatusCode, got, want)
	}
	ins := inspect(t, e, "shop-serve", "catalog-leaf-2", containerApp)
	if ins.Config.User != user || !ins.HostConfig.ReadonlyRootfs || !slices.Equal(ins.HostConfig.CapDrop, []string{"ALL"}) ||
		ins.HostConfig.RestartPolicy.Name != container.RestartPolicyUnlessStopped || !strings.HasPrefix(string(ins.HostConfig.NetworkMode), "container:") {
		t.Errorf("catalog-leaf-2's program: user %q, read-only %v, cap-drop %v, restart %q, network %q; want %s, true, [ALL], unless-stopped, container:HOLDER",
			ins.Config.User, ins.HostConfig.ReadonlyRootfs, ins.HostConfig.CapDrop, ins.HostConfig.RestartPolicy.Name, ins.HostConfig.NetworkMode, user)
	}
}

func TestHelloServesThroughContainers(t *testing.T) {
	e := engineFor(t, "hello-serve")
	_, d := apply(t, e, named(example(t, "hello"), "hello-serve"), Options{Image: exampleImage(t, "hello")})
	hello := url(t, d, "hello")
	// The entry takes turns: nine requests, three for each replica.
	count := map[string]int{}
	for range 9 {
		resp, body := do(t, "GET", hello+"/?name=ann", "")
		backend := resp.Header.Get(patterns.HeaderBackend)
		if want := fmt.Sprintf("hello, ann, from replica %s\n", strings.TrimPrefix(backend, "replica-")); resp.StatusCode != 200 || body != want {
			t.Fatalf("GET /?name=ann = %d %q from %q, want 200 %q", resp.StatusCode, body, backend, want)
		}
		count[backend]++
	}
	if len(count) != 3 || count["replica-0"] != 3 || count["replica-1"] != 3 || count["replica-2"] != 3 {
		t.Fatalf("9 requests went to %v, want 3 to each of replica-0, -1 and -2", count)
	}
}

func TestSearchGathersEveryLeafThroughContainers(t *testing.T) {
	e := engineFor(t, "search-serve")
	_, d := apply(t, e, named(example(t, "search"), "search-serve"), Options{Image: exampleImage(t, "search")})
	search := url(t, d, "search")
	resp, body := do(t, "GET", search+"/search?q=b", "")
	var got []string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET /search?q=b = %d %q, not a JSON array of words: %v", resp.StatusCode, body, err)
	}
	slices.Sort(got)
	// Each leaf holds every fourth word: only all four give them all.
	want := []string{"badge", "bamboo", "banner", "basin", "beacon", "berry", "birch", "blossom", "bridge", "bronze"}
	if resp.StatusCode != 200 || !slices.Equal(got, want) {
		t.Fatalf("GET /search?q=b = %d %v, want 200 %v", resp.StatusCode, got, want)
	}
	if b, m := resp.Header.Get(patterns.HeaderBackend), resp.Header.Get(patterns.HeaderMissing); b != "leaf-0,leaf-1,leaf-2,leaf-3" || m != "" {
		t.Fatalf("GET /search?q=b answered by %q, missing %q; want leaf-0,leaf-1,leaf-2,leaf-3 and none missing", b, m)
	}
}

func TestSameKeyReachesTheSameShard(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-keys")
	_, d := apply(t, e, named(example(t, "kv"), "kv-keys"), Options{Image: im["kv"]})
	kv := url(t, d, "kv")
	shards := map[string]int{}
	for i := range 200 {
		key := fmt.Sprintf("key-%d", i)
		resp, body := do(t, "PUT", kv+"/kv/"+key, key)
		if resp.StatusCode != 204 {
			t.Fatalf("PUT /kv/%s = %d %q, want 204", key, resp.StatusCode, body)
		}
		wrote := resp.Header.Get(patterns.HeaderBackend)
		resp, body = do(t, "GET", kv+"/kv/"+key, "")
		if resp.StatusCode != 200 || body != key || resp.Header.Get(patterns.HeaderBackend) != wrote || wrote == "" {
			t.Fatalf("GET /kv/%s = %d %q from %q, want 200 %q from %q", key, resp.StatusCode, body, resp.Header.Get(patterns.HeaderBackend), key, wrote)
		}
		shards[wrote]++
	}
	if len(shards) != 3 {
		t.Fatalf("200 keys landed on %v, want all 3 shards", shards)
	}
}

// TestEngineRestartsACrashedLeaf is what kiln deploy --target docker, with
// no Run to supervise, relies on: the unless-stopped policy restarts a
// program that crashes. (TestRunRestartsALeafKilledThroughTheEngine is the
// same with ContainerKill, which only Run restarts.)
// watchCatalog asks catalog for every product until done, and fails on
// any answer worse than one that lacks leaf-1 alone. It reports whether
// an answer lacked leaf-1.
func watchCatalog(t *testing.T, catalog string, within time.Duration, done func() bool) (sawPartial bool) {
	t.Helper()
	start := time.Now()
	for !done() {
		resp, _ := do(t, "GET", catalog+"/find?q=", "")
		missing := resp.Header.Get(patterns.HeaderMissing)
		switch {
		case resp.StatusCode != 200 || (missing != "" && missing != "leaf-1"):
			t.Fatalf("with leaf-1 down: %d, %s = %q; want 200, lacking at most leaf-1", resp.StatusCode, patterns.HeaderMissing, missing)
		case missing == "leaf-1":
			sawPartial = true
		}
		if time.Since(start) > within {
			t.Fatalf("leaf-1 not back within %s", within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return sawPartial
}

// complete asks catalog once and wants every leaf's answer.
func complete(t *testing.T, catalog string) {
	t.Helper()
	resp, body := do(t, "GET", catalog+"/find?q=", "")
	if resp.StatusCode != 200 || resp.Header.Get(patterns.HeaderMissing) != "" || len(productNames(t, body)) != 16 {
		t.Fatalf("after the restart: %d, %s = %q, %d products; want all 16", resp.StatusCode, patterns.HeaderMissing, resp.Header.Get(patterns.HeaderMissing), len(productNames(t, body)))
	}
}

func TestEngineRestartsACrashedLeaf(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "shop-kill")
	_, d := apply(t, e, named(example(t, "shop"), "shop-kill"), Options{Image: im["shop"]})
	catalog := url(t, d, "catalog")
	pid := inspect(t, e, "shop-kill", "catalog-leaf-1", containerApp).State.Pid
	// A leaf that hangs is late for the root's 500 ms: left out, and named.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Skipf("stopping leaf-1's program (pid %d) from the host: %v (the test needs root on the engine's host)", pid, err)
	}
	// kill returns before a thread busy in the kernel has stopped: ask
	// until the leaf is frozen for good.
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, _ := do(t, "GET", catalog+"/find?q=", "")
		if resp.StatusCode == 200 && resp.Header.Get(patterns.HeaderMissing) == "leaf-1" {
			break
		}
		if resp.StatusCode != 200 || time.Now().After(deadline) {
			t.Fatalf("with leaf-1 hung: %d, %s = %q; want 200 naming leaf-1", resp.StatusCode, patterns.HeaderMissing, resp.Header.Get(patterns.HeaderMissing))
		}
	}
	// A crash, not `docker kill`: the engine counts a container it killed
	// on request as stopped by hand, which no restart policy restarts
	// (TestEngineKillIsAManualStop). SIGKILL from the host is what a crash
	// looks like to the engine.
	syscall.Kill(pid, syscall.SIGKILL)
	killed := time.Now()
	watchCatalog(t, catalog, 30*time.Second, func() bool {
		ins := inspect(t, e, "shop-kill", "catalog-leaf-1", containerApp)
		return ins.RestartCount >= 1 && ins.State.Health != nil && ins.State.Health.Status == "healthy"
	})
	complete(t, catalog)
	t.Logf("leaf-1 restarted by the engine and complete again %s after the crash", time.Since(killed).Round(time.Millisecond))
}

func TestDisconnectedShardGives502NamingIt(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-cut")
	p, d := apply(t, e, named(example(t, "kv"), "kv-cut"), Options{Image: im["kv"]})
	kv := url(t, d, "kv")
	// Find a key on shard 1, then cut shard 1's pod off the network.
	var key string
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("k%d", i)
		resp, _ := do(t, "PUT", kv+"/kv/"+k, "v")
		if resp.Header.Get(patterns.HeaderBackend) == "shard-1" {
			key = k
		}
		if i > 100 {
			t.Fatal("no key of 100 landed on shard-1")
		}
	}
	if _, err := e.c.NetworkDisconnect(context.Background(), p.Network.Name, client.NetworkDisconnectOptions{
		Container: containerName("kv-cut", "kv-shard-1", containerHolder), Force: true,
	}); err != nil {
		t.Fatal(err)
	}
	// The router's connection to shard-1, kept alive from the PUT, now
	// leads nowhere: what the router sends on it is never acknowledged,
	// and the router drops it after its TCP user timeout (5 s), so the
	// very first request gets the 502.
	start := time.Now()
	resp, body, err := try("GET", kv+"/kv/"+key, 15*time.Second)
	if err != nil {
		t.Fatalf("GET /kv/%s with shard-1 cut off: %v after %s; want a 502 naming shard-1", key, err, time.Since(start).Round(time.Millisecond))
	}
	if resp.StatusCode != 502 || !(strings.Contains(body, "shard-1") || resp.Header.Get(patterns.HeaderBackend) == "shard-1") {
		t.Fatalf("GET /kv/%s with shard-1 cut off = %d %q (Kiln-Backend %q), want 502 naming shard-1", key, resp.StatusCode, body, resp.Header.Get(patterns.HeaderBackend))
	}
	t.Logf("502 %s after the cut: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(body))
}

// try is one request with its own connection pool.
func try(method, url string, timeout time.Duration) (*http.Response, string, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, "", err
	}
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// leftovers lists every container, network and volume labelled with app.
func leftovers(t *testing.T, e *Engine, app string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	cs, err := e.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", kubernetes.LabelInstance+"="+app)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Items {
		out = append(out, "container "+first(c.Names))
	}
	ns, err := e.c.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", kubernetes.LabelInstance+"="+app)})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns.Items {
		out = append(out, "network "+n.Name)
	}
	vs, err := e.c.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", kubernetes.LabelInstance+"="+app)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Items {
		out = append(out, "volume "+v.Name)
	}
	return out
}

// withVolume gives kv a scratch volume that its program mounts.
func withVolume(a *spec.App) *spec.App {
	a.Services[0].Volumes = []spec.Volume{{Name: "data", Path: "/data"}}
	return a
}

func TestDownLeavesNothingLabelledWithTheApp(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-down")
	apply(t, e, withVolume(named(example(t, "kv"), "kv-down")), Options{Image: im["kv"]})
	if n := len(leftovers(t, e, "kv-down")); n != 8+1+4 {
		t.Errorf("before Down: %d objects, want 8 containers, a network and 4 volumes (one per pod, the router's too)", n)
	}
	start := time.Now()
	removed, err := e.Down(context.Background(), "kv-down")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Down removed %d objects in %s", len(removed), time.Since(start).Round(time.Millisecond))
	if left := leftovers(t, e, "kv-down"); len(left) > 0 {
		t.Fatalf("after Down: %v, want nothing", left)
	}
	if len(removed) != 13 {
		t.Errorf("Down = %v, want 13 objects", removed)
	}
}

func TestSecondApplyChangesNothingAndAnImageChangeRecreatesOnlyItsService(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "shop-again")
	app := named(example(t, "shop"), "shop-again")
	_, d1 := apply(t, e, app, Options{Image: im["shop"]})
	before := ids(t, e, "shop-again")
	_, d2 := apply(t, e, app, Options{Image: im["shop"]})
	after := ids(t, e, "shop-again")
	if fmt.Sprint(before) != fmt.Sprint(after) || fmt.Sprint(d1) != fmt.Sprint(d2) {
		t.Fatalf("second Apply of the same plan changed containers or endpoints:\n%v %v\n%v %v", before, d1, after, d2)
	}
	apply(t, e, app, Options{Image: im["shop"], Images: map[string]string{"catalog": im["shop-b"]}})
	changed := ids(t, e, "shop-again")
	for name, id := range changed {
		isCatalog := strings.HasPrefix(name, "/kiln-shop-again-catalog-")
		if was := before[name]; isCatalog == (was == id) {
			t.Errorf("after changing catalog's image, %s: %s, was %s; want only catalog's pods recreated", name, id, was)
		}
	}
	if len(changed) != len(before) {
		t.Errorf("%d containers after the image change, want %d", len(changed), len(before))
	}
	resp, body := do(t, "GET", url(t, d2, "web")+"/find?q=tea", "")
	if resp.StatusCode != 200 || len(productNames(t, body)) != 4 {
		t.Errorf("find?q=tea after the change = %d %q", resp.StatusCode, body)
	}
}

func TestRunServesUntilCanceledThenRemovesEverything(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-run")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var logs testbin.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, named(example(t, "kv"), "kv-run"), Options{Image: im["kv"], Output: &logs}, pw)
		pw.Close()
	}()
	line := make([]byte, 200)
	n, err := pr.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	got := string(line[:n])
	base, ok := strings.CutPrefix(strings.TrimSpace(got), "kiln: kv serving at ")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("Run printed %q, want kiln: kv serving at http://127.0.0.1:PORT", got)
	}
	if resp, _ := do(t, "PUT", base+"/kv/a", "b"); resp.StatusCode != 204 {
		t.Fatalf("PUT through Run's URL = %d", resp.StatusCode)
	}
	time.Sleep(1500 * time.Millisecond) // Follow polls for containers each second
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("Run did not return within 90s of its context ending")
	}
	t.Logf("Run returned %s after cancel", time.Since(start).Round(time.Millisecond))
	if left := leftovers(t, e, "kv-run"); len(left) > 0 {
		t.Fatalf("after Run's context ended: %v, want nothing", left)
	}
	out := logs.String()
	if !strings.HasSuffix(out, "kiln: stopped\n") {
		t.Errorf("Run's output ends %q, want kiln: stopped", out[max(0, len(out)-200):])
	}
	if !strings.Contains(out, "kv/shard-0 | ") {
		t.Errorf("no line prefixed kv/shard-0 in Run's output: %q", out)
	}
}

func TestSidecarReachesItsProgramOnLocalhost(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-side")
	app := named(example(t, "kv"), "kv-side")
	app.Services[0].Sidecars = []spec.Container{{Name: "prober", Image: im["sidecar"]}}
	apply(t, e, app, Options{Image: im["kv"]})
	time.Sleep(5 * time.Second)
	ins := inspect(t, e, "kv-side", "kv-shard-0", "prober")
	if !ins.State.Running || ins.RestartCount != 0 {
		t.Fatalf("sidecar after 5s: running %v, %d restarts (status %d); want running, no restart", ins.State.Running, ins.RestartCount, ins.State.ExitCode)
	}
	logs := e.tail(context.Background(), ins.ID)
	if !strings.Contains(logs, `program answered 200`) {
		t.Fatalf("sidecar's output:\n%s\nwant the program's 200 over 127.0.0.1", logs)
	}
}

// TestEngineKillIsAManualStop pins down why Run supervises and why
// TestEngineRestartsACrashedLeaf kills from the host: without Run, a
// container that ContainerKill stopped stays stopped, restart policy or
// not.
func TestEngineKillIsAManualStop(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-dkill")
	apply(t, e, named(example(t, "kv"), "kv-dkill"), Options{Image: im["kv"]})
	name := containerName("kv-dkill", "kv-shard-0", containerApp)
	if _, err := e.c.ContainerKill(context.Background(), name, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	ins := inspect(t, e, "kv-dkill", "kv-shard-0", containerApp)
	if ins.State.Status != container.StateExited || ins.RestartCount != 0 {
		t.Fatalf("3s after ContainerKill: status %s, %d restarts; want exited, 0 (if the engine restarts it now, Run need not)", ins.State.Status, ins.RestartCount)
	}
}

// TestApplyFailsNamingAPodWhoseProgramExits runs kv with an image that is
// not a kiln program (the test sidecar, which exits 1 when nothing answers
// on :8080): Apply fails naming the pod, the status and the output, and
// leaves nothing of the app, since nothing of it ran before.
func TestApplyFailsNamingAPodWhoseProgramExits(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-exit")
	p, err := Render(withVolume(named(example(t, "kv"), "kv-exit")), Options{Image: im["sidecar"]})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Apply(context.Background(), p)
	// Pods are waited for together: whichever program exits first is named.
	if err == nil || !regexp.MustCompile(`pod kv-[a-z]+-\d: its program exited with status 1 before`).MatchString(err.Error()) || !strings.Contains(err.Error(), "sidecar: Get") {
		t.Fatalf("Apply(a program that exits 1) = %v, want it to name a pod of kv, status 1 and its output", err)
	}
	t.Logf("Apply failed after %s: %.120s…", time.Since(start).Round(time.Millisecond), err)
	if left := leftovers(t, e, "kv-exit"); len(left) > 0 {
		t.Fatalf("after the failed Apply: %v, want no container, network or volume of kv-exit", left)
	}
}

// TestSIGTERMToTheEntryUnderLoadLosesNothing: the router drains on
// SIGTERM and exits; the engine starts it again, and the connections made
// meanwhile wait in the socket the pod's holder keeps, so no request fails.
func TestSIGTERMToTheEntryUnderLoadLosesNothing(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "spread-term")
	_, d := apply(t, e, named(example(t, "spread"), "spread-term"), Options{Image: im["spread"]})
	entry := url(t, d, "spread")
	before := inspect(t, e, "spread-term", "spread-router-0", containerApp)
	stop := make(chan struct{})
	loaded := make(chan testbin.Loaded, 1)
	go func() { loaded <- testbin.Load(entry+"/?ms=50", 8, 20*time.Second, stop) }()
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(before.State.Pid, syscall.SIGTERM); err != nil {
		close(stop)
		<-loaded
		t.Skipf("signalling the router's program (pid %d) from the host: %v (the test needs root on the engine's host)", before.State.Pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for inspect(t, e, "spread-term", "spread-router-0", containerApp).RestartCount == before.RestartCount {
		if time.Now().After(deadline) {
			t.Fatal("the engine did not start the router again within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // load on the new router too
	close(stop)
	l := <-loaded
	if l.Failed > 0 {
		t.Fatalf("%d of %d requests failed around the router's SIGTERM; first: %v", l.Failed, l.Failed+l.OK, l.First)
	}
	t.Logf("%d requests, none lost, across the router's SIGTERM and restart", l.OK)
}
