package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
)

// leftovers lists what the engine still holds of app, by kiln's labels.
func leftovers(t *testing.T, c *client.Client, app string) []string {
	t.Helper()
	ctx := context.Background()
	f := make(client.Filters).Add("label", kubernetes.LabelInstance+"="+app)
	var out []string
	cs, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range cs.Items {
		out = append(out, "container "+strings.Join(x.Names, ","))
	}
	ns, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns.Items {
		out = append(out, "network "+n.Name)
	}
	return out
}

// TestRunOnDocker runs examples/kv as containers through the CLI: the
// serving line, the same key on the same shard, and nothing left after
// Ctrl-C.
func TestRunOnDocker(t *testing.T) {
	c := e2e.Docker(t)
	run := kiln(t)
	cmd := run("run", "--target", "docker", "./examples/kv")
	cmd.Stderr = testWriter{t}
	got := firstLines(t, cmd, 1, 180*time.Second)[0]
	m := regexp.MustCompile(`^kiln: kv serving at (http://127\.0\.0\.1:\d+)\n$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("first line %q; want the local target's serving line", got)
	}
	url := m[1]
	shardOf := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		req, _ := http.NewRequest("PUT", url+"/kv/"+k, strings.NewReader("v-"+k))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT %s: %v %v", k, resp, err)
		}
		resp.Body.Close()
		shardOf[k] = resp.Header.Get("Kiln-Backend")
	}
	for k, shard := range shardOf {
		resp, err := http.Get(url + "/kv/" + k)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "v-"+k || resp.Header.Get("Kiln-Backend") != shard {
			t.Fatalf("GET %s = %q from %s; stored on %s", k, b, resp.Header.Get("Kiln-Backend"), shard)
		}
	}
	if err := testbin.Interrupt(cmd, 60*time.Second); err != nil {
		t.Fatalf("kiln run --target docker after Ctrl-C: %v; want exit status 0", err)
	}
	if left := leftovers(t, c, "kv"); len(left) > 0 {
		t.Fatalf("left after Ctrl-C: %v", left)
	}
}

// TestDeployAndDownOnDocker leaves shop running with deploy and removes it
// with down, both from its kiln.hcl.
func TestDeployAndDownOnDocker(t *testing.T) {
	c := e2e.Docker(t)
	run := kiln(t)
	t.Cleanup(func() { run("down", "--target", "docker", "--app", "shop").Run() })
	out, err := run("deploy", "--target", "docker", "./examples/shop").Output()
	if err != nil {
		t.Fatalf("deploy --target docker: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`kiln: web serving at (http://127\.0\.0\.1:\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("deploy printed %s; want a serving line for web", out)
	}
	req, _ := http.NewRequest("PUT", string(m[1])+"/cart/ann", strings.NewReader(`["tea"]`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT through web after deploy returned: %v %v", resp, err)
	}
	out, err = run("down", "--target", "docker", "./examples/shop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kiln: shop is down") {
		t.Fatalf("down --target docker: %v\n%s", err, out)
	}
	if left := leftovers(t, c, "shop"); len(left) > 0 {
		t.Fatalf("left after down: %v", left)
	}
}
