package local

// The batch runner: jobs run to completion and cron jobs on their schedule,
// each run a process of the program's binary in role job, with the same
// environment and discovery as the serving processes. The semantics are
// Kubernetes': Indexed completions, a backoff limit counted over the whole
// job, a deadline over the whole job, and the three concurrency policies.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/child"
	"github.com/kiln-dev/kiln/internal/lines"
	"github.com/kiln-dev/kiln/internal/restart"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// JobError is a job that did not succeed.
type JobError struct {
	Service string
	// Index is the completion index whose failed run ended the job, or -1
	// when its deadline did.
	Index int
	// Status is the exit status of that run, which kiln run and the
	// driver exit with; 1 when the deadline ended the job or a run was
	// killed by a signal.
	Status int
	Err    error
}

func (e *JobError) Error() string { return "job " + e.Service + ": " + e.Err.Error() }
func (e *JobError) Unwrap() error { return e.Err }

// ExitCode is Status: a program that runs the job exits with it.
func (e *JobError) ExitCode() int { return e.Status }

var errDeadline = errors.New("deadline exceeded")

// batch runs a deployment's jobs; say receives kiln's own lines about
// them, each a whole line.
type batch struct {
	d   *Deployment
	say io.Writer
}

func (b *batch) sayf(format string, args ...any) {
	fmt.Fprintf(b.say, "kiln: "+format+"\n", args...)
}

// runJobs runs every job and cron of jobs. With only one-shot jobs and
// nothing serving, it returns once they have all ended; otherwise it runs
// until ctx ends. It returns the first failed job's error, in spec order.
func (d *Deployment) runJobs(ctx context.Context, jobs []patterns.Workload, say io.Writer, serving bool) error {
	b := &batch{d: d, say: &lines.Sync{W: say}}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	crons := false
	for i := range jobs {
		w := &jobs[i]
		if w.Cron != nil {
			crons = true
			wg.Go(func() { b.cron(ctx, w) })
			continue
		}
		wg.Go(func() { errs[i] = b.job(ctx, w, w.Service) })
	}
	if serving || crons {
		<-ctx.Done()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// job runs w's job to completion. name labels its lines: the service, or
// a cron run ("report#3").
func (b *batch) job(ctx context.Context, w *patterns.Workload, name string) error {
	job := w.Job
	parent := ctx
	var cancel context.CancelFunc
	if job.Deadline > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, job.Deadline.D(), errDeadline)
		defer cancel()
	}
	// stop ends the runs still active once the job has failed.
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	type result struct {
		index, attempt int
		took           time.Duration
		err            error
	}
	n := job.Completions
	results := make(chan result)
	// Each index waits for at most one retry at a time.
	retry := make(chan int, n)
	queue := make([]int, n)
	for i := range queue {
		queue[i] = i
	}
	attempts := make([]int, n)
	backoff := make([]restart.Backoff, n)
	active, failures, succeeded := 0, 0, 0
	var failed *JobError
	began := time.Now()
	done := ctx.Done()
	for succeeded < n {
		for failed == nil && ctx.Err() == nil && active < job.Parallelism && len(queue) > 0 {
			i := queue[0]
			queue = queue[1:]
			attempts[i]++
			active++
			go func(i, a int) {
				t := time.Now()
				err := b.attempt(ctx, w, i)
				results <- result{i, a, time.Since(t), err}
			}(i, attempts[i])
		}
		if active == 0 && (failed != nil || ctx.Err() != nil) {
			break
		}
		select {
		case r := <-results:
			active--
			if r.err == nil {
				succeeded++
				b.sayf("%s[%d] attempt %d succeeded in %s", name, r.index, r.attempt, r.took.Round(time.Millisecond))
				continue
			}
			if failed != nil || ctx.Err() != nil {
				continue // stopped with the job
			}
			failures++
			status := exitCode(r.err)
			why := fmt.Sprintf("%s[%d] attempt %d failed (%s)", name, r.index, r.attempt, exitStatus(r.err))
			switch {
			case status == restart.ExitUsage:
				failed = &JobError{Service: w.Service, Index: r.index, Status: status, Err: fmt.Errorf("%s, which says its configuration is wrong, so it is not retried", why)}
			case failures > job.Retries:
				failed = &JobError{Service: w.Service, Index: r.index, Status: status, Err: fmt.Errorf("%s: %d failed runs, more than its %d retries", why, failures, job.Retries)}
			}
			if failed != nil {
				b.sayf("%s; the job fails", why)
				stop()
				continue
			}
			delay := backoff[r.index].Next(r.took)
			b.sayf("%s; retrying in %s", why, delay)
			time.AfterFunc(delay, func() { retry <- r.index })
		case i := <-retry:
			queue = append(queue, i)
		case <-done:
			done = nil // the loop now waits for the active runs to end
		}
	}
	took := time.Since(began).Round(time.Millisecond)
	switch {
	case failed != nil:
		b.sayf("%s failed after %d of %d completions in %s", name, succeeded, n, took)
		return failed
	case succeeded == n:
		retried := ""
		if failures > 0 {
			retried = fmt.Sprintf(", %d of them retried", failures)
		}
		b.sayf("%s completed: %d of %d in %s%s", name, succeeded, n, took, retried)
		return nil
	case context.Cause(ctx) == errDeadline:
		b.sayf("%s failed: its deadline of %s passed after %d of %d completions", name, job.Deadline.D(), succeeded, n)
		return &JobError{Service: w.Service, Index: -1, Status: 1, Err: fmt.Errorf("deadline of %s (job.deadline) passed after %d of %d completions", job.Deadline.D(), succeeded, n)}
	}
	b.sayf("%s stopped after %d of %d completions: %v", name, succeeded, n, context.Cause(parent))
	return fmt.Errorf("job %s stopped after %d of %d completions: %w", w.Service, succeeded, n, context.Cause(parent))
}

// attempt runs completion index i of w once. When ctx ends first, the run
// gets SIGTERM, and SIGKILL after the grace period.
func (b *batch) attempt(ctx context.Context, w *patterns.Workload, i int) error {
	opts := b.d.opts
	env := w.RoleEnv(i, nil, b.d.Endpoints())
	cmd := exec.Command(opts.binary(w.Service))
	cmd.Env = slices.Clone(opts.Env)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	out := &lines.Prefix{Prefix: w.Service + "/" + w.Instance(i) + " | ", W: b.d.out}
	cmd.Stdout, cmd.Stderr = out, out
	child.Own(cmd)
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
		return terminate(cmd, exited, opts.Grace)
	}
}

// exitCode is the status a failed run exited with, 1 when a signal ended
// it or it did not start.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return 1
}

// cron keeps w's schedule until ctx ends, running each due run as a job.
func (b *batch) cron(ctx context.Context, w *patterns.Workload) {
	c := w.Cron
	loc := time.Local
	if c.TimeZone != "" {
		var err error
		if loc, err = time.LoadLocation(c.TimeZone); err != nil {
			b.sayf("%s: cron.time_zone: %v", w.Service, err) // Validate let it through
			return
		}
	}
	sched, err := spec.ParseSchedule(c.Schedule, loc)
	if err != nil {
		b.sayf("%s: cron.schedule: %v", w.Service, err)
		return
	}
	if c.Suspend {
		b.sayf("%s is suspended (cron.suspend): no run starts", w.Service)
		<-ctx.Done()
		return
	}
	type run struct {
		n      int
		cancel context.CancelCauseFunc
		done   chan struct{}
	}
	var active []*run
	finish := func(r *run, why error) {
		r.cancel(why)
		<-r.done
	}
	next := sched.Next(time.Now())
	b.sayf("%s runs on %q in %s (concurrency %s); next run at %s", w.Service, c.Schedule, loc, c.ConcurrencyPolicy, next.Format(time.TimeOnly))
	for n := 1; ; {
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			for _, r := range active {
				finish(r, context.Cause(ctx))
			}
			return
		case <-timer.C:
		}
		due := next
		// A run missed while the driver was not scheduled is not made up.
		next = sched.Next(time.Now())
		active = slices.DeleteFunc(active, func(r *run) bool {
			select {
			case <-r.done:
				return true
			default:
				return false
			}
		})
		if late := time.Since(due); c.StartingDeadline > 0 && late > c.StartingDeadline.D() {
			b.sayf("%s run due at %s missed: %s late, past its starting deadline of %s", w.Service, due.Format(time.TimeOnly), late.Round(time.Millisecond), c.StartingDeadline.D())
			continue
		}
		if len(active) > 0 {
			switch c.ConcurrencyPolicy {
			case spec.ConcurrencyForbid:
				b.sayf("%s run due at %s skipped: %s#%d is still active (concurrency forbid)", w.Service, due.Format(time.TimeOnly), w.Service, active[0].n)
				continue
			case spec.ConcurrencyReplace:
				for _, r := range active {
					b.sayf("%s#%d replaced by the run due at %s (concurrency replace): stopping it", w.Service, r.n, due.Format(time.TimeOnly))
					finish(r, fmt.Errorf("replaced by %s#%d", w.Service, n))
				}
				active = nil
			}
		}
		rctx, cancel := context.WithCancelCause(ctx)
		r := &run{n: n, cancel: cancel, done: make(chan struct{})}
		active = append(active, r)
		name := w.Service + "#" + strconv.Itoa(n)
		b.sayf("%s started (due at %s)", name, due.Format(time.TimeOnly))
		go func() {
			defer close(r.done)
			b.job(rctx, w, name)
		}()
		n++
	}
}
