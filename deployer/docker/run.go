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
// the engine. A pod whose holder dies, by a crash or through the engine,
// has lost its network namespace, which its program and sidecars joined:
// Run removes the whole pod and creates it again, with the same backoff,
// logging "pod's holder exited; recreating the pod". Apply alone (kiln
// deploy --target docker) has no such driver and relies on the restart
// policy only.
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

// watched is one program, sidecar or holder container that supervise
// restarts (a holder by recreating its pod).
type watched struct {
	pod       *PodPlan
	process   string // the pod's process: "kv/shard-1"
	container string // its LabelContainer: "app", "holder" or the sidecar's name
	// recreating is the pod's, held while its pod is recreated.
	recreating *sync.Mutex

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
	for i := range p.Pods {
		pod := &p.Pods[i]
		recreating := &sync.Mutex{}
		for _, c := range append([]string{containerHolder, containerApp}, sidecarNames(pod)...) {
			byName[containerName(p.App, pod.Name, c)] = &watched{pod: pod, process: pod.Process, container: c, recreating: recreating}
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
				d := death{name: m.Actor.Attributes["name"], id: m.Actor.ID, status: status, at: time.Unix(0, m.TimeNano)}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if w.container == containerHolder {
						e.recreate(ctx, p, d, w, log, applied)
					} else {
						e.restart(ctx, d, w, log, applied)
					}
				}()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(restart.Min):
		}
	}
}

func sidecarNames(pod *PodPlan) []string {
	var out []string
	for _, c := range pod.Sidecars {
		out = append(out, c.Name)
	}
	return out
}

// death is one die event of a container.
type death struct {
	name, id string // the container's
	status   int
	at       time.Time
}

// restart handles one death of w's container.
func (e *Engine) restart(ctx context.Context, d death, w *watched, log *slog.Logger, applied <-chan struct{}) {
	w.run.Lock()
	defer w.run.Unlock()
	select {
	case <-ctx.Done():
		return
	case <-applied:
	}
	status, name := d.status, d.name
	attrs := []any{"process", w.process, "container", w.container, "status", "exit status " + strconv.Itoa(status)}
	for {
		// Not while its pod is recreated: the pod's containers die then
		// for good, and others replace them.
		w.recreating.Lock()
		ins, err := e.c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		w.recreating.Unlock()
		if err != nil {
			if ctx.Err() == nil && !isNotFound(err) {
				log.Error("cannot inspect container", append(attrs, "err", err)...)
			}
			return
		}
		if ins.Container.ID != d.id {
			return // its pod was recreated since
		}
		st := ins.Container.State
		if status == restart.ExitUsage {
			log.Error("process refuses its configuration; not restarting", attrs...)
			// The restart policy would start it again: now, if the engine
			// is restarting it, or when the engine itself restarts, which
			// starts every unless-stopped container nobody stopped. Hence
			// off even when it is not running.
			no := container.RestartPolicy{Name: container.RestartPolicyDisabled}
			if _, err := e.c.ContainerUpdate(ctx, d.id, client.ContainerUpdateOptions{RestartPolicy: &no}); err != nil && ctx.Err() == nil && !isNotFound(err) {
				log.Error("cannot turn the container's restart policy off", append(attrs, "err", err)...)
			}
			if st.Restarting || st.Running {
				if _, err := e.c.ContainerStop(ctx, d.id, client.ContainerStopOptions{}); err != nil && ctx.Err() == nil && !isNotFound(err) {
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
		_, err = e.c.ContainerStart(ctx, d.id, client.ContainerStartOptions{})
		if err == nil || ctx.Err() != nil || isNotFound(err) {
			return
		}
		log.Error("cannot start container", append(attrs, "err", err)...)
	}
}

// recreate handles one death of the holder of w's pod. The engine may
// have restarted the holder already, but with a new network namespace,
// which the pod's other containers did not join: the pod is removed and
// created again, as Apply creates it.
func (e *Engine) recreate(ctx context.Context, p *Plan, d death, w *watched, log *slog.Logger, applied <-chan struct{}) {
	w.run.Lock()
	defer w.run.Unlock()
	select {
	case <-ctx.Done():
		return
	case <-applied:
	}
	w.recreating.Lock()
	defer w.recreating.Unlock()
	attrs := []any{"process", w.process, "container", w.container, "status", "exit status " + strconv.Itoa(d.status)}
	ins, err := e.c.ContainerInspect(ctx, d.name, client.ContainerInspectOptions{})
	if err != nil {
		if ctx.Err() == nil && !isNotFound(err) {
			log.Error("cannot inspect container", append(attrs, "err", err)...)
		}
		return
	}
	if ins.Container.ID != d.id {
		return // recreated since, by Apply or an earlier death
	}
	// The pod's age stands for its uptime: a holder the engine restarted
	// has a new start time but the same pod.
	created, _ := time.Parse(time.RFC3339Nano, ins.Container.Created)
	backoff := w.backoff.Next(d.at.Sub(created))
	log.Warn("pod's holder exited; recreating the pod", append(attrs, "in", backoff)...)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		err := e.recreatePod(ctx, p, w.pod)
		if err == nil || ctx.Err() != nil {
			return
		}
		log.Error("cannot recreate the pod", append(attrs, "err", err)...)
		backoff = w.backoff.Next(0)
	}
}

// recreatePod removes pod's containers at once, since a pod without its
// network has nothing to drain, and creates it again.
func (e *Engine) recreatePod(ctx context.Context, p *Plan, pod *PodPlan) error {
	cs, err := e.podContainers(ctx, p.App, pod.Name)
	if err != nil {
		return err
	}
	if err := e.remove(ctx, cs); err != nil {
		return err
	}
	bin, err := e.entrypoint(ctx, pod.Image)
	if err != nil {
		return err
	}
	return e.createPod(ctx, p, pod, bin)
}
