// Tests that run every example as real processes on the local target.
package examples_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/internal/testbin/generated"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// bins are the example binaries, built once.
var bins = map[string]string{}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "kiln-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, name := range []string{"hello", "kv", "search", "spread", "shop", "report", "compactor", "kvstore"} {
		bin, err := testbin.Build(dir, "./examples/"+name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bins[name] = bin
		// The annotated twin, built the way kiln builds it.
		if bin, err = generated.Build(dir, "./examples/annotated/"+name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bins["annotated/"+name] = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var client = &http.Client{Timeout: 10 * time.Second}

func do(t *testing.T, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// describe asks an example binary for its spec.
func describe(t *testing.T, bin string, env ...string) *spec.App {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), "KILN_ROLE=describe"), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("describe %s: %v", bin, err)
	}
	app, err := spec.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// deploy starts an example's topology through the local deployer, the way
// its driver does, and stops it when the test ends.
func deploy(t *testing.T, name string, env ...string) (*local.Deployment, string) {
	t.Helper()
	return deployTo(t, name, testWriter{t}, env...)
}

// deployTo is deploy with the processes' output going to out.
func deployTo(t *testing.T, name string, out io.Writer, env ...string) (*local.Deployment, string) {
	t.Helper()
	app := describe(t, bins[name], env...)
	topo, err := patterns.Build(app)
	if err != nil {
		t.Fatal(err)
	}
	// Each test keeps its app's state apart, unless env names a place.
	state := t.TempDir()
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, local.EnvStateDir+"="); ok {
			state = v
		}
	}
	d, err := local.Start(context.Background(), topo, local.Options{
		Binary:   bins[name],
		Env:      append(os.Environ(), env...),
		Output:   out,
		StateDir: state,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d, d.Endpoints()[0].URL
}

// testWriter sends process output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func process(t *testing.T, d *local.Deployment, name string) local.Process {
	t.Helper()
	for _, p := range d.Processes() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no process %s in %v", name, d.Processes())
	return local.Process{}
}

// forms runs test on the SDK form of an example and on its annotated twin.
func forms(t *testing.T, name string, test func(t *testing.T, name string)) {
	for _, n := range []string{name, "annotated/" + name} {
		t.Run(n, func(t *testing.T) { test(t, n) })
	}
}

func TestDescribeMatchesGolden(t *testing.T) {
	for name, bin := range bins {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(), "KILN_ROLE=describe")
			got, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			// An annotated twin describes itself as its SDK form does.
			golden.Check(t, strings.TrimPrefix(name, "annotated/")+".json", got)
		})
	}
}

func TestKVSameKeySameShard(t *testing.T) {
	forms(t, "kv", func(t *testing.T, form string) {
		_, url := deploy(t, form)
		const keys = 1000
		shardOf := map[string]string{}
		perShard := map[string]int{}
		for i := range keys {
			key := fmt.Sprintf("user-%d", i)
			resp, _ := do(t, "PUT", url+"/kv/"+key, "value-"+key)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("PUT %s: %d", key, resp.StatusCode)
			}
			shardOf[key] = resp.Header.Get(patterns.HeaderBackend)
			perShard[shardOf[key]]++
		}
		for i := range keys {
			key := fmt.Sprintf("user-%d", i)
			resp, body := do(t, "GET", url+"/kv/"+key, "")
			if resp.StatusCode != 200 || body != "value-"+key {
				t.Fatalf("GET %s = %d %q: the key did not come back from the shard it was stored on", key, resp.StatusCode, body)
			}
			if got := resp.Header.Get(patterns.HeaderBackend); got != shardOf[key] {
				t.Fatalf("%s: stored on %s, read from %s", key, shardOf[key], got)
			}
		}
		if len(perShard) != 3 {
			t.Fatalf("keys reached only %v", perShard)
		}
		for shard, n := range perShard {
			if n < keys/10 {
				t.Errorf("%s got only %d of %d keys", shard, n, keys)
			}
		}
		if resp, _ := do(t, "GET", url+"/kv/never-stored", ""); resp.StatusCode != 404 {
			t.Errorf("absent key: %d, want 404", resp.StatusCode)
		}
		if resp, body := do(t, "GET", url+"/kv", ""); resp.StatusCode != 400 || !strings.Contains(body, "path segment 2") {
			t.Errorf("no key: %d %q, want 400 naming the key rule", resp.StatusCode, body)
		}
	})
}

func TestKVReshardingMovesFewKeys(t *testing.T) {
	placement := func(shards string) map[string]string {
		_, url := deploy(t, "kv", "KV_SHARDS="+shards)
		out := map[string]string{}
		for i := range 1000 {
			key := fmt.Sprintf("k%d", i)
			resp, _ := do(t, "GET", url+"/kv/"+key, "")
			out[key] = resp.Header.Get(patterns.HeaderBackend)
		}
		return out
	}
	four, five := placement("4"), placement("5")
	moved := 0
	for k, s := range four {
		if five[k] != s {
			moved++
			if five[k] != "shard-4" {
				t.Fatalf("%s moved from %s to %s; a new shard should only take keys", k, s, five[k])
			}
		}
	}
	t.Logf("4→5 shards moved %d of 1000 keys", moved)
	if moved > 300 || moved < 100 {
		t.Fatalf("4→5 shards moved %d of 1000 keys; want about 200 and at most 300", moved)
	}
}

func words(t *testing.T, body string) []string {
	t.Helper()
	var ws []string
	if err := json.Unmarshal([]byte(body), &ws); err != nil {
		t.Fatalf("answer %q is not a JSON array of words: %v", body, err)
	}
	slices.Sort(ws)
	return ws
}

func TestSearchGathersEveryLeafAndSurvivesAHungLeaf(t *testing.T) {
	forms(t, "search", func(t *testing.T, form string) {
		d, url := deploy(t, form)
		// A single leaf of one holds the whole list: the reference answer.
		ref := map[string][]string{}
		for _, q := range []string{"", "b", "s", "zz"} {
			ref[q] = leafSearch(t, q, 0, 1)
		}
		for q, want := range ref {
			resp, body := do(t, "GET", url+"/search?q="+q, "")
			if got := words(t, body); !slices.Equal(got, want) {
				t.Fatalf("q=%q: got %v\nwant %v", q, got, want)
			}
			if b := resp.Header.Get(patterns.HeaderBackend); b != "leaf-0,leaf-1,leaf-2,leaf-3" {
				t.Fatalf("q=%q answered by %q", q, b)
			}
		}

		// Freeze leaf 2: to the root it is a leaf that stopped answering.
		leaf := process(t, d, "search/leaf-2")
		freeze(t, leaf.PID)
		defer syscall.Kill(leaf.PID, syscall.SIGCONT)
		timeout := describe(t, bins["search"]).Services[0].Scatter.Timeout.D()
		start := time.Now()
		resp, body := do(t, "GET", url+"/search?q=", "")
		took := time.Since(start)
		if resp.StatusCode != 200 || resp.Header.Get(patterns.HeaderMissing) != "leaf-2" {
			t.Fatalf("with leaf-2 hung: %d, %s=%q; want 200 naming leaf-2", resp.StatusCode, patterns.HeaderMissing, resp.Header.Get(patterns.HeaderMissing))
		}
		if took > timeout+time.Second {
			t.Fatalf("partial answer took %s; the leaf timeout is %s", took, timeout)
		}
		leaf2 := leafSearch(t, "", 2, 4)
		want := slices.DeleteFunc(slices.Clone(ref[""]), func(w string) bool { return slices.Contains(leaf2, w) })
		if got := words(t, body); !slices.Equal(got, want) {
			t.Fatalf("partial answer %v; want every word but leaf-2's %v", got, leaf2)
		}
		t.Logf("partial answer naming leaf-2 after %s (timeout %s)", took, timeout)
	})
}

// leafSearch asks a search leaf started on its own as leaf index of count.
func leafSearch(t *testing.T, q string, index, count int) []string {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bins["search"])
	cmd.Env = append(os.Environ(), "KILN_ROLE=leaf", "KILN_SERVICE=search",
		fmt.Sprintf("KILN_INDEX=%d", index), fmt.Sprintf("KILN_COUNT=%d", count), "KILN_ADDR="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get("http://" + addr + "/search?q=" + q)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return words(t, string(b))
	}
	t.Fatal("search leaf did not start")
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestHelloRoundRobin(t *testing.T) {
	forms(t, "hello", func(t *testing.T, form string) {
		_, url := deploy(t, form)
		count := map[string]int{}
		for range 9 {
			resp, body := do(t, "GET", url+"/?name=kiln", "")
			backend := resp.Header.Get(patterns.HeaderBackend)
			if want := fmt.Sprintf("hello, kiln, from replica %s\n", strings.TrimPrefix(backend, "replica-")); body != want {
				t.Fatalf("%s answered %q, want %q", backend, body, want)
			}
			count[backend]++
		}
		if len(count) != 3 || count["replica-0"] != 3 || count["replica-1"] != 3 || count["replica-2"] != 3 {
			t.Fatalf("9 requests spread as %v; want 3 per replica", count)
		}
	})
}

func TestSpreadUsesEveryReplica(t *testing.T) {
	forms(t, "spread", func(t *testing.T, form string) {
		_, url := deploy(t, form)
		var mu sync.Mutex
		count := map[string]int{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 10 {
					resp, _ := do(t, "GET", url+"/?ms=20", "")
					mu.Lock()
					count[resp.Header.Get(patterns.HeaderBackend)]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(count) != 4 {
			t.Fatalf("80 concurrent requests reached only %v", count)
		}
	})
}

func TestCrashedLeafIsRestarted(t *testing.T) {
	d, url := deploy(t, "kv")
	before := process(t, d, "kv/shard-1")
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Keys of shard 1 are answered again (empty: the store is in memory).
	key := keyOn(t, "shard-1", 3)
	resp, _ := do(t, "GET", url+"/kv/"+key, "")
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get(patterns.HeaderBackend) != "shard-1" {
		t.Fatalf("after the crash: %d from %s; want 404 from a restarted shard-1", resp.StatusCode, resp.Header.Get(patterns.HeaderBackend))
	}
	after := process(t, d, "kv/shard-1")
	if after.Restarts < 1 || after.PID == before.PID || after.PID == 0 {
		t.Fatalf("shard-1 was not restarted: before %+v, after %+v", before, after)
	}
}

// keyOn finds a key that lands on shard of n.
func keyOn(t *testing.T, shard string, n int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("k%d", i)
		if fmt.Sprintf("shard-%d", patterns.ShardOf(k, n)) == shard {
			return k
		}
	}
}

// TestSIGTERMUnderLoadLosesNothing sends SIGTERM to the router while
// requests are in flight: they finish, and the requests that arrive while it
// restarts wait in its socket instead of failing.
func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	d, url := deploy(t, "spread")
	router := process(t, d, "spread/router-0")
	stop := make(chan struct{})
	loaded := make(chan testbin.Loaded, 1)
	go func() { loaded <- testbin.Load(url+"/?ms=50", 8, 10*time.Second, stop) }()
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(router.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	l := <-loaded
	if l.Failed > 0 {
		t.Fatalf("%d of %d requests failed around SIGTERM; first: %v", l.Failed, l.Failed+l.OK, l.First)
	}
	if after := process(t, d, "spread/router-0"); after.PID == router.PID {
		t.Fatalf("the router was not replaced")
	}
	t.Logf("%d requests, none lost, across the router's SIGTERM and restart", l.OK)
}

// startDriver runs an example the way a developer does and waits for its
// serving line. mark tags every process of the topology through the
// environment, so the test can look for leftovers.
func startDriver(t *testing.T, bin, mark string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KILN_TEST_MARK="+mark)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		m := servingLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("first line %q is not a serving line", line)
		}
		return cmd, m[1]
	case <-time.After(60 * time.Second):
		t.Fatal("no serving line within 60s")
	}
	return nil, ""
}

var servingLine = regexp.MustCompile(`^kiln: \w+ serving at (http://127\.0\.0\.1:\d+)$`)

// marked lists the PIDs whose environment holds KILN_TEST_MARK=mark.
func marked(mark string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(env), "\x00"), "KILN_TEST_MARK="+mark) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitNoneMarked(t *testing.T, mark string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := marked(mark)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left running: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDriverCtrlCLeavesNothingBehind(t *testing.T) {
	mark := fmt.Sprintf("ctrlc-%d", time.Now().UnixNano())
	port := freeAddr(t)[len("127.0.0.1:"):]
	cmd, url := startDriver(t, bins["kv"], mark, "--port", port)
	if url != "http://127.0.0.1:"+port {
		t.Fatalf("serving at %s, want port %s from --port", url, port)
	}
	if resp, _ := do(t, "PUT", url+"/kv/a", "1"); resp.StatusCode != 204 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	if n := len(marked(mark)); n != 5 {
		t.Fatalf("%d processes run; want the driver, a router and 3 shards", n)
	}
	if err := testbin.Interrupt(cmd, 20*time.Second); err != nil {
		t.Fatalf("driver after Ctrl-C: %v; want exit status 0", err)
	}
	waitNoneMarked(t, mark, time.Second)
}

func TestKilledDriverTakesItsProcessesAlong(t *testing.T) {
	mark := fmt.Sprintf("kill-%d", time.Now().UnixNano())
	cmd, _ := startDriver(t, bins["search"], mark)
	if n := len(marked(mark)); n != 6 {
		t.Fatalf("%d processes run; want the driver, a root and 4 leaves", n)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitNoneMarked(t, mark, 5*time.Second)
}

func TestImageBinaryOnlyServesRoles(t *testing.T) {
	bin, err := testbin.Build(t.TempDir(), "./examples/kv", "-tags", "kiln_image")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("image binary without a role: %v; want exit status 2", err)
	}
	if !strings.Contains(string(out), "serves roles only") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("output %q; want one line saying it serves roles only", out)
	}
}

// TestImagesCarryKubernetesCodeOnlyWhenTheyTakeLeases: client-go is what
// an image of a service with leases needs to take them on Kubernetes, and
// some 28 MB that no other image carries.
func TestImagesCarryKubernetesCodeOnlyWhenTheyTakeLeases(t *testing.T) {
	deps := func(tags, pkg string) string {
		cmd := exec.Command("go", "list", "-deps", "-tags", tags, pkg)
		cmd.Dir = ".." // the module root: pkg is ./examples/NAME
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		return string(out)
	}
	for _, tc := range []struct {
		tags, pkg string
		want      bool
	}{
		{"kiln_image", "./examples/hello", false},
		{"kiln_image", "./examples/compactor", false},
		{"kiln_image,kiln_kube", "./examples/compactor", true},
		{"kiln_image,kiln_kube,kiln_unikernel", "./examples/compactor", false},
		{"", "./examples/compactor", false}, // the driver's build
	} {
		if got := strings.Contains(deps(tc.tags, tc.pkg), "k8s.io/client-go/tools/leaderelection"); got != tc.want {
			t.Errorf("go list -deps -tags %q %s has client-go's leaderelection: %v, want %v", tc.tags, tc.pkg, got, tc.want)
		}
	}
}

// TestProbeAndPauseModes: the binary is its own health check (images FROM
// scratch have no curl) and its own pod holder on targets without pods.
func TestProbeAndPauseModes(t *testing.T) {
	addr := freeAddr(t)
	leaf := exec.Command(bins["hello"])
	leaf.Env = append(os.Environ(), "KILN_ROLE=replica", "KILN_SERVICE=hello", "KILN_ADDR="+addr)
	if err := leaf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { leaf.Process.Kill(); leaf.Wait() }()
	probe := func(url string) error { return exec.Command(bins["hello"], patterns.ProbeArg, url).Run() }
	deadline := time.Now().Add(10 * time.Second)
	for probe("http://"+addr+"/readyz") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the probe never saw the replica ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := probe("http://" + freeAddr(t) + "/readyz"); err == nil {
		t.Fatal("the probe of a port nobody serves exited 0")
	}

	pause := exec.Command(bins["hello"])
	pause.Env = append(os.Environ(), "KILN_ROLE=pause")
	if err := pause.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pause.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("pause exited by itself: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	pause.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause after SIGTERM: %v; want exit status 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pause did not stop on SIGTERM")
	}
}

// TestHolderKeepsThePodSocketAcrossAProgramRestart: the pause role can hold
// a pod's listening socket and hand it to the program, so a request made
// while the program is down waits in the socket's queue and is answered by
// the next program, instead of being refused.
func TestHolderKeepsThePodSocketAcrossAProgramRestart(t *testing.T) {
	addr := freeAddr(t)
	from := fmt.Sprintf("@kiln-test-%d", time.Now().UnixNano())
	env := append(os.Environ(), "KILN_ADDR="+addr, "KILN_LISTEN_FROM="+from)
	holder := exec.Command(bins["hello"])
	holder.Env = append(slices.Clone(env), "KILN_ROLE=pause")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	program := func() *exec.Cmd {
		cmd := exec.Command(bins["hello"])
		cmd.Env = append(slices.Clone(env), "KILN_ROLE=replica", "KILN_SERVICE=hello", "KILN_INDEX=4")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := program()
	for deadline := time.Now().Add(10 * time.Second); !patterns.Ready(context.Background(), client, "http://"+addr+"/readyz"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the program never answered on the held socket")
		}
	}
	if resp, body := do(t, "GET", "http://"+addr+"/", ""); resp.StatusCode != 200 || !strings.Contains(body, "replica 4") {
		t.Fatalf("through the held socket: %d %q", resp.StatusCode, body)
	}
	first.Process.Kill()
	first.Wait()
	answered := make(chan string, 1)
	go func() {
		resp, err := client.Get("http://" + addr + "/?name=waiting")
		if err != nil {
			answered <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- string(b)
	}()
	time.Sleep(300 * time.Millisecond) // the program is down
	second := program()
	defer func() { second.Process.Kill(); second.Wait() }()
	select {
	case got := <-answered:
		if got != "hello, waiting, from replica 4\n" {
			t.Fatalf("the request made while the program was down got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request made while the program was down was never answered")
	}
}

// freeze stops pid with SIGSTOP and returns once every thread of it is
// stopped: kill returns before a thread busy in the kernel has stopped,
// and such a thread could still answer a request.
func freeze(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		stopped := len(tasks) > 0
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			// The state follows the command name, which is in parentheses.
			if i := strings.LastIndexByte(string(b), ')'); err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not stop within 5s of SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReportRunWritesOneSummary(t *testing.T) {
	forms(t, "report", func(t *testing.T, form string) {
		dir := t.TempDir()
		for name, body := range map[string]string{"a.txt": "12345", "b.txt": "123"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// One run, as the driver starts each one the schedule makes due.
		cmd := exec.Command(bins[form])
		cmd.Env = append(os.Environ(), "KILN_ROLE=job", "KILN_SERVICE=report", "KILN_INDEX=0", "KILN_COUNT=1", "REPORT_DIR="+dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("a run of %s: %v", form, err)
		}
		var got struct {
			Files int   `json:"files"`
			Bytes int64 `json:"bytes"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("a run printed %q, want one JSON summary: %v", out, err)
		}
		if got.Files != 2 || got.Bytes != 8 {
			t.Errorf("summary of %s = %d files of %d bytes, want 2 of 8", dir, got.Files, got.Bytes)
		}
	})
}
