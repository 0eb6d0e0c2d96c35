package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// EnvCompletionIndex is where Kubernetes gives an Indexed Job's pod its
// completion index; Self reads it when KILN_INDEX is unset.
const EnvCompletionIndex = "JOB_COMPLETION_INDEX"

// Job adds a job or cron service: svc sets Job or Cron, and fn is what
// each run does.
//
//	app.Job(spec.Service{Name: "migrate", Job: &spec.Job{Completions: 5, Parallelism: 2}}, migrate)
//	app.Job(spec.Service{Name: "report", Cron: &spec.Cron{Schedule: "@every 1m"}}, report)
//
// Each run is a process of its own, which knows its completion index as
// Self().Index (of Self().Count). A run that returns nil succeeded; one
// that returns an error failed, and is retried up to the job's retries.
// It exits 1, or with the error's ExitCode() when it has one. ctx ends
// when the run is stopped: its job's deadline passed, a cron run replaced
// it, or the app is stopping.
func (a *App) Job(svc spec.Service, fn func(ctx context.Context) error, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	a.services = append(a.services, service{spec: svc, job: fn, cfg: c})
}

// RunJob runs a program of one job or cron service and exits the program:
// NewApp with one App.Job.
func RunJob(svc spec.Service, fn func(ctx context.Context) error, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	a := NewApp(c.app)
	a.Job(svc, fn, opts...)
	a.Run()
}

// declared checks that a job was declared with a function and a serving
// service with a handler.
func (s *service) declared() error {
	batch := s.spec.Batch() != nil
	switch {
	case batch && s.job == nil:
		return fmt.Errorf("service %q is a %s: declare it with App.Job and its function, not App.Service", s.spec.Name, s.spec.Pattern())
	case !batch && s.job != nil:
		return fmt.Errorf("service %q is declared with App.Job, so it must set Job or Cron, not %s", s.spec.Name, s.spec.Pattern())
	}
	return nil
}

// runJob is the job role: one run of one completion index.
func (a *App) runJob(ctx context.Context, app *spec.App) error {
	name := os.Getenv(patterns.EnvService)
	var s *service
	for i := range a.services {
		if a.services[i].spec.Name == name && a.services[i].job != nil {
			s = &a.services[i]
		}
	}
	if s == nil {
		return usageError{fmt.Errorf("%s=%q names no job or cron service of this program (it has %s)", patterns.EnvService, name, jobNames(app))}
	}
	self := Self()
	slog.New(slog.NewTextHandler(os.Stderr, nil)).Info("running", "role", patterns.RoleJob, "service", name, "index", self.Index, "of", self.Count, "pid", os.Getpid())
	if err := s.job(ctx); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return fmt.Errorf("%s[%d] stopped: %w", name, self.Index, err)
		}
		return fmt.Errorf("%s[%d]: %w", name, self.Index, err)
	}
	return nil
}

func jobNames(app *spec.App) string {
	var names []string
	for _, s := range app.Services {
		if s.Batch() != nil {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return fmt.Sprint(quoted(names))
}
