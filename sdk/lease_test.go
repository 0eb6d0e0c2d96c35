package sdk_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
)

// locker starts the driver of sdk/testdata/locker, as go run does, and
// returns its entry URL and the directory of its events file. The driver
// is interrupted when the test ends.
func locker(t *testing.T) (url, dir string, out *testbin.Buffer) {
	t.Helper()
	dir = t.TempDir()
	bin, err := testbin.Build(dir, "./sdk/testdata/locker")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DIR="+dir, "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	out = &testbin.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testbin.Interrupt(cmd, 15*time.Second) })
	re := regexp.MustCompile(`kiln: locker serving at (\S+)`)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], dir, out
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("no serving line within 20s:\n%s", out.String())
		}
	}
}

// event is one line of the locker's events file.
type event struct {
	what  string // acquire or release
	pid   int
	token uint64
	at    int64 // unix nanoseconds
}

func events(t *testing.T, dir string) []event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "events"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		token, _ := strconv.ParseUint(f[2], 10, 64)
		at, _ := strconv.ParseInt(f[3], 10, 64)
		out = append(out, event{f[0], pid, token, at})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
}

// firstHolder waits for the first acquisition in dir's events.
func firstHolder(t *testing.T, dir string, out *testbin.Buffer) event {
	t.Helper()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if evs := events(t, dir); len(evs) > 0 {
			return evs[0]
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("nobody took the lock within 10s:\n%s", out.String())
		}
	}
}

func lock(t *testing.T, url, hold string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/lock?hold="+hold, "", nil)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestALockIsHeldByOneReplicaAtATimeWithGrowingTokens(t *testing.T) {
	url, dir, _ := locker(t)
	var wg sync.WaitGroup
	for range 9 { // three per replica, through the round-robin entry
		wg.Go(func() {
			if status, body := lock(t, url, "30ms"); status != http.StatusOK {
				t.Errorf("POST /lock = %d %s", status, body)
			}
		})
	}
	wg.Wait()
	evs := events(t, dir)
	if len(evs) != 18 {
		t.Fatalf("%d events, want 9 acquisitions and 9 releases: %v", len(evs), evs)
	}
	pids := map[int]bool{}
	var last uint64
	for i := 0; i < len(evs); i += 2 {
		acq, rel := evs[i], evs[i+1]
		if acq.what != "acquire" || rel.what != "release" || acq.pid != rel.pid || acq.token != rel.token {
			t.Fatalf("events %d and %d = %+v, %+v: want one holder's acquire then its release, no one else in between", i, i+1, acq, rel)
		}
		if acq.token <= last {
			t.Errorf("token %d after %d, want each acquisition's larger", acq.token, last)
		}
		last = acq.token
		pids[acq.pid] = true
	}
	if len(pids) != 3 {
		t.Errorf("%d replicas took the lock, want all 3", len(pids))
	}
}

func TestALockHeldByAKilledReplicaIsFreedAtOnce(t *testing.T) {
	url, dir, out := locker(t)
	go lock(t, url, "1m") // never answers: its replica is killed
	holder := firstHolder(t, dir, out)
	if err := syscall.Kill(holder.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	status, body := lock(t, url, "1ms")
	waited := time.Since(killed)
	if status != http.StatusOK {
		t.Fatalf("POST /lock after the holder was killed = %d %s", status, body)
	}
	// The lease lasts 2s; the driver frees a dead holder's lease sooner.
	t.Logf("the lock was taken again %s after its holder was killed", waited.Round(time.Millisecond))
	if waited > 2*time.Second {
		t.Errorf("the lock was taken again %s after its holder was killed, want within the lease's 2s", waited)
	}
	if token, _ := strconv.ParseUint(body, 10, 64); token <= holder.token {
		t.Errorf("the next holder's token = %s, want more than the killed holder's %d", body, holder.token)
	}
}

func TestALockHeldByAFrozenReplicaIsFreedWhenItsLeaseExpires(t *testing.T) {
	url, dir, out := locker(t)
	go lock(t, url, "1m")
	holder := firstHolder(t, dir, out)
	// A frozen process neither exits nor renews: only expiry frees it.
	if err := syscall.Kill(holder.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	defer syscall.Kill(holder.pid, syscall.SIGCONT)
	// Straight to another replica: the entry may route to the frozen one.
	other := regexp.MustCompile(`msg=serving role=replica service=locker index=\d addr=(\S+) pid=(\d+)`)
	var addr string
	for _, m := range other.FindAllStringSubmatch(out.String(), -1) {
		if m[2] != strconv.Itoa(holder.pid) {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("no serving line of another replica:\n%s", out.String())
	}
	status, body := lock(t, "http://"+addr, "1ms")
	waited := time.Since(frozen)
	if status != http.StatusOK {
		t.Fatalf("POST /lock while the holder is frozen = %d %s", status, body)
	}
	t.Logf("the lock was taken again %s after its holder froze", waited.Round(time.Millisecond))
	if waited > 3*time.Second {
		t.Errorf("the lock was taken again %s after its holder froze, want about the lease's 2s", waited)
	}
	syscall.Kill(holder.pid, syscall.SIGCONT)
	// Thawed, the old holder learns it lost the lease and lets go.
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		evs := events(t, dir)
		if e := evs[len(evs)-1]; e.what == "release" && e.pid == holder.pid {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the thawed holder did not notice it lost the lock: %v", evs)
		}
	}
}

func TestALockTheServiceDoesNotDeclareSaysWhichItDoes(t *testing.T) {
	url, _, _ := locker(t)
	resp, err := http.Post(url+"/lock/compactor", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if want := `lease "compactor": service "locker" declares no such lease; it declares "l"`; !strings.Contains(string(b), want) {
		t.Errorf("Lock of an undeclared lease = %q, want it to say %q", b, want)
	}
}
