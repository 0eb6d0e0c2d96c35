package docker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/kiln-dev/kiln/internal/lines"
	"github.com/kiln-dev/kiln/internal/restart"
	"github.com/kiln-dev/kiln/spec"
)

// downTimeout bounds Run's final Down, which runs after ctx has ended.
const downTimeout = time.Minute

// Run runs app on the engine until ctx ends. It first removes what a
// previous run of the same app left (one killed before it could clean
// up), applies the plan, prints one "kiln: SERVICE serving at URL" line
// per service to stdout, in app order, and follows the programs' logs to
// o.Output. When ctx ends it removes everything and prints "kiln:
// stopped".
//
// While it runs, Run owns the topology as the local target does: the
// engine's unless-stopped policy restarts a program that crashes, but not
// one that was killed through the engine (docker kill, ContainerKill),
// which the engine counts as stopped by hand. Run watches the engine's
// events and starts again every program and sidecar container of app that
// dies and that the engine is not restarting, with a backoff that doubles
// from 100ms to 5s (reset once a container has stayed up 10s), logging
// "process exited; restarting" to o.Output. A container that exits with
// status 2 refuses its configuration: it is not restarted, by Run nor by
// the engine. Apply alone (kiln deploy --target docker) has no such
// driver and relies on the restart policy only.
func Run(ctx context.Context, app *spec.App, o Options, stdout io.Writer) error {
	if o.Output == nil {
		o.Output = os.Stderr
	}
	p, err := Render(app, o)
	if err != nil {
		return err
	}
	e, err := Connect(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	down := func() error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), downTimeout)
		defer cancel()
		_, err := e.Down(dctx, app.Name)
		return err
	}
	if _, err := e.Down(ctx, app.Name); err != nil {
		return err
	}
	start := time.Now()
	out := &lines.Sync{W: o.Output}
	log := slog.New(slog.NewTextHandler(out, nil))
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	// Watch before Apply so that no death between Apply and the watch is
	// missed; deaths during Apply fail Apply, and restarts wait for it.
	applied := make(chan struct{})
	supervised := make(chan struct{})
	go func() { e.supervise(sctx, p, log, applied); close(supervised) }()
	d, err := e.Apply(ctx, p)
	if err != nil {
		stop()
		<-supervised
		if derr := down(); derr != nil {
			return fmt.Errorf("%w (and cleaning up: %v)", err, derr)
		}
		return err
	}
	close(applied)
	for _, ep := range d {
		fmt.Fprintf(stdout, "kiln: %s serving at %s\n", ep.Service, ep.URL)
	}
	followed := make(chan struct{})
	go func() { e.followSince(sctx, app.Name, out, start); close(followed) }()
	<-ctx.Done()
	stop()
	<-followed
	<-supervised
	fmt.Fprintf(out, "kiln: stopping %s\n", app.Name)
	if err := down(); err != nil {
		return err
	}
	fmt.Fprintln(out, "kiln: stopped")
	return nil
}

// watched is one program or sidecar container that supervise restarts.
type watched struct {
	process   string // the pod's process: "kv/shard-1"
	container string // its LabelContainer: "app" or the sidecar's name

	// run serialises the handling of the container's deaths.
	run     sync.Mutex
	backoff restart.Backoff
}

// supervise restarts p's program and sidecar containers that die while
// ctx lasts and that the engine does not restart (see Run). It starts
// none before applied is closed, and returns once ctx has ended and no
// restart is under way.
func (e *Engine) supervise(ctx context.Context, p *Plan, log *slog.Logger, applied <-chan struct{}) {
	byName := map[string]*watched{}
	for _, pod := range p.Pods {
		byName[containerName(p.App, pod.Name, containerApp)] = &watched{process: pod.Process, container: containerApp}
		for _, c := range pod.Sidecars {
			byName[containerName(p.App, pod.Name, c.Name)] = &watched{process: pod.Process, container: c.Name}
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	since := ""
	for ctx.Err() == nil {
		opts := client.EventsListOptions{Since: since, Filters: appFilter(p.App).Add("type", string(events.ContainerEventType)).Add("event", string(events.ActionDie))}
		r := e.c.Events(ctx, opts)
		since = timestamp(time.Now())
	stream:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-r.Err:
				if ctx.Err() == nil {
					log.Warn("watching the engine's events; watching again", "app", p.App, "err", err)
				}
				break stream
			case m := <-r.Messages:
				since = timestamp(time.Unix(0, m.TimeNano))
				w := byName[m.Actor.Attributes["name"]]
				if w == nil {
					continue
				}
				status, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
				wg.Add(1)
				go func() {
					defer wg.Done()
					e.restart(ctx, m.Actor.Attributes["name"], w, status, log, applied)
				}()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(restart.Min):
		}
	}
}

// restart handles one death of w's container, which exited with status.
func (e *Engine) restart(ctx context.Context, name string, w *watched, status int, log *slog.Logger, applied <-chan struct{}) {
	w.run.Lock()
	defer w.run.Unlock()
	select {
	case <-ctx.Done():
		return
	case <-applied:
	}
	attrs := []any{"process", w.process, "container", w.container, "status", "exit status " + strconv.Itoa(status)}
	for {
		ins, err := e.c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil {
			if ctx.Err() == nil && !isNotFound(err) {
				log.Error("cannot inspect container", append(attrs, "err", err)...)
			}
			return
		}
		st := ins.Container.State
		if status == restart.ExitUsage {
			log.Error("process refuses its configuration; not restarting", attrs...)
			if st.Restarting || st.Running {
				// The restart policy would retry it forever.
				no := container.RestartPolicy{Name: container.RestartPolicyDisabled}
				if _, err := e.c.ContainerUpdate(ctx, name, client.ContainerUpdateOptions{RestartPolicy: &no}); err != nil && ctx.Err() == nil {
					log.Error("cannot turn the container's restart policy off", append(attrs, "err", err)...)
				}
				if _, err := e.c.ContainerStop(ctx, name, client.ContainerStopOptions{}); err != nil && ctx.Err() == nil && !isNotFound(err) {
					log.Error("cannot stop container", append(attrs, "err", err)...)
				}
			}
			return
		}
		if st.Running || st.Restarting {
			return // the engine restarted it, or is about to
		}
		started, _ := time.Parse(time.RFC3339Nano, st.StartedAt)
		finished, _ := time.Parse(time.RFC3339Nano, st.FinishedAt)
		backoff := w.backoff.Next(finished.Sub(started))
		log.Warn("process exited; restarting", append(attrs, "in", backoff)...)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		_, err = e.c.ContainerStart(ctx, name, client.ContainerStartOptions{})
		if err == nil || ctx.Err() != nil || isNotFound(err) {
			return
		}
		log.Error("cannot start container", append(attrs, "err", err)...)
	}
}
