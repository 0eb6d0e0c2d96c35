package publish_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// checks are a request to each example's leaf and what its answer holds.
var checks = map[string]func(t *testing.T, base string){
	"hello": func(t *testing.T, base string) {
		expect(t, "GET", base+"/?name=docker", "", 200, "hello, docker, from replica 0\n")
	},
	"kv": func(t *testing.T, base string) {
		expect(t, "PUT", base+"/kv/color", "blue", 204, "")
		expect(t, "GET", base+"/kv/color", "", 200, "blue")
	},
	"search": func(t *testing.T, base string) {
		expect(t, "GET", base+"/search?q=cac", "", 200, "[\"cactus\"]\n")
	},
	"spread": func(t *testing.T, base string) {
		expect(t, "GET", base+"/", "", 200, "served by replica 0\n")
	},
}

func expect(t *testing.T, method, url, body string, code int, want string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code || string(got) != want {
		t.Fatalf("%s %s: %d %q, want %d %q", method, url, resp.StatusCode, got, code, want)
	}
}

// TestEngine builds every example with every back-end into the machine's
// Docker engine, runs each image as a leaf and asks it over HTTP.
func TestEngine(t *testing.T) {
	c := e2e.Docker(t)
	for _, backend := range []builder.Backend{builder.OCI, builder.Docker, builder.BuildKit} {
		for _, ex := range []string{"hello", "kv", "search", "spread"} {
			t.Run(string(backend)+"/"+ex, func(t *testing.T) {
				res := build(t, "./examples/"+ex, builder.Options{Backend: backend})
				repo := fmt.Sprintf("kiln-test/%s-%s", ex, backend)
				tag := fmt.Sprint(os.Getpid())
				removeImage(t, c, repo+":"+tag)
				pub := publishTo(t, res, "docker", publish.Options{Repo: repo, Tag: tag})
				if again := publishTo(t, res, "docker", publish.Options{Repo: repo, Tag: tag}); !again.Unchanged || again.Ref != pub.Ref {
					t.Errorf("second load: %+v, want unchanged %s", again, pub.Ref)
				}
				checks[ex](t, runLeaf(t, c, repo+":"+tag, ex))
			})
		}
	}
}

// TestEngineTarball loads a kiln tarball into the engine with the
// engine's own image load, as `docker load` does, and runs it.
func TestEngineTarball(t *testing.T) {
	c := e2e.Docker(t)
	res := build(t, "./examples/kv", builder.Options{})
	file := filepath.Join(t.TempDir(), "kv.tar")
	ref := fmt.Sprintf("kiln-test/kv-tarball:%d", os.Getpid())
	publishTo(t, res, "tar:"+file, publish.Options{Repo: "kiln-test/kv-tarball", Tag: fmt.Sprint(os.Getpid())})
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	removeImage(t, c, ref)
	out, err := c.ImageLoad(context.Background(), f, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(out)
	out.Close()
	if !strings.Contains(string(msg), "Loaded image: "+ref) {
		t.Fatalf("docker load said %s", msg)
	}
	checks["kv"](t, runLeaf(t, c, ref, "kv"))
}

// TestEngineNoRole runs an image without a role: the binary leaves the
// driver out, so the container exits with status 2.
func TestEngineNoRole(t *testing.T) {
	c := e2e.Docker(t)
	res := build(t, "./examples/hello", builder.Options{})
	repo, tag := "kiln-test/hello-norole", fmt.Sprint(os.Getpid())
	removeImage(t, c, repo+":"+tag)
	publishTo(t, res, "docker", publish.Options{Repo: repo, Tag: tag})
	ctx := context.Background()
	id := create(t, c, repo+":"+tag, nil)
	wait := c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-wait.Result:
		if r.StatusCode != 2 {
			t.Fatalf("exit status %d, want 2", r.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the container did not exit")
	}
}

// removeImage removes ref when the test ends (and now, in case an earlier
// run left it).
func removeImage(t *testing.T, c *client.Client, ref string) {
	rm := func() {
		c.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}
	rm()
	t.Cleanup(rm)
}

func create(t *testing.T, c *client.Client, ref string, env []string) string {
	t.Helper()
	port := network.MustParsePort("8080/tcp")
	r, err := c.ContainerCreate(context.Background(), client.ContainerCreateOptions{
		Config: &container.Config{Image: ref, Env: env, ExposedPorts: network.PortSet{port: {}}},
		HostConfig: &container.HostConfig{PortBindings: network.PortMap{
			port: {{HostIP: netip.MustParseAddr("127.0.0.1")}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.ContainerRemove(context.Background(), r.ID, client.ContainerRemoveOptions{Force: true})
	})
	return r.ID
}

// runLeaf starts ref as a leaf of service svc and returns its base URL
// once it answers /readyz.
func runLeaf(t *testing.T, c *client.Client, ref, svc string) string {
	t.Helper()
	ctx := context.Background()
	id := create(t, c, ref, []string{"KILN_ROLE=leaf", "KILN_SERVICE=" + svc, "KILN_ADDR=:8080"})
	if _, err := c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	ins, err := c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := ins.Container.Config.User; u != "65532:65532" {
		t.Errorf("the container runs as %q, want 65532:65532", u)
	}
	bindings := ins.Container.NetworkSettings.Ports[network.MustParsePort("8080/tcp")]
	if len(bindings) == 0 {
		t.Fatalf("port 8080 is not published: %+v", ins.Container.NetworkSettings.Ports)
	}
	base := "http://127.0.0.1:" + bindings[0].HostPort
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			logs, _ := c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
			var out []byte
			if logs != nil {
				out, _ = io.ReadAll(logs)
			}
			t.Fatalf("%s never answered /readyz (%v); logs:\n%s", ref, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEngineReproducible builds the same source twice with each engine
// back-end: kiln takes out the build times the engine stamps, so the
// digests match.
func TestEngineReproducible(t *testing.T) {
	e2e.Docker(t)
	for _, backend := range []builder.Backend{builder.Docker, builder.BuildKit} {
		t.Run(string(backend), func(t *testing.T) {
			a := build(t, "./examples/hello", builder.Options{Backend: backend})
			b := build(t, "./examples/hello", builder.Options{Backend: backend})
			da, _ := a.Digest()
			db, _ := b.Digest()
			if da != db {
				t.Fatalf("two %s builds: %s and %s", backend, da, db)
			}
		})
	}
}

// TestEngineBase builds kv on the hello image, pulled from the in-process
// registry by kiln (oci) or by the engine (docker, buildkit), and runs it.
func TestEngineBase(t *testing.T) {
	c := e2e.Docker(t)
	host := registryHost(t)
	hello := build(t, "./examples/hello", builder.Options{Compression: builder.Gzip})
	base := host + "/kiln/hello:base"
	removeImage(t, c, base) // what the engine back-ends pull
	publishTo(t, hello, "registry", publish.Options{Repo: host + "/kiln/hello", Tag: "base"})
	helloLayers, _ := hello.Images[0].Image.Layers()
	helloDiffID, _ := helloLayers[0].DiffID()
	for _, backend := range []builder.Backend{builder.OCI, builder.Docker, builder.BuildKit} {
		t.Run(string(backend), func(t *testing.T) {
			res := build(t, "./examples/kv", builder.Options{Backend: backend, Base: base})
			cf, err := res.Images[0].Image.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if len(cf.RootFS.DiffIDs) != 2 || cf.RootFS.DiffIDs[0] != helloDiffID || strings.Join(cf.Config.Entrypoint, " ") != "/kv" {
				t.Fatalf("config %+v: want hello's layer, then kv's", cf)
			}
			repo, tag := "kiln-test/kv-on-hello-"+string(backend), fmt.Sprint(os.Getpid())
			removeImage(t, c, repo+":"+tag)
			publishTo(t, res, "docker", publish.Options{Repo: repo, Tag: tag})
			checks["kv"](t, runLeaf(t, c, repo+":"+tag, "kv"))
		})
	}
}

// TestEngineIndex loads a two-platform build into the engine, which keeps
// one platform per tag: the engine's own.
func TestEngineIndex(t *testing.T) {
	c := e2e.Docker(t)
	res := build(t, "./examples/hello", builder.Options{Platforms: platforms(t, "linux/amd64,linux/arm64")})
	repo, tag := "kiln-test/hello-index", fmt.Sprint(os.Getpid())
	removeImage(t, c, repo+":"+tag)
	pub := publishTo(t, res, "docker", publish.Options{Repo: repo, Tag: tag})
	v, err := c.ServerVersion(context.Background(), client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range res.Images {
		if pi.Platform.Arch != v.Arch {
			continue
		}
		want, _ := pi.Image.Digest()
		id, _ := pi.Image.ConfigName()
		ins, err := c.ImageInspect(context.Background(), repo+":"+tag)
		if err != nil {
			t.Fatal(err)
		}
		if pub.Digest != want || ins.ID != id.String() || ins.Architecture != v.Arch {
			t.Fatalf("loaded %s (%s, %s), want the %s image %s (%s)", pub.Digest, ins.ID, ins.Architecture, v.Arch, want, id)
		}
		return
	}
	t.Skipf("the engine runs %s, which the test does not build", v.Arch)
}
