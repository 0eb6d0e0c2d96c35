package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// batchRun runs svc on the local target with script as its program, which
// finds its own directory in $DIR, and returns what Run returned and
// printed. ctx bounds the run of a cron job.
func batchRun(t *testing.T, ctx context.Context, svc spec.Service, script string) (dir string, out string, err error) {
	t.Helper()
	dir = t.TempDir()
	bin := filepath.Join(dir, "job")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	app := &spec.App{Services: []spec.Service{svc}}
	app.SetDefaults()
	topo, err := patterns.Build(app)
	if err != nil {
		t.Fatal(err)
	}
	var said, logs testbin.Buffer
	opts := Options{Binary: bin, Env: append(os.Environ(), "DIR="+dir), Output: &logs, Grace: 300 * time.Millisecond}
	err = Run(ctx, topo, opts, &said)
	t.Logf("printed:\n%s\nprocess output:\n%s", said.String(), logs.String())
	return dir, said.String(), err
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestJobRunsEachIndexOnceNeverMoreThanParallelismAtOnce(t *testing.T) {
	// Each run marks itself running, records how many are, then ends.
	dir, out, err := batchRun(t, context.Background(), spec.Service{Name: "migrate", Job: &spec.Job{Completions: 5, Parallelism: 2}}, `
touch "$DIR/running.$KILN_INDEX"
ls "$DIR" | grep -c '^running\.' >> "$DIR/counts"
echo "$KILN_INDEX/$KILN_COUNT" >> "$DIR/indexes"
sleep 0.3
rm "$DIR/running.$KILN_INDEX"
`)
	if err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	indexes := readLines(t, filepath.Join(dir, "indexes"))
	slices.Sort(indexes)
	if want := []string{"0/5", "1/5", "2/5", "3/5", "4/5"}; !slices.Equal(indexes, want) {
		t.Errorf("runs saw KILN_INDEX/KILN_COUNT %v, want each of %v once", indexes, want)
	}
	counts := readLines(t, filepath.Join(dir, "counts"))
	if slices.Contains(counts, "0") || slices.ContainsFunc(counts, func(c string) bool { return c > "2" }) {
		t.Errorf("runs saw %v running at once, want 1 or 2", counts)
	}
	if !slices.Contains(counts, "2") {
		t.Errorf("runs saw %v running at once: never 2, so parallelism 2 was not used", counts)
	}
	for _, want := range []string{"migrate[3] attempt 1 succeeded", "migrate completed: 5 of 5"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestJobRetriesAFailedRunWithBackoff(t *testing.T) {
	// Index 1 fails its first run only.
	_, out, err := batchRun(t, context.Background(), spec.Service{Name: "migrate", Job: &spec.Job{Completions: 3, Parallelism: 3, Retries: 1}}, `
if [ "$KILN_INDEX" = 1 ] && [ ! -e "$DIR/failed" ]; then touch "$DIR/failed"; exit 1; fi
`)
	if err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	for _, want := range []string{
		"kiln: migrate[1] attempt 1 failed (exit status 1); retrying in 100ms\n",
		"kiln: migrate[1] attempt 2 succeeded",
		"kiln: migrate completed: 3 of 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestJobFailsWithItsRunsStatusOnceRetriesAreSpent(t *testing.T) {
	dir, out, err := batchRun(t, context.Background(), spec.Service{Name: "migrate", Job: &spec.Job{Completions: 1, Retries: 2}}, `
echo run >> "$DIR/runs"
exit 3
`)
	var je *JobError
	if !errors.As(err, &je) {
		t.Fatalf("Run() = %v, want a *JobError", err)
	}
	if je.Status != 3 || je.Index != 0 || je.ExitCode() != 3 {
		t.Errorf("JobError{Index: %d, Status: %d}, want index 0, status 3", je.Index, je.Status)
	}
	if runs := readLines(t, filepath.Join(dir, "runs")); len(runs) != 3 {
		t.Errorf("the program ran %d times, want 3: a first run and 2 retries", len(runs))
	}
	for _, want := range []string{
		"kiln: migrate[0] attempt 1 failed (exit status 3); retrying in 100ms\n",
		"kiln: migrate[0] attempt 2 failed (exit status 3); retrying in 200ms\n",
		"kiln: migrate[0] attempt 3 failed (exit status 3); the job fails\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if want := "3 failed runs, more than its 2 retries"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

func TestJobRefusingItsConfigurationIsNotRetried(t *testing.T) {
	dir, _, err := batchRun(t, context.Background(), spec.Service{Name: "migrate", Job: &spec.Job{Retries: 5}}, `
echo run >> "$DIR/runs"
exit 2
`)
	var je *JobError
	if !errors.As(err, &je) || je.Status != 2 {
		t.Fatalf("Run() = %v, want a *JobError of status 2", err)
	}
	if runs := readLines(t, filepath.Join(dir, "runs")); len(runs) != 1 {
		t.Errorf("the program ran %d times, want once: status 2 is a configuration error", len(runs))
	}
}

func TestJobDeadlineStopsTheWholeJob(t *testing.T) {
	start := time.Now()
	_, _, err := batchRun(t, context.Background(), spec.Service{Name: "migrate", Job: &spec.Job{Completions: 2, Deadline: spec.Duration(500 * time.Millisecond)}}, `
exec sleep 30
`)
	var je *JobError
	if !errors.As(err, &je) || je.Index != -1 || je.Status != 1 {
		t.Fatalf("Run() = %v, want a *JobError of the deadline", err)
	}
	if want := "deadline of 500ms (job.deadline) passed after 0 of 2 completions"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the job took %s to stop, want about its deadline and grace", took)
	}
}

// cronScript records each run's start, whether another was active then,
// and a stop by SIGTERM.
const cronScript = `
trap 'echo "$KILN_INDEX" >> "$DIR/terminated"; rm -f "$DIR/active"; exit 143' TERM
if [ -e "$DIR/active" ]; then echo overlap >> "$DIR/overlaps"; fi
touch "$DIR/active"
echo started >> "$DIR/starts"
sleep $SLOW &
wait $!
rm -f "$DIR/active"
`

func TestCronForbidNeverOverlapsASlowRun(t *testing.T) {
	t.Setenv("SLOW", "2.2")
	ctx, cancel := context.WithTimeout(context.Background(), 4800*time.Millisecond)
	defer cancel()
	dir, out, err := batchRun(t, ctx, spec.Service{Name: "report", Cron: &spec.Cron{Schedule: "@every 1s", ConcurrencyPolicy: spec.ConcurrencyForbid}}, cronScript)
	if err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if o := readLines(t, filepath.Join(dir, "overlaps")); len(o) > 0 {
		t.Errorf("%d runs started while another was active", len(o))
	}
	if starts := readLines(t, filepath.Join(dir, "starts")); len(starts) < 2 {
		t.Errorf("%d runs started, want 2: one after the slow first run", len(starts))
	}
	if want := "skipped: report#1 is still active (concurrency forbid)"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q", want)
	}
}

func TestCronReplaceCancelsTheSlowRun(t *testing.T) {
	t.Setenv("SLOW", "30")
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	dir, out, err := batchRun(t, ctx, spec.Service{Name: "report", Cron: &spec.Cron{Schedule: "@every 1s", ConcurrencyPolicy: spec.ConcurrencyReplace}}, cronScript)
	if err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	starts := readLines(t, filepath.Join(dir, "starts"))
	terminated := readLines(t, filepath.Join(dir, "terminated"))
	if len(starts) < 2 || len(terminated) < len(starts)-1 {
		t.Errorf("%d runs started and %d were stopped by SIGTERM, want every run but the last stopped", len(starts), len(terminated))
	}
	if o := readLines(t, filepath.Join(dir, "overlaps")); len(o) > 0 {
		t.Errorf("%d runs started while the one they replace was still active", len(o))
	}
	for _, want := range []string{"report#1 replaced by the run due at", "report#1 stopped after 0 of 1 completions: replaced by report#2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestCronAllowOverlapsRuns(t *testing.T) {
	t.Setenv("SLOW", "1.6")
	ctx, cancel := context.WithTimeout(context.Background(), 2800*time.Millisecond)
	defer cancel()
	dir, _, err := batchRun(t, ctx, spec.Service{Name: "report", Cron: &spec.Cron{Schedule: "@every 1s"}}, cronScript)
	if err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if o := readLines(t, filepath.Join(dir, "overlaps")); len(o) == 0 {
		t.Errorf("no run started while another was active, want overlaps under concurrency allow")
	}
}

func TestCronSuspendedStartsNoRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	dir, out, err := batchRun(t, ctx, spec.Service{Name: "report", Cron: &spec.Cron{Schedule: "@every 1s", Suspend: true}}, cronScript)
	if err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if starts := readLines(t, filepath.Join(dir, "starts")); len(starts) > 0 {
		t.Errorf("%d runs started, want none", len(starts))
	}
	if want := "report is suspended (cron.suspend)"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q", want)
	}
}
