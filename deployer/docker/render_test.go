package docker

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/spec"
)

func example(t testing.TB, name string) *spec.App {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := spec.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// podded is kv with a sidecar, an init container and a volume that the
// program and both containers mount.
func podded() *spec.App {
	a := &spec.App{Name: "podded", Services: []spec.Service{{
		Name:    "kv",
		Shard:   &spec.Shard{Shards: 2, Key: spec.Key{PathSegment: 2}},
		Env:     map[string]string{"LOG_DIR": "/var/log/app"},
		Volumes: []spec.Volume{{Name: "logs", Path: "/var/log/app"}},
		Sidecars: []spec.Container{{Name: "log-agent", Image: "example/log-agent:1", Args: []string{"--dir", "/logs"},
			Mounts: []spec.Mount{{Volume: "logs", Path: "/logs"}}}},
		Init: []spec.Container{{Name: "migrate", Image: "example/migrate:1", Env: map[string]string{"STEP": "1"},
			Mounts: []spec.Mount{{Volume: "logs", Path: "/logs"}}}},
	}}}
	a.SetDefaults()
	return a
}

func TestRenderGolden(t *testing.T) {
	for name, app := range map[string]*spec.App{
		"shop":   example(t, "shop"),
		"kv":     example(t, "kv"),
		"podded": podded(),
	} {
		t.Run(name, func(t *testing.T) {
			p, err := Render(app, Options{Image: "kiln.local/" + name + ":latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})
			if err != nil {
				t.Fatal(err)
			}
			b, err := p.JSON()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, name+".json", b)
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	o := Options{Image: "kiln.local/shop:latest", Port: 8000}
	a, _ := Render(example(t, "shop"), o)
	b, _ := Render(example(t, "shop"), o)
	ja, _ := a.JSON()
	jb, _ := b.JSON()
	if string(ja) != string(jb) {
		t.Fatalf("two renders of shop differ:\n%s\n%s", ja, jb)
	}
}

func TestRenderWithoutImageNamesTheField(t *testing.T) {
	_, err := Render(example(t, "kv"), Options{})
	if err == nil || err.Error() != "docker: no image for service kv: set Options.Image, or Options.Images for each service" {
		t.Fatalf("Render(kv, no image) = %v, want the error naming Options.Image", err)
	}
}

func TestRenderPublishesOnlyEntriesAndTheFirstOnPort(t *testing.T) {
	p, err := Render(example(t, "shop"), Options{Image: "i", Port: 8000})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pod := range p.Pods {
		if pod.Publish {
			got = append(got, pod.Name+":"+itoa(pod.HostPort))
		}
	}
	want := "[web-router-0:8000 carts-router-0:0 catalog-root-0:0]"
	if s := fmtSlice(got); s != want {
		t.Fatalf("published pods = %s, want %s", s, want)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func fmtSlice(s []string) string { return fmt.Sprint(s) }
