package sdk_test

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
)

// runBatch runs the driver of sdk/testdata/batch, as go run does, with env
// added, and returns its exit status, its output and the runs it recorded.
func runBatch(t *testing.T, env ...string) (status int, out string, runs []string) {
	t.Helper()
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "./sdk/testdata/batch")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), "DIR="+dir), env...)
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	recorded, _ := os.ReadFile(filepath.Join(dir, "runs"))
	runs = strings.Fields(string(recorded))
	slices.Sort(runs)
	return cmd.ProcessState.ExitCode(), string(b), runs
}

func TestDriverRunsAJobToCompletionAndExitsZero(t *testing.T) {
	status, out, runs := runBatch(t, "FAIL=3", "FAILS=1")
	if status != 0 {
		t.Fatalf("the driver exited %d, want 0; its output:\n%s", status, out)
	}
	if want := []string{"0/5", "1/5", "2/5", "3/5", "3/5", "4/5"}; !slices.Equal(runs, want) {
		t.Errorf("runs saw index/count %v, want %v: each index once, 3 twice", runs, want)
	}
	for _, want := range []string{
		"kiln: migrate[3] attempt 1 failed (exit status 3); retrying in 100ms",
		"kiln: migrate[3] attempt 2 succeeded",
		"kiln: migrate completed: 5 of 5",
		"migrate/job-3 | ", // each run's own output, named
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDriverExitsWithTheFailedRunsStatus(t *testing.T) {
	status, out, runs := runBatch(t, "FAIL=0")
	if status != 3 {
		t.Fatalf("the driver exited %d, want 3, the failed run's; its output:\n%s", status, out)
	}
	if n := strings.Count(strings.Join(runs, " "), "0/5"); n != 3 {
		t.Errorf("index 0 ran %d times, want 3: a first run and its 2 retries", n)
	}
	if want := "kiln: migrate[0] attempt 3 failed (exit status 3); the job fails"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

func TestDriverRefusesAnInvalidScheduleNamingItsField(t *testing.T) {
	status, out, runs := runBatch(t, "SCHEDULE=every minute")
	if status != 2 {
		t.Fatalf("the driver exited %d, want 2; its output:\n%s", status, out)
	}
	if want := `services[report].cron.schedule: "every minute" is not a cron schedule`; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if len(runs) > 0 {
		t.Errorf("%d runs started, want none", len(runs))
	}
}

func TestDriverKeepsACronScheduleUntilCtrlC(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "./sdk/testdata/batch")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DIR="+dir, "SCHEDULE=@every 1s")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if err := testbin.Interrupt(cmd, 10*time.Second); err != nil {
		t.Fatalf("the driver stopped with %v, want exit 0 on Ctrl-C; its output:\n%s", err, out.String())
	}
	for _, want := range []string{"kiln: migrate completed: 5 of 5", "kiln: report#1 started", "kiln: report#1 completed: 1 of 1", "kiln: report#2 started"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDriverSkipsARunPastItsStartingDeadline stops the driver (SIGSTOP)
// across a due time, as a suspended laptop would, so that the run it owes
// is late by more than its starting deadline when it resumes.
func TestDriverSkipsARunPastItsStartingDeadline(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "./sdk/testdata/batch")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DIR="+dir, "SCHEDULE=@every 1s", "STARTING_DEADLINE=200ms")
	var out testbin.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !strings.Contains(out.String(), "kiln: report#1 completed"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no run completed within 10s:\n%s", out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(2500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGCONT)
	time.Sleep(500 * time.Millisecond)
	if err := testbin.Interrupt(cmd, 10*time.Second); err != nil {
		t.Fatalf("the driver stopped with %v, want exit 0 on Ctrl-C; its output:\n%s", err, out.String())
	}
	if want := "past its starting deadline of 200ms"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

func TestDriverServesBesideAJobAndExitsWithItsStatusOnCtrlC(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "./sdk/testdata/batch")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DIR="+dir, "WEB=1", "FAIL=0")
	var out testbin.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !strings.Contains(out.String(), "kiln: migrate failed"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the job did not end within 10s:\n%s", out.String())
		}
	}
	// The failed job leaves web serving.
	m := regexp.MustCompile(`kiln: web serving at (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no serving line:\n%s", out.String())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatalf("web after the job failed: %v", err)
	}
	resp.Body.Close()
	err = testbin.Interrupt(cmd, 15*time.Second)
	if cmd.ProcessState == nil {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("the driver stopped with %v (exit %d), want exit 3, the failed run's; its output:\n%s", err, code, out.String())
	}
}
