package examples_test

import (
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples/annotated/compactor"
	"github.com/kiln-dev/kiln/internal/testbin"
)

// pass is one "compacted" line of the compactor's log.
type pass struct {
	token uint64
	pid   int
}

var compacted = regexp.MustCompile(`msg=compacted token=(\d+) pass=\d+ pid=(\d+)`)

// passes are the passes out shows, in the order they were written.
func passes(out string) []pass {
	var ps []pass
	for _, m := range compacted.FindAllStringSubmatch(out, -1) {
		token, _ := strconv.ParseUint(m[1], 10, 64)
		pid, _ := strconv.Atoi(m[2])
		ps = append(ps, pass{token, pid})
	}
	return ps
}

// waitLeader waits until a process other than each of not compacts, and
// returns it.
func waitLeader(t *testing.T, out *testbin.Buffer, within time.Duration, not ...int) pass {
	t.Helper()
	for start := time.Now(); time.Since(start) < within; time.Sleep(10 * time.Millisecond) {
		ps := passes(out.String())
		if len(ps) == 0 {
			continue
		}
		last, old := ps[len(ps)-1], false
		for _, pid := range not {
			old = old || last.pid == pid
		}
		if !old {
			return last
		}
	}
	t.Fatalf("no new leader compacted within %s:\n%s", within, out.String())
	return pass{}
}

// checkOneLeaderAtATime checks that, in the order the store accepted
// them, passes never go back to an older token, and that each token is
// one process's: two leaders never both wrote.
func checkOneLeaderAtATime(t *testing.T, ps []pass) {
	t.Helper()
	owner := map[uint64]int{}
	var last uint64
	for i, p := range ps {
		if p.token < last {
			t.Errorf("pass %d has token %d after token %d: a deposed leader wrote", i, p.token, last)
		}
		if pid, ok := owner[p.token]; ok && pid != p.pid {
			t.Errorf("token %d was used by processes %d and %d", p.token, pid, p.pid)
		}
		owner[p.token], last = p.pid, p.token
	}
}

func TestCompactorHasOneLeaderAtATimeAndANewOneWithinTheLease(t *testing.T) {
	forms(t, "compactor", testCompactorLeaders)
}

func testCompactorLeaders(t *testing.T, name string) {
	dir := t.TempDir()
	out := &testbin.Buffer{}
	_, url := deployTo(t, name, io.MultiWriter(out, testWriter{t}),
		compactor.EnvDir+"="+dir, compactor.EnvEvery+"=50ms")
	first := waitLeader(t, out, 10*time.Second)
	time.Sleep(500 * time.Millisecond)

	// Killed: the driver sees its process exit and frees its lease.
	if err := syscall.Kill(first.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	second := waitLeader(t, out, 5*time.Second, first.pid)
	t.Logf("a new leader %s after the leader was killed", time.Since(killed).Round(time.Millisecond))
	if second.token <= first.token {
		t.Errorf("the new leader's token = %d, want more than %d", second.token, first.token)
	}

	// Frozen: only the lease's expiry (5s) lets another lead, and the
	// thawed leader's late write is refused by its fencing token.
	if err := syscall.Kill(second.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	third := waitLeader(t, out, 8*time.Second, first.pid, second.pid)
	waited := time.Since(frozen)
	t.Logf("a new leader %s after the leader froze", waited.Round(time.Millisecond))
	syscall.Kill(second.pid, syscall.SIGCONT)
	if waited > 5*time.Second+time.Second {
		t.Errorf("a new leader took %s after the leader froze, want within the lease's 5s (and a renewal)", waited)
	}
	if third.token <= second.token {
		t.Errorf("the third leader's token = %d, want more than %d", third.token, second.token)
	}
	// The thawed one wakes, and its write is refused or it learns it lost
	// the lease first; either way it follows.
	deposed := regexp.MustCompile(`token ` + strconv.FormatUint(second.token, 10) + ` < \d+: a newer leader has written|msg="no longer leading" lease=compactor token=` + strconv.FormatUint(second.token, 10))
	for start := time.Now(); !deposed.MatchString(out.String()); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the thawed leader (token %d) neither was fenced off nor learnt it lost the lease:\n%s", second.token, out.String())
		}
	}
	checkOneLeaderAtATime(t, passes(out.String()))

	// The entry answers with the store's last pass: the current leader's.
	resp, body := do(t, "GET", url+"/", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET / = %d %s", resp.StatusCode, body)
	}
	var got struct {
		Last compactor.Pass `json:"last"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if ps := passes(out.String()); got.Last.Token != ps[len(ps)-1].token || got.Last.PID != ps[len(ps)-1].pid {
		t.Errorf("GET / says the last pass was %+v, want token %d of pid %d", got.Last, ps[len(ps)-1].token, ps[len(ps)-1].pid)
	}
}
