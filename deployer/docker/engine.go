package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/internal/engine"
	"github.com/kiln-dev/kiln/internal/lines"
	"github.com/kiln-dev/kiln/internal/runas"
	"github.com/kiln-dev/kiln/patterns"
)

// readyTimeout bounds Apply's wait for each program container to be
// ready, from the end of its pod's start.
const readyTimeout = 2 * time.Minute

// stopSeconds is how long a stopping program may drain before the engine
// kills it: patterns.DefaultGrace and a second.
var stopSeconds = int(patterns.DefaultGrace.Seconds()) + 1

// Engine applies plans to one Docker engine.
type Engine struct {
	c *client.Client
}

// Connect connects to the engine that DOCKER_HOST names (the local socket
// by default).
func Connect(ctx context.Context) (*Engine, error) {
	c, err := engine.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	return &Engine{c: c}, nil
}

// Close closes the connection to the engine.
func (e *Engine) Close() error { return e.c.Close() }

// appFilter selects the objects kiln made for app.
func appFilter(app string) client.Filters {
	return make(client.Filters).
		Add("label", kubernetes.LabelInstance+"="+app, kubernetes.LabelManagedBy+"="+kubernetes.ManagedBy)
}

func (e *Engine) containers(ctx context.Context, app string) ([]container.Summary, error) {
	r, err := e.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: appFilter(app).Add("label", LabelPod)})
	if err != nil {
		return nil, fmt.Errorf("docker: listing the containers of %s: %w", app, err)
	}
	return r.Items, nil
}

func (e *Engine) podContainers(ctx context.Context, app, pod string) ([]container.Summary, error) {
	r, err := e.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: appFilter(app).Add("label", LabelPod+"="+pod)})
	if err != nil {
		return nil, fmt.Errorf("docker: listing the containers of %s: %w", pod, err)
	}
	return r.Items, nil
}

// Apply makes the engine run p: it creates what is missing, recreates the
// pods whose plan changed (by LabelSpecHash), and removes the app's
// objects that p no longer has. It returns once every program container
// is ready (see waitReady), with each service's URL on the host, in app
// order.
//
// A pod that fails to start (an init container or its program exits, its
// host port is taken) fails Apply with its exit code and last log lines.
// A failed Apply removes what it made: every pod it created or recreated,
// the volumes it created and, if the app had no container before it, the
// app's network, so that a failed first Apply leaves nothing; the pods
// it found current stay.
//
// Apply leaves the programs to the engine's unless-stopped restart
// policy, which restarts a program that crashes but not one killed
// through the engine (docker kill), which it counts as stopped by hand:
// only Run, which stays to supervise, restarts those.
func (e *Engine) Apply(ctx context.Context, p *Plan) (_ patterns.Discovery, err error) {
	start := time.Now()
	existing, err := e.containers(ctx, p.App)
	if err != nil {
		return nil, err
	}
	var made made
	defer func() {
		if err != nil {
			if uerr := e.undo(ctx, p.App, made, len(existing) == 0); uerr != nil {
				err = fmt.Errorf("%w (and removing what it made: %v)", err, uerr)
			}
		}
	}()
	if err := e.network(ctx, p); err != nil {
		return nil, err
	}
	byPod := map[string][]container.Summary{}
	for _, c := range existing {
		byPod[c.Labels[LabelPod]] = append(byPod[c.Labels[LabelPod]], c)
	}
	want := map[string]bool{}
	for _, pod := range p.Pods {
		want[pod.Name] = true
	}
	// Pods the plan dropped go first, entry points before backends.
	var gone []string
	for name := range byPod {
		if !want[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		if err := e.removeAll(ctx, byPod[name]); err != nil {
			return nil, err
		}
	}
	entrypoints := map[string]string{}
	var changed []*PodPlan
	for i := range p.Pods {
		pod := &p.Pods[i]
		if current(byPod[pod.Name], pod) {
			continue
		}
		if _, ok := entrypoints[pod.Image]; !ok {
			bin, err := e.entrypoint(ctx, pod.Image)
			if err != nil {
				return nil, err
			}
			entrypoints[pod.Image] = bin
		}
		changed = append(changed, pod)
	}
	if made.volumes, err = e.volumes(ctx, p, true); err != nil {
		return nil, err
	}
	for _, pod := range changed {
		if err := e.removeAll(ctx, byPod[pod.Name]); err != nil {
			return nil, err
		}
		made.pods = append(made.pods, pod.Name)
	}
	// Pods start together, as a cluster starts a workload's pods: each
	// container costs the engine a few hundred milliseconds, and nothing
	// orders them, since routers find their backends by name when asked.
	// Each pod's wait for readiness starts as soon as it is created.
	g, gctx := errgroup.WithContext(ctx)
	creating := make(chan struct{}, 8)
	isChanged := map[string]bool{}
	for _, pod := range changed {
		isChanged[pod.Name] = true
		g.Go(func() error {
			creating <- struct{}{}
			err := e.createPod(gctx, p, pod, entrypoints[pod.Image])
			<-creating
			if err != nil {
				return err
			}
			return e.waitReady(gctx, p.App, pod, start, readyTimeout)
		})
	}
	for i := range p.Pods {
		if pod := &p.Pods[i]; !isChanged[pod.Name] {
			g.Go(func() error { return e.waitReady(gctx, p.App, pod, start, readyTimeout) })
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return e.endpoints(ctx, p)
}

// made is what one Apply created.
type made struct {
	pods    []string // created or recreated
	volumes []string
}

// undo removes what a failed Apply made, and the app's network too when
// the app had no container before (alone). It runs after ctx has ended
// too: a deploy interrupted while its pods start leaves nothing either.
func (e *Engine) undo(ctx context.Context, app string, m made, alone bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), downTimeout)
	defer cancel()
	// A create that the failure canceled may still complete in the
	// engine after its call returned: a volume then still in use by such
	// a container is tried again once its pod's containers are removed.
	for try := 0; ; try++ {
		for _, pod := range m.pods {
			cs, err := e.podContainers(ctx, app, pod)
			if err != nil {
				return err
			}
			if err := e.removeAll(ctx, cs); err != nil {
				return err
			}
		}
		inUse := error(nil)
		for _, v := range m.volumes {
			_, err := e.c.VolumeRemove(ctx, v, client.VolumeRemoveOptions{Force: true})
			switch {
			case err == nil || isNotFound(err):
			case strings.Contains(err.Error(), "in use") && try < 20:
				inUse = err
			default:
				return fmt.Errorf("docker: removing volume %s: %w", v, err)
			}
		}
		if inUse == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !alone {
		return nil
	}
	// By label: a network of that name that is not kiln's stays.
	nets, err := e.c.NetworkList(ctx, client.NetworkListOptions{Filters: appFilter(app)})
	if err != nil {
		return fmt.Errorf("docker: listing networks: %w", err)
	}
	for _, n := range nets.Items {
		if _, err := e.c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			return fmt.Errorf("docker: removing network %s: %w", n.Name, err)
		}
	}
	return nil
}

// current reports whether cs are all of pod's containers, made from its
// plan as it is now.
func current(cs []container.Summary, pod *PodPlan) bool {
	if len(cs) != 2+len(pod.Init)+len(pod.Sidecars) {
		return false
	}
	for _, c := range cs {
		if c.Labels[LabelSpecHash] != pod.Hash {
			return false
		}
	}
	return true
}

func (e *Engine) network(ctx context.Context, p *Plan) error {
	r, err := e.c.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", p.Network.Name)})
	if err != nil {
		return fmt.Errorf("docker: listing networks: %w", err)
	}
	for _, n := range r.Items {
		if n.Name == p.Network.Name {
			if n.Labels[kubernetes.LabelInstance] != p.App || n.Labels[kubernetes.LabelManagedBy] != kubernetes.ManagedBy {
				return fmt.Errorf("docker: network %s exists and is not kiln's for app %s; remove it or rename the app", n.Name, p.App)
			}
			return nil
		}
	}
	if _, err := e.c.NetworkCreate(ctx, p.Network.Name, client.NetworkCreateOptions{Driver: "bridge", Labels: p.Network.Labels}); err != nil {
		return fmt.Errorf("docker: creating network %s: %w", p.Network.Name, err)
	}
	return nil
}

// volumes creates the plan's volumes and, with prune, removes the app's
// others. It returns the names of those it created, even when it fails.
func (e *Engine) volumes(ctx context.Context, p *Plan, prune bool) (made []string, err error) {
	r, err := e.c.VolumeList(ctx, client.VolumeListOptions{Filters: appFilter(p.App)})
	if err != nil {
		return nil, fmt.Errorf("docker: listing volumes: %w", err)
	}
	want := map[string]bool{}
	for _, v := range p.Volumes {
		want[v.Name] = true
	}
	have := map[string]bool{}
	for _, v := range r.Items {
		have[v.Name] = true
		// An instance's storage outlives its pod: a shard removed by a
		// scale down finds its data again when it comes back.
		if prune && !want[v.Name] && v.Labels[LabelData] != "true" {
			if _, err := e.c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil {
				return nil, fmt.Errorf("docker: removing volume %s: %w", v.Name, err)
			}
		}
	}
	created := map[string][]string{} // by pod
	for _, v := range p.Volumes {
		if have[v.Name] {
			continue
		}
		if _, err := e.c.VolumeCreate(ctx, client.VolumeCreateOptions{Name: v.Name, Labels: v.Labels}); err != nil {
			return made, fmt.Errorf("docker: creating volume %s: %w", v.Name, err)
		}
		made = append(made, v.Name)
		created[v.Pod] = append(created[v.Pod], v.Name)
	}
	for _, pod := range p.Pods {
		if vs := created[pod.Name]; len(vs) > 0 {
			if err := e.own(ctx, p, &pod, vs); err != nil {
				return made, err
			}
		}
	}
	return made, nil
}

// own makes the roots of a pod's new volumes owned by user, so that its
// containers can write there: the engine makes a fresh volume's root
// owned by root, and an image FROM scratch has no directory at the mount
// path to copy its owner from, nor a chown to run. A container of the
// pod's image, created with the volumes mounted at /v0, /v1, … and never
// started, receives a tar archive of those directories owned by user; the
// engine extracts it as it is, owner included, onto the volumes' roots.
func (e *Engine) own(ctx context.Context, p *Plan, pod *PodPlan, vols []string) error {
	image, err := e.imageID(ctx, pod.Image)
	if err != nil {
		return err
	}
	u, g := runas.UID, runas.GID
	var ms []mount.Mount
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, v := range vols {
		dir := "v" + strconv.Itoa(i)
		ms = append(ms, mount.Mount{Type: mount.TypeVolume, Source: v, Target: "/" + dir})
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, Uid: u, Gid: g, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	r, err := e.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       containerName(p.App, pod.Name, "volumes"),
		Config:     &container.Config{Image: image, User: user, Labels: labels(pod, "volumes")},
		HostConfig: &container.HostConfig{Mounts: ms, NetworkMode: "none"},
	})
	if err != nil {
		return fmt.Errorf("docker: pod %s: creating a container to own its volumes: %w", pod.Name, err)
	}
	defer e.c.ContainerRemove(context.WithoutCancel(ctx), r.ID, client.ContainerRemoveOptions{Force: true})
	if _, err := e.c.CopyToContainer(ctx, r.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		return fmt.Errorf("docker: pod %s: making its volumes %s owned by %s: %w", pod.Name, strings.Join(vols, ", "), user, err)
	}
	return nil
}

// resolve finds ref in the engine without pulling. An image loaded from a
// tarball has no repo digest, so ref's digest may be unknown to the
// engine: its tag is looked up then.
func (e *Engine) resolve(ctx context.Context, ref string) (client.ImageInspectResult, error) {
	ins, err := e.c.ImageInspect(ctx, ref)
	if err != nil {
		if tag, _, ok := strings.Cut(ref, "@"); ok && tag != "" && strings.Contains(tag[strings.LastIndex(tag, "/")+1:], ":") {
			if ins2, err2 := e.c.ImageInspect(ctx, tag); err2 == nil {
				return ins2, nil
			}
		}
		return ins, fmt.Errorf("docker: image %s is not in the engine (kiln never pulls): %w; build it into the engine first", ref, err)
	}
	return ins, nil
}

// entrypoint is the path of the image's program, from its Entrypoint.
func (e *Engine) entrypoint(ctx context.Context, ref string) (string, error) {
	ins, err := e.resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	if ins.Config == nil || len(ins.Config.Entrypoint) == 0 {
		return "", fmt.Errorf("docker: image %s has no entrypoint; build it with kiln's builder", ref)
	}
	return ins.Config.Entrypoint[0], nil
}

func (e *Engine) imageID(ctx context.Context, ref string) (string, error) {
	ins, err := e.resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	return ins.ID, nil
}

func containerName(app, pod, c string) string {
	if c == containerHolder {
		return "kiln-" + app + "-" + pod
	}
	return "kiln-" + app + "-" + pod + "-" + c
}

func labels(pod *PodPlan, c string) map[string]string {
	l := map[string]string{LabelContainer: c, LabelSpecHash: pod.Hash, LabelFrameHash: pod.frame()}
	for k, v := range pod.Labels {
		l[k] = v
	}
	return l
}

// secured sets what every container shares: the non-root user, a
// read-only root, no new privileges, no capabilities.
func secured(hc *container.HostConfig, restart bool) *container.HostConfig {
	hc.ReadonlyRootfs = true
	hc.SecurityOpt = []string{"no-new-privileges"}
	hc.CapDrop = []string{"ALL"}
	if restart {
		hc.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
	}
	return hc
}

func mounts(ms []MountPlan) []mount.Mount {
	var out []mount.Mount
	tmp := false
	for _, m := range ms {
		out = append(out, mount.Mount{Type: mount.TypeVolume, Source: m.Volume, Target: m.Path})
		tmp = tmp || m.Path == "/tmp"
	}
	if !tmp {
		// The root file system is read-only; a program's os.TempDir
		// still works, as on the other targets.
		out = append(out, mount.Mount{Type: mount.TypeTmpfs, Target: "/tmp", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: tmpSize, Mode: 0o1777}})
	}
	return out
}

// tmpSize bounds a container's /tmp, which is in memory.
const tmpSize = 64 << 20

// createPod creates and starts pod's containers: the holder, each init
// container to completion, then the program and its sidecars.
func (e *Engine) createPod(ctx context.Context, p *Plan, pod *PodPlan, bin string) error {
	return e.createPodOn(ctx, p, pod, bin, pod.HostPort)
}

// createPodOn is createPod publishing an entry pod on hostPort (0: a free
// one) instead of pod.HostPort: Roll keeps the port of an entry it
// recreates.
func (e *Engine) createPodOn(ctx context.Context, p *Plan, pod *PodPlan, bin string, hostPort int) error {
	image, err := e.imageID(ctx, pod.Image)
	if err != nil {
		return err
	}
	port := network.MustParsePort(strconv.Itoa(pod.Port) + "/tcp")
	holderCfg := &container.Config{
		Image:      image,
		User:       user,
		Env:        pod.HolderEnv,
		Labels:     labels(pod, containerHolder),
		StopSignal: "SIGTERM",
	}
	hc := secured(&container.HostConfig{NetworkMode: container.NetworkMode(p.Network.Name)}, true)
	if pod.Publish {
		holderCfg.ExposedPorts = network.PortSet{port: {}}
		hp := ""
		if hostPort != 0 {
			hp = strconv.Itoa(hostPort)
		}
		hc.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hp}}}
	}
	holder, err := e.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       containerName(p.App, pod.Name, containerHolder),
		Config:     holderCfg,
		HostConfig: hc,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			p.Network.Name: {Aliases: pod.Aliases},
		}},
	})
	if err != nil {
		return fmt.Errorf("docker: pod %s: creating its holder: %w", pod.Name, err)
	}
	if _, err := e.c.ContainerStart(ctx, holder.ID, client.ContainerStartOptions{}); err != nil {
		if pod.Publish && hostPort != 0 {
			return fmt.Errorf("docker: pod %s: cannot publish on host port 127.0.0.1:%d, which is in use or refused; choose another port (Options.Port; 0 picks a free one): %w", pod.Name, hostPort, err)
		}
		return fmt.Errorf("docker: pod %s: starting its holder: %w", pod.Name, err)
	}
	netns := container.NetworkMode("container:" + holder.ID)
	for _, c := range pod.Init {
		if err := e.runInit(ctx, p, pod, c, netns); err != nil {
			return err
		}
	}
	app, err := e.createProgram(ctx, pod, image, bin, containerName(p.App, pod.Name, containerApp), netns)
	if err != nil {
		return err
	}
	if _, err := e.c.ContainerStart(ctx, app, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("docker: pod %s: starting its program: %w", pod.Name, err)
	}
	for _, c := range pod.Sidecars {
		id, err := e.createSide(ctx, p, pod, c, netns, true)
		if err != nil {
			return err
		}
		if _, err := e.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			return fmt.Errorf("docker: pod %s: starting sidecar %s: %w", pod.Name, c.Name, err)
		}
	}
	return nil
}

// createProgram creates pod's program container, named name, from image,
// whose program is bin, in the network namespace netns, and returns its
// ID.
func (e *Engine) createProgram(ctx context.Context, pod *PodPlan, image, bin, name string, netns container.NetworkMode) (string, error) {
	stop := stopSeconds
	app, err := e.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:  image,
			User:   user,
			Env:    pod.Env,
			Labels: labels(pod, containerApp),
			Healthcheck: &container.HealthConfig{
				Test:     []string{"CMD", bin, patterns.ProbeArg, "http://127.0.0.1:" + strconv.Itoa(pod.Port) + "/readyz"},
				Interval: time.Second,
				Timeout:  2 * time.Second,
				Retries:  3,
			},
			StopTimeout: &stop,
		},
		HostConfig: secured(&container.HostConfig{NetworkMode: netns, Mounts: mounts(pod.Mounts)}, true),
	})
	if err != nil {
		return "", fmt.Errorf("docker: pod %s: creating its program container: %w", pod.Name, err)
	}
	return app.ID, nil
}

func (e *Engine) createSide(ctx context.Context, p *Plan, pod *PodPlan, c ContainerPlan, netns container.NetworkMode, restart bool) (string, error) {
	image, err := e.imageID(ctx, c.Image)
	if err != nil {
		return "", fmt.Errorf("pod %s, container %s: %w", pod.Name, c.Name, err)
	}
	kind := "sidecar"
	if !restart {
		kind = "init container"
	}
	r, err := e.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       containerName(p.App, pod.Name, c.Name),
		Config:     &container.Config{Image: image, User: user, Cmd: c.Args, Env: c.Env, Labels: labels(pod, c.Name)},
		HostConfig: secured(&container.HostConfig{NetworkMode: netns, Mounts: mounts(c.Mounts)}, restart),
	})
	if err != nil {
		return "", fmt.Errorf("docker: pod %s: creating %s %s: %w", pod.Name, kind, c.Name, err)
	}
	return r.ID, nil
}

// runInit runs one init container to completion.
func (e *Engine) runInit(ctx context.Context, p *Plan, pod *PodPlan, c ContainerPlan, netns container.NetworkMode) error {
	id, err := e.createSide(ctx, p, pod, c, netns, false)
	if err != nil {
		return err
	}
	wait := e.c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := e.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("docker: pod %s: starting init container %s: %w", pod.Name, c.Name, err)
	}
	select {
	case r := <-wait.Result:
		if r.StatusCode != 0 {
			return fmt.Errorf("docker: pod %s: init container %s exited with status %d; its last output:\n%s", pod.Name, c.Name, r.StatusCode, e.tail(ctx, id))
		}
		return nil
	case err := <-wait.Error:
		return fmt.Errorf("docker: pod %s: waiting for init container %s: %w", pod.Name, c.Name, err)
	}
}

// tail is a container's last 20 lines of output, indented.
func (e *Engine) tail(ctx context.Context, id string) string {
	rc, err := e.c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	if err != nil {
		return "  (no output: " + err.Error() + ")"
	}
	defer rc.Close()
	var buf bytes.Buffer
	stdcopy.StdCopy(&buf, &buf, rc)
	s := strings.TrimRight(buf.String(), "\n")
	if s == "" {
		return "  (no output)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// waitReady waits for pod's program to be ready: the engine says it is
// healthy, or, sooner, its own probe answers. The engine runs the health
// check only one interval after the container starts; Apply runs the
// same command itself every probeEvery meanwhile, as a startup probe
// does. A program that died since start fails it, naming the exit
// status; one not ready within timeout fails it too.
func (e *Engine) waitReady(ctx context.Context, app string, pod *PodPlan, start time.Time, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := containerName(app, pod.Name, containerApp)
	for {
		ins, err := e.c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil {
			return e.notReady(ctx, pod, name, timeout, err)
		}
		st := ins.Container.State
		if st.Health != nil && st.Health.Status == container.Healthy {
			return nil
		}
		if ins.Container.RestartCount > 0 || st.Status == container.StateExited || st.Status == container.StateDead || st.Restarting {
			status := st.ExitCode
			if st.Running {
				// Restarted already: the state's status is the new run's.
				status = e.lastExit(ctx, app, name, start)
			}
			return fmt.Errorf("docker: pod %s: its program exited with status %d before it was healthy; its last output:\n%s", pod.Name, status, e.tail(context.WithoutCancel(ctx), name))
		}
		if st.Running && e.probe(ctx, ins.Container.ID, ins.Container.Config.Healthcheck) {
			return nil
		}
		select {
		case <-ctx.Done():
			return e.notReady(ctx, pod, name, timeout, ctx.Err())
		case <-time.After(probeEvery):
		}
	}
}

// notReady is waitReady's error once ctx ended or the engine failed.
func (e *Engine) notReady(ctx context.Context, pod *PodPlan, name string, timeout time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("docker: pod %s: not healthy within %s; its last output:\n%s", pod.Name, timeout, e.tail(context.WithoutCancel(ctx), name))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("docker: pod %s: %w", pod.Name, err)
}

// probeEvery is how often waitReady runs a starting program's probe.
const probeEvery = 150 * time.Millisecond

// probe runs the health check hc once in container id, through the
// engine's exec API, and reports whether it exited 0. Any failure to run
// it (the container is between runs, the engine is busy) is a no.
func (e *Engine) probe(ctx context.Context, id string, hc *container.HealthConfig) bool {
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		return false
	}
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	x, err := e.c.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: hc.Test[1:], AttachStdout: true, AttachStderr: true})
	if err != nil {
		return false
	}
	// The attached stream ends when the probe exits.
	r, err := e.c.ExecAttach(ctx, x.ID, client.ExecAttachOptions{})
	if err != nil {
		return false
	}
	deadline, _ := ctx.Deadline()
	r.Conn.SetDeadline(deadline)
	_, err = io.Copy(io.Discard, r.Reader)
	r.Close()
	if err != nil {
		return false
	}
	for {
		ins, err := e.c.ExecInspect(ctx, x.ID, client.ExecInspectOptions{})
		if err != nil {
			return false
		}
		if !ins.Running {
			return ins.ExitCode == 0
		}
		// The engine may record the exit just after the stream ends.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// lastExit is the exit status of container name's last death since
// start, read from the engine's event log, or -1 if it has none.
func (e *Engine) lastExit(ctx context.Context, app, name string, start time.Time) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	f := appFilter(app).Add("type", string(events.ContainerEventType)).Add("event", string(events.ActionDie)).Add("container", name)
	r := e.c.Events(ctx, client.EventsListOptions{Since: timestamp(start), Until: timestamp(time.Now()), Filters: f})
	status := -1
	for {
		select {
		case m := <-r.Messages:
			if n, err := strconv.Atoi(m.Actor.Attributes["exitCode"]); err == nil {
				status = n
			}
		case <-r.Err:
			// The stream ends with io.EOF once it reaches Until.
			return status
		}
	}
}

// endpoints reads each entry pod's published port.
func (e *Engine) endpoints(ctx context.Context, p *Plan) (patterns.Discovery, error) {
	var d patterns.Discovery
	for _, pod := range p.Pods {
		if !pod.Publish {
			continue
		}
		ins, err := e.c.ContainerInspect(ctx, containerName(p.App, pod.Name, containerHolder), client.ContainerInspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("docker: pod %s: %w", pod.Name, err)
		}
		var hp string
		if ns := ins.Container.NetworkSettings; ns != nil {
			for _, b := range ns.Ports[network.MustParsePort(strconv.Itoa(pod.Port)+"/tcp")] {
				if b.HostIP.Is4() {
					hp = b.HostPort
				}
			}
		}
		if hp == "" {
			return nil, fmt.Errorf("docker: pod %s: port %d is not published", pod.Name, pod.Port)
		}
		d = append(d, patterns.Endpoint{Service: pod.Service, URL: "http://127.0.0.1:" + hp})
	}
	return d, nil
}

// removeAll stops the program containers of cs, entry points first so they
// drain while their backends still answer, then removes every one.
func (e *Engine) removeAll(ctx context.Context, cs []container.Summary) error {
	if len(cs) == 0 {
		return nil
	}
	var fronts, backs []string
	for _, c := range cs {
		if c.Labels[LabelContainer] != containerApp || c.State != container.StateRunning {
			continue
		}
		if c.Labels[kubernetes.LabelComponent] == string(patterns.RoleRouter) || c.Labels[kubernetes.LabelComponent] == string(patterns.RoleRoot) {
			fronts = append(fronts, c.ID)
		} else {
			backs = append(backs, c.ID)
		}
	}
	for _, group := range [][]string{fronts, backs} {
		errs := make(chan error, len(group))
		for _, id := range group {
			go func() {
				_, err := e.c.ContainerStop(ctx, id, client.ContainerStopOptions{})
				errs <- err
			}()
		}
		for range group {
			<-errs // a container that will not stop is removed by force below
		}
	}
	return e.remove(ctx, cs)
}

// remove removes cs by force, sidecars and programs before their holders.
func (e *Engine) remove(ctx context.Context, cs []container.Summary) error {
	slices.SortStableFunc(cs, func(a, b container.Summary) int {
		ha, hb := a.Labels[LabelContainer] == containerHolder, b.Labels[LabelContainer] == containerHolder
		switch {
		case ha == hb:
			return 0
		case hb:
			return -1
		}
		return 1
	})
	for _, c := range cs {
		if _, err := e.c.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return fmt.Errorf("docker: removing container %s: %w", strings.TrimPrefix(first(c.Names), "/"), err)
		}
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// DeleteData removes the volumes of app's storage, which Down keeps, and
// returns their names. A volume a container still uses is not removed:
// bring the app down first.
func (e *Engine) DeleteData(ctx context.Context, app string) ([]string, error) {
	f := appFilter(app)
	f.Add("label", LabelData+"=true")
	vols, err := e.c.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: listing volumes: %w", err)
	}
	var removed []string
	for _, v := range vols.Items {
		if _, err := e.c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil && !isNotFound(err) {
			return removed, fmt.Errorf("docker: removing volume %s: %w", v.Name, err)
		}
		removed = append(removed, "volume "+v.Name)
	}
	return removed, nil
}

func isNotFound(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "No such") || strings.Contains(err.Error(), "not found") || strings.Contains(err.Error(), "is already in progress"))
}

// Down removes every container, network and volume labelled with app,
// but for the volumes of its instances' storage (see DeleteData), and
// waits until they are gone. It returns the names of what it removed,
// containers first.
func (e *Engine) Down(ctx context.Context, app string) ([]string, error) {
	cs, err := e.containers(ctx, app)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, c := range cs {
		removed = append(removed, "container "+strings.TrimPrefix(first(c.Names), "/"))
	}
	if err := e.removeAll(ctx, cs); err != nil {
		return removed, err
	}
	nets, err := e.c.NetworkList(ctx, client.NetworkListOptions{Filters: appFilter(app)})
	if err != nil {
		return removed, fmt.Errorf("docker: listing networks: %w", err)
	}
	for _, n := range nets.Items {
		if _, err := e.c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			return removed, fmt.Errorf("docker: removing network %s: %w", n.Name, err)
		}
		removed = append(removed, "network "+n.Name)
	}
	vols, err := e.c.VolumeList(ctx, client.VolumeListOptions{Filters: appFilter(app)})
	if err != nil {
		return removed, fmt.Errorf("docker: listing volumes: %w", err)
	}
	for _, v := range vols.Items {
		if v.Labels[LabelData] == "true" {
			continue
		}
		if _, err := e.c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return removed, fmt.Errorf("docker: removing volume %s: %w", v.Name, err)
		}
		removed = append(removed, "volume "+v.Name)
	}
	// Removal by force is synchronous, but a restart policy may race it:
	// check until nothing is left.
	for deadline := time.Now().Add(30 * time.Second); ; {
		left, err := e.containers(ctx, app)
		if err != nil {
			return removed, err
		}
		if len(left) == 0 {
			return removed, nil
		}
		if time.Now().After(deadline) {
			return removed, fmt.Errorf("docker: %d containers of %s are still there after 30s", len(left), app)
		}
		if err := e.removeAll(ctx, left); err != nil {
			return removed, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Follow copies every program container's output of app to w, each line
// prefixed with its process ("kv/shard-1 | "), from now until ctx ends.
// Containers that start later (recreated by Apply, restarted by the
// engine or by Run) are followed too, and a container's lines are followed
// again after each restart.
func (e *Engine) Follow(ctx context.Context, app string, w io.Writer) {
	e.followSince(ctx, app, w, time.Now())
}

// followSince is Follow from since on: Run passes the time it started, so
// that the lines the programs print while Apply waits are not lost.
func (e *Engine) followSince(ctx context.Context, app string, w io.Writer, since time.Time) {
	out := &lines.Sync{W: w}
	following := map[string]bool{}
	done := make(chan string)
	for {
		cs, err := e.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: appFilter(app).Add("label", LabelContainer+"="+containerApp)})
		if err == nil {
			for _, c := range cs.Items {
				if following[c.ID] {
					continue
				}
				following[c.ID] = true
				go func() {
					e.follow(ctx, c.ID, since, &lines.Prefix{Prefix: processOf(c) + " | ", W: out})
					select {
					case done <- c.ID:
					case <-ctx.Done():
					}
				}()
			}
		}
		select {
		case <-ctx.Done():
			return
		case id := <-done:
			delete(following, id)
		case <-time.After(time.Second):
		}
	}
}

// follow streams one container's output from since, again after each
// restart, until the container is gone or ctx ends. After a stream ends
// it resumes from the end of the run it streamed (State.FinishedAt), so
// that a run which started meanwhile is not missed.
func (e *Engine) follow(ctx context.Context, id string, since time.Time, w io.Writer) {
	for ctx.Err() == nil {
		before, err := e.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return
		}
		rc, err := e.c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Since: timestamp(since)})
		if err != nil {
			return
		}
		stdcopy.StdCopy(w, w, rc)
		rc.Close()
		after, err := e.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return
		}
		finished, _ := time.Parse(time.RFC3339Nano, after.Container.State.FinishedAt)
		switch {
		case !after.Container.State.Running || after.Container.State.FinishedAt != before.Container.State.FinishedAt:
			if finished.After(since) {
				since = finished
			}
		case !before.Container.State.Running:
			// Created, and started since its empty stream ended: all of
			// its run is still to stream.
		default:
			since = time.Now() // the stream broke; the run goes on
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// timestamp is t in the engine's "since" form.
func timestamp(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }
