package docker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/patterns"
)

// Swap says what a Roll did, by process name ("kv/shard-1").
type Swap struct {
	// Replaced are the pods whose program was replaced in place: the new
	// one took the pod's socket from its holder and served beside the old
	// one, which then drained and stopped.
	Replaced []string
	// Recreated are the pods removed and created again, because more than
	// their program changed (see LabelFrameHash) or they were not whole.
	Recreated []string
	Started   []string // pods the plan gained
	Stopped   []string // pods it lost
	// Endpoints are each service's URL on the host, in app order, once
	// Roll has succeeded; nil when it failed.
	Endpoints patterns.Discovery
}

// Changed reports whether the roll touched any pod.
func (s Swap) Changed() bool {
	return len(s.Replaced)+len(s.Recreated)+len(s.Started)+len(s.Stopped) > 0
}

// RollOptions configure Roll.
type RollOptions struct {
	// ReadyTimeout bounds the wait for each new program to serve, and for
	// each created pod to be ready; 0 means 2 minutes, as Apply waits.
	ReadyTimeout time.Duration
}

// Roll makes the engine run p, as Apply does, but one pod at a time and,
// where it can, with no refused connection: it is the Docker target's
// rolling update, which kiln dev runs on each save. Pods p does not
// change are not touched.
//
// Service by service in p's order, and within a service in p's pod order
// (backends before their entry point), each pod p changes is handled in
// turn:
//   - a pod whose frame (LabelFrameHash) is unchanged, as when only its
//     image or its program's environment changed, keeps its holder, and
//     with it its listening socket, aliases and published port. A new
//     program container joins the holder under a temporary name and takes
//     the same socket from it; once it says it serves, the old one is
//     stopped (it drains what it has accepted), removed, and the new one
//     takes its name;
//   - a pod p adds is created, and one whose frame changed is removed and
//     created again (an entry point keeping its host port), each waited
//     for as Apply waits;
//   - once the service's pods are done, its pods that p no longer has are
//     removed.
//
// Pods of the services p no longer has go last, entry points first.
//
// A new program that exits, or does not say it serves within
// o.ReadyTimeout, is removed and the old one keeps serving; a created or
// recreated pod that fails is removed. Either way Roll stops there and
// returns the error with what it had done: the pods already rolled stay
// rolled. On an app with no container, Roll is Apply.
func (e *Engine) Roll(ctx context.Context, p *Plan, o RollOptions) (Swap, error) {
	var sw Swap
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = readyTimeout
	}
	existing, err := e.containers(ctx, p.App)
	if err != nil {
		return sw, err
	}
	if len(existing) == 0 {
		d, err := e.Apply(ctx, p)
		if err != nil {
			return sw, err
		}
		for _, pod := range p.Pods {
			sw.Started = append(sw.Started, pod.Process)
		}
		sw.Endpoints = d
		return sw, nil
	}
	if err := e.network(ctx, p); err != nil {
		return sw, err
	}
	byPod := map[string][]container.Summary{}
	for _, c := range existing {
		byPod[c.Labels[LabelPod]] = append(byPod[c.Labels[LabelPod]], c)
	}
	// Every changed pod's program is found before anything is touched, so
	// that a missing image changes nothing.
	steps := make([]rollStep, len(p.Pods))
	bins := map[string]string{}
	for i := range p.Pods {
		pod := &p.Pods[i]
		st := rollStep{pod: pod, cs: byPod[pod.Name], how: howToRoll(byPod[pod.Name], pod)}
		if st.how != rollKeep {
			bin, ok := bins[pod.Image]
			if !ok {
				if bin, err = e.entrypoint(ctx, pod.Image); err != nil {
					return sw, err
				}
				bins[pod.Image] = bin
			}
			st.bin = bin
		}
		steps[i] = st
	}
	if _, err := e.volumes(ctx, p, false); err != nil {
		return sw, err
	}
	want := map[string]bool{}
	for _, pod := range p.Pods {
		want[pod.Name] = true
	}
	gone := map[string][]string{} // pod names by service
	for name, cs := range byPod {
		if !want[name] {
			svc := cs[0].Labels[kubernetes.LabelName]
			gone[svc] = append(gone[svc], name)
		}
	}
	retire := func(names []string) error {
		slices.Sort(names)
		var cs []container.Summary
		for _, name := range names {
			cs = append(cs, byPod[name]...)
			sw.Stopped = append(sw.Stopped, processOf(byPod[name][0]))
		}
		return e.removeAll(ctx, cs)
	}
	for i, st := range steps {
		if err := e.rollPod(ctx, p, st, timeout, &sw); err != nil {
			return sw, err
		}
		if svc := st.pod.Service; i == len(steps)-1 || steps[i+1].pod.Service != svc {
			// The service's entry point no longer routes to them.
			if err := retire(gone[svc]); err != nil {
				return sw, err
			}
			delete(gone, svc)
		}
	}
	// Services p no longer has; removeAll stops entry points first.
	var rest []string
	for _, names := range gone {
		rest = append(rest, names...)
	}
	if err := retire(rest); err != nil {
		return sw, err
	}
	if _, err := e.volumes(ctx, p, true); err != nil {
		return sw, err
	}
	d, err := e.endpoints(ctx, p)
	if err != nil {
		return sw, err
	}
	sw.Endpoints = d
	return sw, nil
}

// rollAction is what Roll does to one pod of the plan.
type rollAction int

const (
	rollKeep     rollAction = iota // current: not touched
	rollReplace                    // its program replaced in place
	rollRecreate                   // removed and created again
	rollStart                      // created
)

// rollStep is one pod of the plan, what Roll does to it, with its
// containers as Roll found them and the path of its image's program.
type rollStep struct {
	pod *PodPlan
	how rollAction
	cs  []container.Summary
	bin string
}

// howToRoll says what Roll does to pod, whose containers are cs.
func howToRoll(cs []container.Summary, pod *PodPlan) rollAction {
	if len(cs) == 0 {
		return rollStart
	}
	if len(cs) != 2+len(pod.Init)+len(pod.Sidecars) {
		return rollRecreate
	}
	frame := pod.frame()
	holders, programs, holderUp, hash := 0, 0, false, ""
	for _, c := range cs {
		if c.Labels[LabelFrameHash] != frame {
			return rollRecreate
		}
		switch c.Labels[LabelContainer] {
		case containerHolder:
			holders++
			holderUp = c.State == container.StateRunning
		case containerApp:
			programs++
			hash = c.Labels[LabelSpecHash]
		}
	}
	switch {
	case holders != 1 || programs != 1 || !holderUp:
		// No namespace to join, or not a pod Apply or Roll made whole.
		return rollRecreate
	case hash == pod.Hash:
		return rollKeep
	}
	return rollReplace
}

// rollPod does st to its pod, and adds it to sw once done.
func (e *Engine) rollPod(ctx context.Context, p *Plan, st rollStep, timeout time.Duration, sw *Swap) error {
	pod := st.pod
	switch st.how {
	case rollKeep:
		return nil
	case rollReplace:
		if err := e.replace(ctx, p, pod, st.cs, st.bin, timeout); err != nil {
			return err
		}
		sw.Replaced = append(sw.Replaced, pod.Process)
		return nil
	}
	hostPort := pod.HostPort
	if pod.Publish && hostPort == 0 {
		// The entry stays where clients found it.
		hostPort = published(st.cs, pod.Port)
	}
	if err := e.removeAll(ctx, st.cs); err != nil {
		return err
	}
	start := time.Now()
	err := e.createPodOn(ctx, p, pod, st.bin, hostPort)
	if err == nil {
		err = e.waitReady(ctx, p.App, pod, start, timeout)
	}
	if err != nil {
		// A pod half made serves nothing: remove it, as a failed Apply
		// does; the next Roll creates it again.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), downTimeout)
		defer cancel()
		cs, lerr := e.podContainers(uctx, p.App, pod.Name)
		if lerr == nil {
			lerr = e.remove(uctx, cs)
		}
		if lerr != nil {
			err = fmt.Errorf("%w (and removing it: %v)", err, lerr)
		}
		if st.how == rollRecreate {
			return fmt.Errorf("docker: pod %s had to be recreated, since more than its program changed, and is not running: %w", pod.Name, err)
		}
		return err
	}
	if st.how == rollRecreate {
		sw.Recreated = append(sw.Recreated, pod.Process)
	} else {
		sw.Started = append(sw.Started, pod.Process)
	}
	return nil
}

// published is the host port on which cs's holder publishes port, or 0.
func published(cs []container.Summary, port int) int {
	for _, c := range cs {
		if c.Labels[LabelContainer] != containerHolder {
			continue
		}
		for _, pt := range c.Ports {
			if int(pt.PrivatePort) == port && pt.PublicPort != 0 && pt.IP.Is4() {
				return int(pt.PublicPort)
			}
		}
	}
	return 0
}

// replace replaces the program of pod, whose containers are cs, in place:
// see Roll. The new program's readiness cannot be told by probing the
// pod's port, where the old one answers too, so replace waits for the new
// one to say it serves (see serving).
func (e *Engine) replace(ctx context.Context, p *Plan, pod *PodPlan, cs []container.Summary, bin string, timeout time.Duration) error {
	var holder, old container.Summary
	for _, c := range cs {
		switch c.Labels[LabelContainer] {
		case containerHolder:
			holder = c
		case containerApp:
			old = c
		}
	}
	image, err := e.imageID(ctx, pod.Image)
	if err != nil {
		return err
	}
	name := containerName(p.App, pod.Name, containerApp)
	// With a dot, which no sidecar's name (a DNS label) has.
	next := name + "." + pod.Hash[:12]
	// Left by a Roll that was interrupted.
	if _, err := e.c.ContainerRemove(ctx, next, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		return fmt.Errorf("docker: pod %s: removing %s: %w", pod.Name, next, err)
	}
	id, err := e.createProgram(ctx, pod, image, bin, next, container.NetworkMode("container:"+holder.ID))
	if err != nil {
		return err
	}
	if err := e.serving(ctx, p.App, pod, id, timeout); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), downTimeout)
		defer cancel()
		if _, rerr := e.c.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true}); rerr != nil && !isNotFound(rerr) {
			return fmt.Errorf("%w (and removing it: %v)", err, rerr)
		}
		return err
	}
	// Both serve on the pod's socket now: the old one drains and stops.
	if err := e.removeAll(ctx, []container.Summary{old}); err != nil {
		return fmt.Errorf("docker: pod %s: removing its old program: %w", pod.Name, err)
	}
	if _, err := e.c.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: name}); err != nil {
		return fmt.Errorf("docker: pod %s: naming its new program %s: %w", pod.Name, name, err)
	}
	return nil
}

// serving starts the program container id of pod and waits until it says
// it serves: the SDK logs "serving" with the process's role, service and
// index once it holds the pod's socket, right before it accepts on it
// (sdk's serveRole), as the local target's programs write on
// KILN_READY_FD. It fails when the program exits (the engine may have
// restarted it already) or has not said so within timeout.
func (e *Engine) serving(ctx context.Context, app string, pod *PodPlan, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if _, err := e.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("docker: pod %s: starting its new program: %w", pod.Name, err)
	}
	rc, err := e.c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return fmt.Errorf("docker: pod %s: reading its new program's output, where it says it serves: %w", pod.Name, err)
	}
	defer rc.Close()
	said := make(chan struct{})
	go func() {
		pr, pw := io.Pipe()
		go func() { stdcopy.StdCopy(pw, pw, rc); pw.Close() }()
		s := bufio.NewScanner(pr)
		for s.Scan() {
			if isServing(s.Text(), pod) {
				close(said)
				break
			}
		}
		io.Copy(io.Discard, pr) // until rc is closed
	}()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	tail := func() string { return e.tail(context.WithoutCancel(ctx), id) }
	for {
		select {
		case <-said:
			return nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("docker: pod %s: its new program did not say it serves within %s; the old one keeps serving; its last output:\n%s", pod.Name, timeout, tail())
			}
			return ctx.Err()
		case <-tick.C:
		}
		ins, err := e.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return fmt.Errorf("docker: pod %s: its new program: %w", pod.Name, err)
		}
		st := ins.Container.State
		if ins.Container.RestartCount > 0 || st.Status == container.StateExited || st.Status == container.StateDead || st.Restarting {
			status := st.ExitCode
			if st.Running {
				status = e.lastExit(ctx, app, strings.TrimPrefix(ins.Container.Name, "/"), start)
			}
			return fmt.Errorf("docker: pod %s: its new program exited with status %d before it served; the old one keeps serving; its last output:\n%s", pod.Name, status, tail())
		}
	}
}

// isServing reports whether line is the SDK's "serving" line of pod's
// program: time=… level=INFO msg=serving role=leaf service=kv index=0 …
func isServing(line string, pod *PodPlan) bool {
	return strings.Contains(line, " msg=serving role="+string(pod.Role)+" service="+pod.Service+" index="+strconv.Itoa(pod.Index)+" ")
}

// processOf names the pod of container c as logs do: "kv/shard-1".
func processOf(c container.Summary) string {
	svc, pod := c.Labels[kubernetes.LabelName], c.Labels[LabelPod]
	return svc + "/" + strings.TrimPrefix(pod, svc+"-")
}
