// Command batch is an app of one job and, when $SCHEDULE is set, one cron
// job (whose starting deadline is $STARTING_DEADLINE), and when $WEB is set
// a simple service beside them, for the tests of the SDK's driver: every run appends its index to
// $DIR/runs, and the run of index $FAIL fails $FAILS times (every time when
// $FAILS is unset) with exit status 3.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

type exitError int

func (e exitError) Error() string { return "failing on purpose with status " + strconv.Itoa(int(e)) }
func (e exitError) ExitCode() int { return int(e) }

func main() {
	dir := os.Getenv("DIR")
	app := sdk.NewApp("batch")
	app.Job(spec.Service{Name: "migrate", Job: &spec.Job{Completions: 5, Parallelism: 2, Retries: 2}}, func(ctx context.Context) error {
		self := sdk.Self()
		f, err := os.OpenFile(filepath.Join(dir, "runs"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintf(f, "%d/%d\n", self.Index, self.Count)
		f.Close()
		time.Sleep(100 * time.Millisecond)
		if strconv.Itoa(self.Index) != os.Getenv("FAIL") {
			return nil
		}
		marker := filepath.Join(dir, "failed")
		b, _ := os.ReadFile(marker)
		if fails, err := strconv.Atoi(os.Getenv("FAILS")); err == nil && len(b) >= fails {
			return nil
		}
		os.WriteFile(marker, append(b, 'x'), 0o644)
		return exitError(3)
	})
	if os.Getenv("WEB") != "" {
		app.Service(spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 1}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "web")
		}))
	}
	if s := os.Getenv("SCHEDULE"); s != "" {
		deadline, _ := time.ParseDuration(os.Getenv("STARTING_DEADLINE"))
		app.Job(spec.Service{Name: "report", Cron: &spec.Cron{Schedule: s, StartingDeadline: spec.Duration(deadline)}}, func(ctx context.Context) error { return nil })
	}
	app.Run()
}
