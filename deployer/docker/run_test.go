package docker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// running is app under Run.
type running struct {
	urls map[string]string // by service
	logs *testbin.Buffer   // Options.Output
	stop func() error      // ends Run's context and returns what Run did
}

// startRun runs app under Run until the test ends, and returns once Run
// printed every service's URL.
func startRun(t *testing.T, app *spec.App, o Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	r := &running{urls: map[string]string{}, logs: &testbin.Buffer{}}
	o.Output = r.logs
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		err := Run(ctx, app, o, pw)
		pw.CloseWithError(fmt.Errorf("Run returned %v", err))
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	for len(r.urls) < len(app.Services) {
		if !sc.Scan() {
			cancel()
			t.Fatalf("Run printed %d URLs, then: %v; its output:\n%s", len(r.urls), sc.Err(), r.logs.String())
		}
		svc, u, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "kiln: "), " serving at ")
		if !ok {
			t.Fatalf("Run printed %q, want kiln: SERVICE serving at URL", sc.Text())
		}
		r.urls[svc] = u
	}
	go io.Copy(io.Discard, pr)
	t.Logf("Run(%s) serving after %s", app.Name, time.Since(start).Round(time.Millisecond))
	var stopped bool
	var err error
	r.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(90 * time.Second):
				err = fmt.Errorf("Run did not return within 90s of its context ending")
			}
		}
		return err
	}
	t.Cleanup(func() { r.stop() })
	return r
}

// waitFor polls cond every 50ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func kill(t *testing.T, e *Engine, app, pod, c string) time.Time {
	t.Helper()
	if _, err := e.c.ContainerKill(context.Background(), containerName(app, pod, c), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func TestRunRestartsALeafKilledThroughTheEngine(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "shop-rkill")
	r := startRun(t, named(example(t, "shop"), "shop-rkill"), Options{Image: im["shop"]})
	catalog := r.urls["catalog"]
	started := inspect(t, e, "shop-rkill", "catalog-leaf-1", containerApp).State.StartedAt
	killed := kill(t, e, "shop-rkill", "catalog-leaf-1", containerApp)
	// The pod's holder keeps leaf-1's socket, so the root's requests wait
	// for the restarted program, or, past the root's timeout, leave leaf-1
	// out: never worse.
	partial := watchCatalog(t, catalog, 30*time.Second, func() bool {
		ins := inspect(t, e, "shop-rkill", "catalog-leaf-1", containerApp)
		return ins.State.StartedAt != started && ins.State.Health != nil && ins.State.Health.Status == "healthy"
	})
	complete(t, catalog)
	t.Logf("leaf-1 restarted by Run, complete again %s after ContainerKill (an answer lacked it meanwhile: %v)", time.Since(killed).Round(time.Millisecond), partial)
	if ins := inspect(t, e, "shop-rkill", "catalog-leaf-1", containerApp); !ins.State.Running || ins.RestartCount != 0 {
		t.Errorf("leaf-1's program: running %v, %d engine restarts; want running again, started by Run (not the engine)", ins.State.Running, ins.RestartCount)
	}
	want := `msg="process exited; restarting" process=catalog/leaf-1 container=app status="exit status 137" in=100ms`
	if !strings.Contains(r.logs.String(), want) {
		t.Errorf("Run's output has no %q:\n%s", want, r.logs.String())
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// serving counts the "msg=serving" lines of each kv pod in out.
func serving(out string) map[string]int {
	n := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if p, rest, ok := strings.Cut(l, " | "); ok && strings.Contains(rest, "msg=serving") {
			n[p]++
		}
	}
	return n
}

func TestRunFollowsEveryPodsLinesAcrossRestarts(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-logs")
	r := startRun(t, named(example(t, "kv"), "kv-logs"), Options{Image: im["kv"]})
	pods := []string{"kv/shard-0", "kv/shard-1", "kv/shard-2", "kv/router-0"}
	all := func(want int) func() bool {
		return func() bool {
			n := serving(r.logs.String())
			for _, p := range pods {
				if n[p] < want {
					return false
				}
			}
			return true
		}
	}
	d := waitFor(t, 10*time.Second, "a msg=serving line of every pod of kv in Run's output", all(1))
	t.Logf("every pod's msg=serving line seen %s after Run printed its URL", d.Round(time.Millisecond))
	// Through the engine (restarted by Run) and by a crash of the router
	// (restarted by the engine's policy, when the host lets the test kill).
	kill(t, e, "kv-logs", "kv-shard-1", containerApp)
	d = waitFor(t, 15*time.Second, "a second msg=serving line of kv/shard-1", func() bool { return serving(r.logs.String())["kv/shard-1"] >= 2 })
	t.Logf("kv/shard-1's msg=serving line again %s after ContainerKill", d.Round(time.Millisecond))
	if n := serving(r.logs.String()); n["kv/shard-0"] != 1 || n["kv/shard-2"] != 1 || n["kv/router-0"] != 1 || n["kv/shard-1"] != 2 {
		t.Errorf("msg=serving lines by pod: %v, want each once and kv/shard-1 twice (no line repeated)", n)
	}
	if resp, body := do(t, "PUT", r.urls["kv"]+"/kv/a", "b"); resp.StatusCode != 204 {
		t.Errorf("PUT after the restart = %d %q", resp.StatusCode, body)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, e, "kv-logs"); len(left) > 0 {
		t.Errorf("after Run: %v, want nothing", left)
	}
}

func TestRunDoesNotRestartAContainerThatExits2(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-usage")
	app := named(example(t, "kv"), "kv-usage")
	app.Services[0].Sidecars = []spec.Container{{Name: "quit", Image: im["sidecar"], Args: []string{"exit", "2"}}}
	r := startRun(t, app, Options{Image: im["kv"]})
	want := `msg="process refuses its configuration; not restarting" process=kv/shard-0 container=quit status="exit status 2"`
	waitFor(t, 10*time.Second, "Run's line "+want, func() bool { return strings.Contains(r.logs.String(), want) })
	// The engine's policy may have restarted it before Run turned it off:
	// wait until it stays exited.
	var n int
	waitFor(t, 10*time.Second, "kv-shard-0's quit sidecar exited and not restarting; Run's output:\n"+r.logs.String(), func() bool {
		ins := inspect(t, e, "kv-usage", "kv-shard-0", "quit")
		done := !ins.State.Running && !ins.State.Restarting && ins.HostConfig.RestartPolicy.Name == "no"
		n = ins.RestartCount
		if !done {
			t.Logf("quit: running %v restarting %v policy %q restarts %d", ins.State.Running, ins.State.Restarting, ins.HostConfig.RestartPolicy.Name, n)
			time.Sleep(500 * time.Millisecond)
		}
		return done
	})
	time.Sleep(2 * time.Second)
	if ins := inspect(t, e, "kv-usage", "kv-shard-0", "quit"); ins.State.Running || ins.State.Restarting || ins.RestartCount != n || ins.State.ExitCode != 2 {
		t.Errorf("2s later the quit sidecar: running %v, restarting %v, %d restarts (was %d), status %d; want it left exited with 2",
			ins.State.Running, ins.State.Restarting, ins.RestartCount, n, ins.State.ExitCode)
	}
	if strings.Contains(r.logs.String(), "container=quit status=\"exit status 2\" in=") {
		t.Errorf("Run restarted the quit sidecar:\n%s", r.logs.String())
	}
}

// podWithInits gives kv's pods a volume "data" and two init containers
// and a sidecar that use it at other paths: the first init writes
// data/f, the second checks it, the sidecar checks it and writes
// data/f.sidecar.
func podWithInits(a *spec.App, image, check string) *spec.App {
	s := &a.Services[0]
	s.Volumes = []spec.Volume{{Name: "data", Path: "/data"}}
	s.Init = []spec.Container{
		{Name: "write", Image: image, Args: []string{"write", "/work/f", "hello"}, Mounts: []spec.Mount{{Volume: "data", Path: "/work"}}},
		{Name: "check", Image: image, Args: []string{"check", check, "hello"}, Mounts: []spec.Mount{{Volume: "data", Path: "/work"}}},
	}
	s.Sidecars = []spec.Container{{Name: "watch", Image: image, Args: []string{"watch", "/shared/f", "hello"}, Mounts: []spec.Mount{{Volume: "data", Path: "/shared"}}}}
	return a
}

func TestInitContainersRunInOrderBeforeTheProgram(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-init")
	apply(t, e, podWithInits(named(example(t, "kv"), "kv-init"), im["sidecar"], "/work/f"), Options{Image: im["kv"]})
	for _, pod := range []string{"kv-shard-0", "kv-shard-2"} {
		w, c, a := inspect(t, e, "kv-init", pod, "write"), inspect(t, e, "kv-init", pod, "check"), inspect(t, e, "kv-init", pod, containerApp)
		if w.State.ExitCode != 0 || c.State.ExitCode != 0 || w.State.Running || c.State.Running {
			t.Errorf("%s: init write exited %d, check %d; want both done with 0", pod, w.State.ExitCode, c.State.ExitCode)
		}
		if !(w.State.FinishedAt <= c.State.StartedAt && c.State.FinishedAt <= a.State.StartedAt) {
			t.Errorf("%s: write ran %s–%s, check %s–%s, program started %s; want them in that order", pod,
				w.State.StartedAt, w.State.FinishedAt, c.State.StartedAt, c.State.FinishedAt, a.State.StartedAt)
		}
	}
	side := inspect(t, e, "kv-init", "kv-shard-1", "watch")
	waitFor(t, 10*time.Second, "the watch sidecar's line that it wrote /shared/f.sidecar", func() bool {
		return strings.Contains(e.tail(context.Background(), side.ID), "wrote /shared/f.sidecar")
	})
	if logs := e.tail(context.Background(), side.ID); !strings.Contains(logs, `/shared/f holds "hello"`) || side.RestartCount != 0 {
		t.Errorf("the watch sidecar (%d restarts) said:\n%s\nwant that /shared/f holds hello", side.RestartCount, logs)
	}
}

func TestVolumesAreWritableByTheContainersUser(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-vol")
	app := named(example(t, "kv"), "kv-vol")
	app.Services[0].Volumes = []spec.Volume{{Name: "data", Path: "/data"}, {Name: "more", Path: "/more"}}
	app.Services[0].Sidecars = []spec.Container{{Name: "watch", Image: im["sidecar"], Args: []string{"write", "/more/f", "x"},
		Mounts: []spec.Mount{{Volume: "more", Path: "/more"}}}}
	// The sidecar writes and exits 0; the engine's policy then restarts
	// it, which is fine: each run writes again.
	apply(t, e, app, Options{Image: im["kv"]})
	side := inspect(t, e, "kv-vol", "kv-shard-0", "watch")
	waitFor(t, 10*time.Second, "the sidecar's line that it wrote /more/f", func() bool {
		return strings.Contains(e.tail(context.Background(), side.ID), "wrote /more/f")
	})
	if logs := e.tail(context.Background(), side.ID); strings.Contains(logs, "permission denied") {
		t.Errorf("writing into the volume as %s:\n%s", user, logs)
	}
	for _, v := range []string{"kiln-kv-vol-kv-shard-0-data", "kiln-kv-vol-kv-router-0-more"} {
		r, err := e.c.VolumeInspect(context.Background(), v, client.VolumeInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The engine's host is this one when its volumes are visible.
		if fi, err := os.Stat(r.Volume.Mountpoint); err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			if got := fmt.Sprintf("%d:%d", st.Uid, st.Gid); got != user || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s's root: owner %s, mode %s; want %s, 0755", v, got, fi.Mode().Perm(), user)
			}
		}
	}
	if left := leftovers(t, e, "kv-vol"); len(left) != 12+1+8 {
		t.Errorf("%d objects: %v; want 12 containers (no helper left), a network and 8 volumes", len(left), left)
	}
}

func TestAFailingInitContainerFailsApplyAndLeavesNothing(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-initfail")
	p, err := Render(podWithInits(named(example(t, "kv"), "kv-initfail"), im["sidecar"], "/work/missing"), Options{Image: im["kv"]})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Apply(context.Background(), p)
	// Pods start together: whichever pod's init fails first is named.
	m := regexp.MustCompile(`pod (kv-[a-z]+-\d): init container check exited with status 3`).FindStringSubmatch(fmt.Sprint(err))
	if err == nil || m == nil || !strings.Contains(err.Error(), `sidecar: /work/missing holds ""`) {
		t.Fatalf("Apply(an init that exits 3) = %v, want it to name the pod, check, status 3 and its last lines", err)
	}
	t.Logf("Apply: %v", err)
	// The other pods, started beside it, go too: this Apply made them.
	if left := leftovers(t, e, "kv-initfail"); len(left) > 0 {
		t.Errorf("after the failed init: %v, want no container, network or volume of kv-initfail", left)
	}
}

func TestAHostPortInUseFailsRunNamingItAndLeavesNothing(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-port")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	var logs testbin.Buffer
	err = Run(context.Background(), named(example(t, "kv"), "kv-port"), Options{Image: im["kv"], Port: port, Output: &logs}, io.Discard)
	want := fmt.Sprintf("docker: pod kv-router-0: cannot publish on host port 127.0.0.1:%d, which is in use or refused; choose another port (Options.Port; 0 picks a free one): ", port)
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "docker: ") != 1 {
		t.Fatalf("Run(Port %d, taken) = %v, want one error starting %q", port, err, want)
	}
	t.Logf("Run: %v", err)
	if left := leftovers(t, e, "kv-port"); len(left) > 0 {
		t.Errorf("after the failed Run: %v, want nothing", left)
	}
}

func TestConnectToNoEngineSaysWhere(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	e, err := Connect(ctx)
	if err == nil {
		e.Close()
		t.Fatal("Connect with DOCKER_HOST=unix:///nonexistent succeeded")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "docker: no Docker engine answers at unix:///nonexistent: ") || !strings.Contains(msg, "DOCKER_HOST") || !strings.Contains(msg, "no such file or directory") {
		t.Fatalf("Connect = %q, want one error naming unix:///nonexistent and DOCKER_HOST", msg)
	}
	t.Logf("Connect failed in %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestApplyRemovesAServiceTheAppNoLongerHas: an app of kv and spread
// loses spread; spread's pods go, and kv serves on. (kv's pods are
// recreated: their KILN_SERVICES changed, and a container's environment is
// fixed at its creation.)
func TestApplyRemovesAServiceTheAppNoLongerHas(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "two-prune")
	app := named(example(t, "kv"), "two-prune")
	app.Services = append(app.Services, example(t, "spread").Services[0])
	_, d := apply(t, e, app, Options{Images: map[string]string{"kv": im["kv"], "spread": im["spread"]}})
	if resp, _ := do(t, "PUT", url(t, d, "kv")+"/kv/a", "1"); resp.StatusCode != 204 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	onlyKV := *app
	onlyKV.Services = app.Services[:1]
	_, d = apply(t, e, &onlyKV, Options{Image: im["kv"]})
	for name := range ids(t, e, "two-prune") {
		if strings.Contains(name, "-spread-") {
			t.Errorf("%s is still there after spread left the app", name)
		}
	}
	if resp, _ := do(t, "PUT", url(t, d, "kv")+"/kv/a", "2"); resp.StatusCode != 204 {
		t.Fatalf("PUT after spread left: %d", resp.StatusCode)
	}
}

func TestRunRemovesWhatAKilledRunLeft(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-leftover")
	app := named(example(t, "kv"), "kv-leftover")
	// What a run killed with SIGKILL leaves: the whole topology.
	apply(t, e, app, Options{Image: im["kv"]})
	left := ids(t, e, "kv-leftover")
	r := startRun(t, app, Options{Image: im["kv"]})
	for name, id := range ids(t, e, "kv-leftover") {
		if left[name] == id {
			t.Errorf("%s is the killed run's container: Run should start from nothing", name)
		}
	}
	if resp, _ := do(t, "PUT", r.urls["kv"]+"/kv/a", "1"); resp.StatusCode != 204 {
		t.Fatalf("PUT through Run's topology: %d", resp.StatusCode)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if rest := leftovers(t, e, "kv-leftover"); len(rest) > 0 {
		t.Fatalf("after Run: %v", rest)
	}
}

// keyOn PUTs keys through kv until one lands on shard, and returns it.
func keyOn(t *testing.T, kv, shard string) string {
	t.Helper()
	for i := range 100 {
		k := fmt.Sprintf("k%d", i)
		if resp, _ := do(t, "PUT", kv+"/kv/"+k, "v"); resp.Header.Get(patterns.HeaderBackend) == shard {
			return k
		}
	}
	t.Fatalf("no key of 100 landed on %s", shard)
	return ""
}

// TestRunRecreatesAPodWhoseHolderDied: killing a shard's holder takes its
// pod's network with it; Run makes the pod again, and the shard's keys
// are answered by it once more (empty: a shard keeps its keys in memory).
func TestRunRecreatesAPodWhoseHolderDied(t *testing.T) {
	im := testImages(t)
	e := engineFor(t, "kv-holder")
	r := startRun(t, named(example(t, "kv"), "kv-holder"), Options{Image: im["kv"]})
	kv := r.urls["kv"]
	key := keyOn(t, kv, "shard-1")
	holder := inspect(t, e, "kv-holder", "kv-shard-1", containerHolder).ID
	killed := kill(t, e, "kv-holder", "kv-shard-1", containerHolder)
	// Each GET on a fresh connection: one kept alive to the old pod leads
	// nowhere.
	start := time.Now()
	for {
		resp, body, err := try("GET", kv+"/kv/"+key, 3*time.Second)
		if err == nil && resp.StatusCode == 404 && resp.Header.Get(patterns.HeaderBackend) == "shard-1" {
			break
		}
		if time.Since(start) > time.Minute {
			if err == nil {
				err = fmt.Errorf("%d %q from %q", resp.StatusCode, body, resp.Header.Get(patterns.HeaderBackend))
			}
			t.Fatalf("GET /kv/%s not answered by a new shard-1 within a minute of killing its holder; last: %v; Run's output:\n%s", key, err, r.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("kv/shard-1 answered again %s after its holder was killed", time.Since(killed).Round(time.Millisecond))
	if now := inspect(t, e, "kv-holder", "kv-shard-1", containerHolder).ID; now == holder {
		t.Errorf("kv-shard-1's holder is the killed one, %.12s; want a new pod", holder)
	}
	if resp, body := do(t, "PUT", kv+"/kv/"+key, "again"); resp.StatusCode != 204 || resp.Header.Get(patterns.HeaderBackend) != "shard-1" {
		t.Fatalf("PUT /kv/%s after the recreate = %d %q from %q, want 204 from shard-1", key, resp.StatusCode, body, resp.Header.Get(patterns.HeaderBackend))
	}
	if resp, body := do(t, "GET", kv+"/kv/"+key, ""); resp.StatusCode != 200 || body != "again" {
		t.Fatalf("GET /kv/%s after the recreate = %d %q, want 200 again", key, resp.StatusCode, body)
	}
	want := `msg="pod's holder exited; recreating the pod" process=kv/shard-1 container=holder status="exit status 137" in=100ms`
	if !strings.Contains(r.logs.String(), want) {
		t.Errorf("Run's output has no %q:\n%s", want, r.logs.String())
	}
	if strings.Contains(r.logs.String(), `msg="process exited; restarting" process=kv/shard-1`) {
		t.Errorf("Run restarted a container of the pod it recreated:\n%s", r.logs.String())
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, e, "kv-holder"); len(left) > 0 {
		t.Errorf("after Run: %v, want nothing", left)
	}
}
