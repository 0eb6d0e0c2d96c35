package docker

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/spec"
)

// roll renders app with o and rolls the engine over to it.
func roll(t *testing.T, e *Engine, app *spec.App, o Options, ro RollOptions) (*Plan, Swap, error) {
	t.Helper()
	p, err := Render(app, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	sw, err := e.Roll(ctx, p, ro)
	t.Logf("Roll(%s) in %s: replaced %v, recreated %v, started %v, stopped %v", app.Name, time.Since(start).Round(time.Millisecond), sw.Replaced, sw.Recreated, sw.Started, sw.Stopped)
	return p, sw, err
}

// pids maps each container name of app whose name has one of prefixes
// to its ID and its process's PID.
func pids(t *testing.T, e *Engine, app string, prefixes ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, id := range ids(t, e, app) {
		for _, p := range prefixes {
			if strings.HasPrefix(name, "/kiln-"+app+"-"+p) {
				ins, err := e.c.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				out[name] = fmt.Sprintf("%.12s pid %d", id, ins.Container.State.Pid)
			}
		}
	}
	return out
}

// processes are the names of w's pods: "catalog/leaf-0", …
func processes(p *Plan, service string) []string {
	var out []string
	for _, pod := range p.Pods {
		if pod.Service == service {
			out = append(out, pod.Process)
		}
	}
	return out
}

// TestRollReplacesChangedProgramsUnderLoadAndLeavesTheRestAlone rolls
// shop's catalog over to a new image three times while 200 requests a
// second reach web, which asks catalog: each roll replaces catalog's
// programs in place, keeping their holders and catalog's port; web's and
// carts' containers keep running as they were; no request fails.
func TestRollReplacesChangedProgramsUnderLoadAndLeavesTheRestAlone(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "shop-roll")
	// Shop with a catalog that waits for its leaves as long as the load's
	// clients wait, so that only a request the roll loses fails.
	app := named(example(t, "shop"), "shop-roll")
	app.Service("catalog").Scatter.Timeout = spec.Duration(patientTimeout)
	_, d := apply(t, e, app, Options{Image: im["shop-patient"]})
	web, catalog := url(t, d, "web"), url(t, d, "catalog")
	untouched := pids(t, e, "shop-roll", "web-", "carts-")
	if len(untouched) != 2*(3+4) {
		t.Fatalf("web and carts have %d containers, want 14: %v", len(untouched), untouched)
	}
	holders := func() map[string]string {
		out := map[string]string{}
		for _, pod := range []string{"catalog-leaf-0", "catalog-leaf-3", "catalog-root-0"} {
			ins := inspect(t, e, "shop-roll", pod, containerHolder)
			out[pod] = fmt.Sprintf("%.12s pid %d", ins.ID, ins.State.Pid)
		}
		return out
	}
	catalogHolders := holders()

	stopLoad := testbin.StartPaced(web+"/find?q=tea", 200, 5*time.Second)
	defer stopLoad()
	loadStart := time.Now()
	time.Sleep(time.Second)
	for i, image := range []string{im["shop-patient-b"], im["shop-patient"], im["shop-patient-b"]} {
		t.Logf("roll %d starts %s into the load", i+1, time.Since(loadStart).Round(time.Millisecond))
		p, sw, err := roll(t, e, app, Options{Image: im["shop-patient"], Images: map[string]string{"catalog": image}}, RollOptions{})
		if err != nil {
			t.Fatalf("roll %d: %v", i+1, err)
		}
		if want := processes(p, "catalog"); !slices.Equal(sw.Replaced, want) || len(sw.Recreated)+len(sw.Started)+len(sw.Stopped) > 0 {
			t.Fatalf("roll %d = %+v, want catalog's %v replaced and nothing else", i+1, sw, want)
		}
		if got := url(t, sw.Endpoints, "catalog"); got != catalog {
			t.Errorf("roll %d: catalog at %s, was %s; want its port kept", i+1, got, catalog)
		}
		for _, pod := range p.Pods {
			if pod.Service != "catalog" {
				continue
			}
			ins := inspect(t, e, "shop-roll", pod.Name, containerApp)
			if ins.Config.Labels[LabelSpecHash] != pod.Hash || !ins.State.Running {
				t.Errorf("roll %d: %s's program runs the plan %s (running %v), want %s", i+1, pod.Name, ins.Config.Labels[LabelSpecHash], ins.State.Running, pod.Hash)
			}
		}
	}
	time.Sleep(time.Second) // load on the last programs too
	l := stopLoad()
	t.Logf("load across three rolls: %d answered, %d failed", l.OK, l.Failed)
	if err := l.Check(500); err != nil {
		t.Errorf("load across three rolls: %v", err)
	}
	if after := pids(t, e, "shop-roll", "web-", "carts-"); fmt.Sprint(after) != fmt.Sprint(untouched) {
		t.Errorf("web's and carts' containers after the rolls:\n%v\nwere\n%v\nwant them untouched", after, untouched)
	}
	if after := holders(); fmt.Sprint(after) != fmt.Sprint(catalogHolders) {
		t.Errorf("catalog's holders after the rolls: %v, were %v; want them kept", after, catalogHolders)
	}
	resp, body := do(t, "GET", web+"/find?q=tea", "")
	if got := productNames(t, body); resp.StatusCode != 200 || len(got) != 4 || resp.Header.Get("Kiln-Missing") != "" {
		t.Errorf("GET /find?q=tea after the rolls = %d %v (missing %q), want the 4 teas", resp.StatusCode, got, resp.Header.Get("Kiln-Missing"))
	}
}

// TestRollKeepsTheOldProgramWhenTheNewOneDoesNotServe: a new program that
// never says it serves (an image that is not a kiln program, whose probe
// the old program would pass) and one that exits are each removed, with
// the reason, and kv keeps serving from the containers it had.
func TestRollKeepsTheOldProgramWhenTheNewOneDoesNotServe(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-rollback")
	app := named(example(t, "kv"), "kv-rollback")
	_, d := apply(t, e, app, Options{Image: im["kv"]})
	kv := url(t, d, "kv")
	if resp, _ := do(t, "PUT", kv+"/kv/a", "b"); resp.StatusCode != 204 {
		t.Fatalf("PUT /kv/a = %d, want 204", resp.StatusCode)
	}
	before := ids(t, e, "kv-rollback")
	stopLoad := testbin.StartPaced(kv+"/kv/a", 200, 5*time.Second)
	defer stopLoad()
	refuses := func(p *Plan) {
		// shard-0 names a service its program does not have: exit 2.
		pod := &p.Pods[0]
		for i, kv := range pod.Env {
			if strings.HasPrefix(kv, "KILN_SERVICE=") {
				pod.Env[i] = "KILN_SERVICE=nosuch"
			}
		}
		pod.Hash = pod.hash()
	}
	for _, tc := range []struct {
		name   string
		image  string
		change func(*Plan)
		want   []string
	}{
		{"an image that is not a kiln program", im["sidecar"], nil, []string{"pod kv-shard-0: its new program did not say it serves within 4s; the old one keeps serving", "sidecar: "}},
		{"a program that refuses its configuration", im["kv"], refuses, []string{"pod kv-shard-0: its new program exited with status 2 before it served; the old one keeps serving", `KILN_SERVICE="nosuch" names no service`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Render(app, Options{Image: tc.image})
			if err != nil {
				t.Fatal(err)
			}
			if tc.change != nil {
				tc.change(p)
			}
			start := time.Now()
			sw, err := e.Roll(context.Background(), p, RollOptions{ReadyTimeout: 4 * time.Second})
			t.Logf("Roll failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Roll = %v, want an error with %q", err, w)
				}
			}
			if sw.Changed() {
				t.Errorf("Roll = %+v, want nothing done", sw)
			}
			if after := ids(t, e, "kv-rollback"); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("containers after the failed Roll:\n%v\nwant those before:\n%v", after, before)
			}
			if resp, body := do(t, "GET", kv+"/kv/a", ""); resp.StatusCode != 200 || body != "b" {
				t.Errorf("GET /kv/a after the failed Roll = %d %q, want 200 b", resp.StatusCode, body)
			}
		})
	}
	l := stopLoad()
	t.Logf("load across the failed rolls: %d answered, %d failed", l.OK, l.Failed)
	if err := l.Check(0); err != nil {
		t.Errorf("load across the failed rolls: %v", err)
	}
}

// TestRollAddsAndRemovesShardsBehindTheRouter: a fourth shard is started
// before the router is replaced to route to it, and removed after the
// router is replaced to route to three again, with no request failing;
// a sidecar, which changes what every pod is made of, recreates them,
// the entry on its port.
func TestRollAddsAndRemovesShardsBehindTheRouter(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-reshard")
	app := named(example(t, "kv"), "kv-reshard")
	_, d := apply(t, e, app, Options{Image: im["kv"]})
	kv := url(t, d, "kv")
	stopLoad := testbin.StartPaced(kv+"/kv/x", 200, 5*time.Second)
	defer stopLoad()
	o := Options{Image: im["kv"]}
	app.Services[0].Shard.Shards = 4
	_, sw, err := roll(t, e, app, o, RollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Every shard's KILN_COUNT changed too.
	if want := []string{"kv/shard-0", "kv/shard-1", "kv/shard-2", "kv/router-0"}; !slices.Equal(sw.Replaced, want) || !slices.Equal(sw.Started, []string{"kv/shard-3"}) || len(sw.Stopped)+len(sw.Recreated) > 0 {
		t.Errorf("Roll to 4 shards = %+v, want kv/shard-3 started and %v replaced", sw, want)
	}
	app.Services[0].Shard.Shards = 3
	_, sw, err = roll(t, e, app, o, RollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sw.Stopped, []string{"kv/shard-3"}) || len(sw.Replaced) != 4 || len(sw.Started)+len(sw.Recreated) > 0 {
		t.Errorf("Roll back to 3 shards = %+v, want kv/shard-3 stopped and 4 replaced", sw)
	}
	if left := ids(t, e, "kv-reshard"); left["/kiln-kv-reshard-kv-shard-3"] != "" || len(left) != 8 {
		t.Errorf("after the roll to 3 shards: %v, want shard-3's containers gone", left)
	}
	l := stopLoad()
	t.Logf("load across two reshardings: %d answered, %d failed", l.OK, l.Failed)
	if err := l.Check(0); err != nil {
		t.Errorf("load across two reshardings: %v", err)
	}

	app.Services[0].Sidecars = []spec.Container{{Name: "prober", Image: im["sidecar"]}}
	_, sw, err = roll(t, e, app, o, RollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sw.Recreated) != 4 || len(sw.Replaced)+len(sw.Started)+len(sw.Stopped) > 0 {
		t.Errorf("Roll adding a sidecar = %+v, want all 4 pods recreated", sw)
	}
	if got := url(t, sw.Endpoints, "kv"); got != kv {
		t.Errorf("after recreating the router's pod kv is at %s, was %s; want its port kept", got, kv)
	}
	if resp, _ := do(t, "PUT", kv+"/kv/a", "b"); resp.StatusCode != 204 {
		t.Errorf("PUT /kv/a after the pods were recreated = %d, want 204", resp.StatusCode)
	}
}

// TestFollowFromBeforeApplySeesEveryProgramStart is how kiln dev follows
// the programs: from before they are created, every one's serving line is
// copied, prefixed with its process.
func TestFollowFromBeforeApplySeesEveryProgramStart(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-follow")
	ctx, cancel := context.WithCancel(context.Background())
	var logs testbin.Buffer
	followed := make(chan struct{})
	go func() { e.Follow(ctx, "kv-follow", &logs); close(followed) }()
	apply(t, e, named(example(t, "kv"), "kv-follow"), Options{Image: im["kv"]})
	time.Sleep(1500 * time.Millisecond) // Follow looks for containers each second
	cancel()
	<-followed
	for _, p := range []string{"kv/shard-0", "kv/shard-1", "kv/shard-2", "kv/router-0"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(p) + ` \| time=\S+ level=INFO msg=serving `).MatchString(logs.String()) {
			t.Errorf("Follow copied:\n%s\nwant %s's serving line", logs.String(), p)
		}
	}
}
