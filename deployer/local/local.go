// Package local is kiln's default target: it runs an app's topology as
// processes on 127.0.0.1, with no daemon. Every process is the program's own
// binary, re-executed with role variables.
//
// The deployer opens each process's listening socket itself and hands it
// down, so a port never races with another program, and a crashed process
// that is restarted finds the connections that arrived meanwhile waiting in
// the socket's queue. Jobs and cron jobs run beside them, each run a process
// that is not restarted but retried (see Run).
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/internal/child"
	"github.com/kiln-dev/kiln/internal/lines"
	"github.com/kiln-dev/kiln/internal/restart"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/patterns/lease"
)

// Options configure a local deployment.
type Options struct {
	// Binary is the program every process runs, unless Binaries names
	// another for its service.
	Binary string
	// Binaries are the programs of the services that are built from a main
	// package of their own, by service name. nil means Binary runs every
	// service.
	Binaries map[string]string
	// Port is the entry port of the first service; 0 picks a free one.
	Port int
	// Env is the environment every process starts from; nil means
	// os.Environ().
	Env []string
	// Output receives every process's output, each line prefixed with the
	// process's name. nil means os.Stderr.
	Output io.Writer
	// ReadyTimeout bounds the wait for every process to answer /readyz;
	// 0 means 30s.
	ReadyTimeout time.Duration
	// Grace is how long a stopping process may drain before it is killed,
	// and how long a job's run has after SIGTERM (its deadline passed, a
	// cron run replaces it, the app stops); 0 means 10s.
	Grace time.Duration
	// StateDir is where the app keeps what outlives a run: each shard's
	// or leaf's storage (data/SERVICE/INSTANCE) and the last fencing token
	// of each lease. "" means StateDir(app).
	StateDir string
	// Logger receives the deployer's own events (restarts, failures to
	// start). nil logs text to Output.
	Logger *slog.Logger
	// Started, when set, is called by Run once every process is ready and
	// the entry points are printed, with the running deployment (a driver
	// serves its dashboard from it); an error stops everything and Run
	// returns it. Start and Update never call it.
	Started func(*Deployment) error
}

// Endpoint is where one service serves.
type Endpoint = patterns.Endpoint

// Process describes one running process of the topology.
type Process struct {
	Name     string // "kv/shard-1"
	Workload string // "kv-shard"
	Binary   string
	Index    int
	Addr     string // 127.0.0.1:port
	PID      int    // 0 while restarting
	Restarts int
	State    State
	Since    time.Time // when it entered State
	// Exit says how its last run ended ("signal: killed"); "" until one
	// has.
	Exit string
}

// State is where a process is in its life.
type State string

// The states of a process. A process that exits is started again after a
// backoff, and is restarting from its exit until it is ready again.
const (
	Starting   State = "starting"   // its first run has not answered /readyz yet
	Ready      State = "ready"      // it answers /readyz
	Restarting State = "restarting" // it exited, and is not ready again yet
	Stopped    State = "stopped"    // stopped, or refusing its configuration
)

// Deployment is a running topology.
type Deployment struct {
	opts     Options
	out      *lines.Sync
	log      *slog.Logger
	stopOnce sync.Once

	mu        sync.Mutex // guards procs, endpoints and topo, which Update replaces, and leases
	procs     []*proc
	endpoints patterns.Discovery
	topo      *patterns.Topology
	leases    *leaseTable // started by the first topology that takes a lease
}

// Start starts every process of t, backends first, and returns once each one
// answers /readyz. On error nothing it started is left running.
func Start(ctx context.Context, t *patterns.Topology, opts Options) (*Deployment, error) {
	for _, w := range slices.Concat(t.Workloads, t.Jobs) {
		if opts.binary(w.Service) == "" {
			return nil, fmt.Errorf("local: no binary runs service %q: set Options.Binary or Options.Binaries", w.Service)
		}
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Output == nil {
		opts.Output = os.Stderr
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	if opts.Grace == 0 {
		opts.Grace = 10 * time.Second
	}
	d := &Deployment{opts: opts, out: &lines.Sync{W: opts.Output}, log: opts.Logger}
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(opts.Output, nil))
	}

	procs, endpoints, _, err := d.place(t, opts, nil)
	if err != nil {
		return nil, err
	}
	d.procs, d.endpoints, d.topo = procs, endpoints, t
	for _, p := range d.procs {
		go p.supervise(d)
	}
	if err := d.waitReady(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// place makes a process for every instance of t, run by opts' binaries:
// routers need their backends' addresses, so every socket is opened first.
// An instance that old already has keeps its socket, and its process too
// when it would run the same binary with the same environment; opened lists
// the sockets place opened. On error it closes those and returns nothing.
func (d *Deployment) place(t *patterns.Topology, opts Options, old map[string]*proc) (procs []*proc, endpoints patterns.Discovery, opened []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range opened {
				f.Close()
			}
		}
	}()
	addrs := map[string][]string{}
	entryPort := opts.Port
	for i := range t.Workloads {
		w := &t.Workloads[i]
		for r := 0; r < w.Replicas; r++ {
			p := &proc{name: w.Service + "/" + w.Instance(r), workload: w, index: r, bin: opts.binary(w.Service)}
			if o := old[p.name]; o != nil {
				p.addr, p.socket = o.addr, o.socket
			} else {
				port := 0
				if w.Entry && entryPort != 0 {
					port, entryPort = entryPort, 0
				}
				if p.addr, p.socket, err = listen(port); err != nil {
					return nil, nil, opened, err
				}
				opened = append(opened, p.socket)
			}
			addrs[w.Name()] = append(addrs[w.Name()], "http://"+p.addr)
			if w.Entry {
				endpoints = append(endpoints, Endpoint{Service: w.Service, URL: "http://" + p.addr})
			}
			procs = append(procs, p)
		}
	}
	leaseURL, err := d.leaseURL(t)
	if err != nil {
		return nil, nil, opened, err
	}
	inherited := child.Getenv(opts.Env, "GODEBUG")
	for i, p := range procs {
		w := p.workload
		if inherited != "" {
			// The runtime settings the deployment inherits go before the
			// service's, which win, and like them keep kiln from adding a
			// setting of its own to a key they set (patterns' RoleEnv).
			wc := *w
			wc.Env = maps.Clone(w.Env)
			if wc.Env == nil {
				wc.Env = map[string]string{}
			}
			wc.Env["GODEBUG"] = strings.Trim(inherited+","+w.Env["GODEBUG"], ",")
			w = &wc
		}
		env := w.RoleEnv(p.index, addrs[p.workload.Backends], endpoints)
		if len(p.workload.Leases) > 0 {
			env[lease.EnvURL] = leaseURL
		}
		if p.workload.Storage != nil {
			if env[patterns.EnvData], err = d.dataDir(t.App, p); err != nil {
				return nil, nil, opened, err
			}
		}
		p.env = append(append([]string{}, opts.Env...), patterns.EnvListenFD+"=3")
		for _, k := range slices.Sorted(maps.Keys(env)) {
			p.env = append(p.env, k+"="+env[k])
		}
		if o := old[p.name]; o != nil && o.bin == p.bin && slices.Equal(o.env, p.env) {
			procs[i] = o
			continue
		}
		p.tail = &tailWriter{}
		p.stop, p.done = make(chan struct{}), make(chan struct{})
	}
	return procs, endpoints, opened, nil
}

// listen opens a socket on 127.0.0.1:port and returns a duplicate of it to
// hand down.
func listen(port int) (string, *os.File, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		if port != 0 {
			return "", nil, fmt.Errorf("local: entry port %d: %w (choose another with --port or KILN_PORT)", port, err)
		}
		return "", nil, fmt.Errorf("local: %w", err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close() // f is a duplicate that keeps the socket open
	if err != nil {
		return "", nil, fmt.Errorf("local: %w", err)
	}
	defer f.Close()
	// Handing a file to a child (File.Fd) puts a nonblocking one in
	// blocking mode, and the mode belongs to the socket, which every
	// process that has it shares: each start would turn a running
	// process's accept into a blocking call, which its drain then waits
	// for. A file made from the socket while it is blocking is never
	// switched; children make the socket nonblocking, as Go's net needs.
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return "", nil, fmt.Errorf("local: %w", err)
	}
	syscall.CloseOnExec(fd)
	return ln.Addr().String(), os.NewFile(uintptr(fd), "kiln-socket-"+ln.Addr().String()), nil
}

// current is the deployment's processes as they are now.
func (d *Deployment) current() []*proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.procs)
}

// Endpoints lists where each service serves, in spec order.
func (d *Deployment) Endpoints() patterns.Discovery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.endpoints)
}

func (o *Options) binary(service string) string {
	if b := o.Binaries[service]; b != "" {
		return b
	}
	return o.Binary
}

// Processes lists every process of the topology.
func (d *Deployment) Processes() []Process {
	procs := d.current()
	out := make([]Process, len(procs))
	for i, p := range procs {
		p.mu.Lock()
		out[i] = Process{Name: p.name, Workload: p.workload.Name(), Binary: p.bin, Index: p.index, Addr: p.addr, PID: p.pid, Restarts: p.restarts,
			State: p.state, Since: p.since, Exit: p.exit}
		p.mu.Unlock()
	}
	return out
}

// Topology is what the deployment runs: Start's topology, or the last one
// Update swapped in whole.
func (d *Deployment) Topology() *patterns.Topology {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.topo
}

// Output returns the last lines (up to 200) that process name wrote,
// oldest first, with the deployer's notes about it among them; nil when
// the deployment runs no such process.
func (d *Deployment) Output(name string) []Line {
	for _, p := range d.current() {
		if p.name == name {
			return p.tail.Lines()
		}
	}
	return nil
}

func (d *Deployment) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.ReadyTimeout)
	defer cancel()
	for _, p := range d.current() {
		for {
			if p.is(Ready) {
				break
			}
			if p.gaveUp() {
				return fmt.Errorf("local: %s exited with status %d, which says its configuration is wrong, so it is not restarted; its last output:\n%s", p.name, restart.ExitUsage, p.tail.String())
			}
			if restarts := p.restartCount(); restarts >= 3 {
				return fmt.Errorf("local: %s keeps exiting (%d restarts) before it is ready; its last output:\n%s", p.name, restarts, p.tail.String())
			}
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("local: %s did not answer /readyz within %s; its last output:\n%s", p.name, d.opts.ReadyTimeout, p.tail.String())
				}
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop stops every process: entry points first, so they drain their
// in-flight requests while their backends still answer, then the backends.
// Each gets SIGTERM, and SIGKILL after the grace period.
func (d *Deployment) Stop() {
	d.stopOnce.Do(func() {
		var fronts, backs []*proc
		procs := d.current()
		for _, p := range procs {
			if p.workload.Entry {
				fronts = append(fronts, p)
			} else {
				backs = append(backs, p)
			}
		}
		stopAll(fronts)
		stopAll(backs)
		for _, p := range procs {
			p.socket.Close()
		}
		d.closeLeases()
	})
}

// stopAll stops ps together and waits until each has exited.
func stopAll(ps []*proc) {
	for _, p := range ps {
		close(p.stop)
	}
	for _, p := range ps {
		<-p.done
	}
}

// Run starts t, prints one line per entry point to out, and stops everything
// when ctx ends.
//
// t's jobs run beside its serving processes, each attempt's outcome
// printed to out. When t has jobs only, and no cron job, Run returns once
// they have ended: nil when every one succeeded, else the first failed
// one's *JobError, whose ExitCode is its failed run's. Otherwise serving
// processes and cron jobs run until ctx ends, and Run then returns the
// first one-shot job's failure, if any.
func Run(ctx context.Context, t *patterns.Topology, opts Options, out io.Writer) error {
	d, err := Start(ctx, t, opts)
	if err != nil {
		return err
	}
	defer d.Stop()
	for _, e := range d.Endpoints() {
		fmt.Fprintf(out, "kiln: %s serving at %s\n", e.Service, e.URL)
	}
	if opts.Started != nil {
		if err := opts.Started(d); err != nil {
			return err
		}
	}
	serving := len(t.Workloads) > 0
	if len(t.Jobs) > 0 {
		err = d.runJobs(ctx, t.Jobs, out, serving)
	} else {
		<-ctx.Done()
	}
	if serving {
		d.Shutdown()
	}
	return err
}

// Shutdown is Stop, saying so on the deployment's output.
func (d *Deployment) Shutdown() {
	fmt.Fprintf(d.out, "kiln: stopping %d processes\n", len(d.current()))
	d.Stop()
	fmt.Fprintln(d.out, "kiln: stopped")
}

// proc is one supervised process.
type proc struct {
	name     string
	bin      string
	workload *patterns.Workload
	index    int
	addr     string
	socket   *os.File
	env      []string
	tail     *tailWriter

	stop chan struct{} // closed to stop
	done chan struct{} // closed once stopped

	// For a process that Update starts beside the one it replaces: its
	// first run gets a pipe (KILN_READY_FD) on which the program says it
	// serves, since probing the shared socket could reach either.
	announced chan struct{} // closed once it said so
	firstExit chan struct{} // closed when its first run ends

	mu       sync.Mutex
	pid      int
	restarts int
	usage    bool   // exited with restart.ExitUsage: not restarted
	status   string // how the first run ended, for firstExit
	run      int    // the current run, counted from 0
	state    State
	since    time.Time
	exit     string // how the last run ended
}

// set moves p to state, noting why in its output.
func (p *proc) set(state State, note string) {
	p.mu.Lock()
	p.state, p.since = state, time.Now()
	p.mu.Unlock()
	if note != "" {
		p.tail.note(note)
	}
}

func (p *proc) is(state State) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == state
}

func (p *proc) gaveUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.usage
}

func (p *proc) restartCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

func (p *proc) supervise(d *Deployment) {
	defer close(p.done)
	defer p.set(Stopped, "")
	p.set(Starting, "")
	var b restart.Backoff
	for run := 0; ; run++ {
		started := time.Now()
		p.mu.Lock()
		p.run = run
		p.mu.Unlock()
		cmd, err := p.start(d, run == 0)
		ended := func(status string) {
			if run == 0 && p.firstExit != nil {
				p.mu.Lock()
				p.status = status
				p.mu.Unlock()
				close(p.firstExit)
			}
		}
		var backoff time.Duration
		if err != nil {
			ended(err.Error())
			d.log.Error("cannot start process", "process", p.name, "err", err)
			backoff = b.Next(0)
			p.set(Restarting, fmt.Sprintf("kiln: cannot start: %v; trying again in %s", err, backoff))
		} else {
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			running := make(chan struct{})
			go p.watchReady(run, run == 0 && p.announced != nil, running)
			select {
			case err = <-exited:
				close(running)
			case <-p.stop:
				close(running)
				terminate(cmd, exited, d.opts.Grace)
				d.exited(cmd.Process.Pid)
				return
			}
			status := exitStatus(err)
			p.mu.Lock()
			p.pid, p.exit = 0, status
			p.mu.Unlock()
			d.exited(cmd.Process.Pid)
			ended(status)
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == restart.ExitUsage {
				d.log.Error("process refuses its configuration; not restarting", "process", p.name, "status", status)
				p.mu.Lock()
				p.usage = true
				p.mu.Unlock()
				p.set(Stopped, "kiln: "+status+": the process refuses its configuration; not restarting")
				<-p.stop
				return
			}
			backoff = b.Next(time.Since(started))
			d.log.Warn("process exited; restarting", "process", p.name, "status", status, "in", backoff)
			p.set(Restarting, fmt.Sprintf("kiln: %s; restarting in %s", status, backoff))
		}
		select {
		case <-p.stop:
			return
		case <-time.After(backoff):
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

// watchReady marks p ready once its run answers /readyz, or, when
// announced, once it says it serves (probing the socket it shares with the
// process it replaces could reach either). It gives up when running is
// closed, and probes nothing once the run is ready.
func (p *proc) watchReady(run int, announced bool, running <-chan struct{}) {
	if announced {
		select {
		case <-p.announced:
			p.ready(run)
		case <-running:
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-running:
			cancel()
		case <-ctx.Done():
		}
	}()
	client := &http.Client{Timeout: time.Second}
	for !patterns.Ready(ctx, client, "http://"+p.addr+"/readyz") {
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.ready(run)
}

// ready marks p ready, unless run has ended meanwhile, noting it when it
// comes back from an exit.
func (p *proc) ready(run int) {
	p.mu.Lock()
	if p.run != run || p.pid == 0 {
		p.mu.Unlock()
		return
	}
	again := p.state == Restarting
	p.state, p.since = Ready, time.Now()
	p.mu.Unlock()
	if again {
		p.tail.note("kiln: ready again")
	}
}

func (p *proc) start(d *Deployment, first bool) (*exec.Cmd, error) {
	out := io.MultiWriter(&lines.Prefix{Prefix: p.name + " | ", W: d.out}, p.tail)
	cmd := exec.Command(p.bin)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{p.socket}
	var ready *os.File
	if first && p.announced != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer w.Close()
		ready = r
		cmd.ExtraFiles = append(cmd.ExtraFiles, w)
		cmd.Env = append(slices.Clip(cmd.Env), patterns.EnvReadyFD+"=4")
	}
	child.Own(cmd)
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		if ready != nil {
			ready.Close()
		}
		return nil, err
	}
	if ready != nil {
		go func() {
			defer ready.Close()
			if n, _ := ready.Read(make([]byte, 1)); n > 0 {
				close(p.announced)
			}
		}()
	}
	p.mu.Lock()
	p.pid = cmd.Process.Pid
	p.mu.Unlock()
	return cmd, nil
}

// terminate sends SIGTERM to the process group, then SIGKILL after grace,
// and returns how the process exited.
func terminate(cmd *exec.Cmd, exited <-chan error, grace time.Duration) error {
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	var err error
	select {
	case err = <-exited:
	case <-time.After(grace):
		syscall.Kill(-pgid, syscall.SIGKILL)
		err = <-exited
	}
	// Reap anything the process left in its group.
	syscall.Kill(-pgid, syscall.SIGKILL)
	return err
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
