package vminit

import (
	"context"
	"errors"
	"fmt"
	"io"
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

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/child"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Files in the initramfs (see package unikernel).
const (
	self       = "/init"
	appFile    = "/etc/kiln/app.json"
	moduleList = "/etc/kiln/modules"
)

var console io.Writer = os.Stdout

func logf(format string, args ...any) {
	fmt.Fprintf(console, "kiln-init: "+format+"\n", args...)
}

// Main runs the machine. It never returns.
func Main() {
	start := time.Now()
	args, err := setup()
	if err != nil {
		fmt.Fprintln(console, FatalLine, err)
		poweroff()
	}
	if _, ok := args[ArgProbe]; ok {
		fmt.Fprintln(console, ProbeOK)
		poweroff()
	}
	env, err := environment(args)
	if err == nil {
		err = network(args)
	}
	if err != nil {
		fmt.Fprintln(console, FatalLine, err)
		poweroff()
	}
	logf("system up in %s", time.Since(start).Round(time.Millisecond))
	if port := args[ArgCtl]; port != "" {
		go control(port)
	}
	if role := child.Getenv(env, patterns.EnvRole); role != "" {
		status := runOne(env)
		logf("program exited: %s", status)
		poweroff()
	}
	err = runTopology(env, args, start)
	fmt.Fprintln(console, FatalLine, err)
	poweroff()
}

// setup mounts the pseudo file systems, makes sure the console is stdio,
// reads the kernel command line and loads the modules.
func setup() (map[string]string, error) {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	var st unix.Stat_t
	if unix.Fstat(1, &st) != nil {
		// The kernel found no /dev/console to give us: open it now.
		if fd, err := unix.Open("/dev/console", unix.O_RDWR, 0); err == nil {
			for i := 0; i < 3; i++ {
				unix.Dup2(fd, i)
			}
		}
	}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	args := parseCmdline(string(b))
	if _, ok := args[ArgProbe]; ok {
		return args, nil
	}
	return args, loadModules(args)
}

// parseCmdline splits the kernel command line into key=value pairs
// (double quotes group words). Repeated keys are joined with commas.
func parseCmdline(s string) map[string]string {
	out := map[string]string{}
	var words []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, any = !quoted, true
		case (r == ' ' || r == '\n' || r == '\t') && !quoted:
			if any || cur.Len() > 0 {
				words = append(words, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
		}
	}
	if any || cur.Len() > 0 {
		words = append(words, cur.String())
	}
	for _, w := range words {
		k, v, _ := strings.Cut(w, "=")
		if old, ok := out[k]; ok && old != "" {
			v = old + "," + v
		}
		out[k] = v
	}
	return out
}

// loadModules loads each module file the image lists, in order, with the
// parameters the command line gives it (virtio_mmio.device=... gives
// virtio_mmio device=...). Compressed modules (.ko.xz, .ko.zst, .ko.gz)
// are handed to the kernel as they are, with MODULE_INIT_COMPRESSED_FILE.
func loadModules(args map[string]string) error {
	b, err := os.ReadFile(moduleList)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, file := range strings.Fields(string(b)) {
		name := file[strings.LastIndex(file, "/")+1:]
		compressed := !strings.HasSuffix(name, ".ko")
		name = strings.ReplaceAll(name[:strings.Index(name, ".ko")], "-", "_")
		if args["pci"] == "off" && strings.HasPrefix(name, "virtio_pci") {
			// The microvm machine has no PCI bus: each module costs a
			// signature check under emulation for nothing.
			continue
		}
		var params []string
		for _, k := range slices.Sorted(maps.Keys(args)) {
			if p, ok := strings.CutPrefix(strings.ReplaceAll(k, "-", "_"), name+"."); ok {
				params = append(params, p+"="+args[k])
			}
		}
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		flags := 0
		if compressed {
			flags |= unix.MODULE_INIT_COMPRESSED_FILE
		}
		err = unix.FinitModule(int(f.Fd()), strings.Join(params, " "), flags)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			if compressed && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
				return fmt.Errorf("loading module %s: %w (this kernel cannot decompress modules itself: it needs CONFIG_MODULE_DECOMPRESS, Linux 5.17 or later; kiln decompresses modules at build time for kernels whose config says they lack it)", file, err)
			}
			return fmt.Errorf("loading module %s: %w", file, err)
		}
	}
	return nil
}

// environment is the program's environment: a minimal base plus kiln.env.
func environment(args map[string]string) ([]string, error) {
	env, err := DecodeEnv(args[ArgEnv])
	if err != nil {
		return nil, err
	}
	return append([]string{"PATH=/", "HOME=/"}, env...), nil
}

// runOne runs the program in the role its environment gives and returns
// its exit status.
func runOne(env []string) string {
	if child.Getenv(env, patterns.EnvAddr) == "" && child.Getenv(env, patterns.EnvListenFD) == "" {
		env = append(env, patterns.EnvAddr+"=:"+strconv.Itoa(FirstPort))
	}
	cmd := exec.Command(self)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Start(); err != nil {
		return err.Error()
	}
	exited := make(chan struct{})
	one := &proc{name: "program", cur: cmd, done: exited}
	stopHook = func() { one.terminate() }
	go func() {
		// Tell the host when the role answers /readyz.
		port := FirstPort
		if _, p, err := net.SplitHostPort(child.Getenv(env, patterns.EnvAddr)); err == nil {
			port, _ = strconv.Atoi(p)
		}
		if child.Getenv(env, patterns.EnvListenFD) != "" {
			return
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz"
		client := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-exited:
				return
			default:
			}
			if patterns.Ready(context.Background(), client, url) {
				fmt.Fprintf(console, "%s: 1 process\n", ReadyLine)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	err := cmd.Wait()
	close(exited)
	return status(err)
}

// FirstPort is the first entry point's port when kiln.port is not given.
const FirstPort = 8080

func status(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// proc is one process of the topology.
type proc struct {
	name   string
	addr   string // what it listens on
	socket *os.File
	env    []string
	entry  bool

	mu   sync.Mutex
	cur  *exec.Cmd     // the running process, if any
	done chan struct{} // closed when it has stopped for good
}

// stopping is set once a stop began: supervisors restart nothing after it.
var (
	stopMu   sync.Mutex
	stopping bool
	stopHook func() // stops the program; set once it runs
)

// terminate sends the process SIGTERM, SIGKILL after Grace, and waits
// until it is gone.
func (p *proc) terminate() {
	p.mu.Lock()
	cmd := p.cur
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(Grace):
		cmd.Process.Kill()
		<-p.done
	}
}

// control serves the host's stop request on port.
func control(port string) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+StopPath, func(w http.ResponseWriter, r *http.Request) {
		stopMu.Lock()
		already, hook := stopping, stopHook
		stopping = true
		stopMu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		if already {
			return
		}
		go func() {
			logf("stopping")
			if hook != nil {
				hook()
			}
			logf("stopped")
			poweroff()
		}()
	})
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		logf("control port %s: %v", port, err)
		return
	}
	http.Serve(ln, mux)
}

// runTopology runs every process of the app's topology and restarts those
// that exit. It returns only on error.
func runTopology(base []string, args map[string]string, start time.Time) error {
	b, err := os.ReadFile(appFile)
	if err != nil {
		return err
	}
	app, err := spec.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", appFile, err)
	}
	app.SetDefaults()
	t, err := patterns.Build(app)
	if err != nil {
		return err
	}
	port := FirstPort
	if p := args[ArgPort]; p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return fmt.Errorf("%s=%q is not a port", ArgPort, p)
		}
	}
	var procs []*proc
	var services patterns.Discovery
	peers := map[string][]string{}
	for i := range t.Workloads {
		w := &t.Workloads[i]
		for r := 0; r < w.Replicas; r++ {
			addr := "127.0.0.1:0"
			if w.Entry {
				addr = ":" + strconv.Itoa(port)
				port++
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("%s: %w", w.Name(), err)
			}
			f, err := ln.(*net.TCPListener).File()
			ln.Close()
			if err != nil {
				return err
			}
			p := &proc{name: w.Service + "/" + w.Instance(r), addr: ln.Addr().String(), socket: f, entry: w.Entry, done: make(chan struct{})}
			peers[w.Name()] = append(peers[w.Name()], "http://"+p.addr)
			if w.Entry {
				// Services of the app reach each other inside the guest.
				_, port, _ := net.SplitHostPort(p.addr)
				services = append(services, patterns.Endpoint{Service: w.Service, URL: "http://127.0.0.1:" + port})
			}
			procs = append(procs, p)
		}
	}
	data, err := mountDisks(t, args)
	if err != nil {
		return err
	}
	n := 0
	for i := range t.Workloads {
		w := &t.Workloads[i]
		for r := 0; r < w.Replicas; r++ {
			p := procs[n]
			n++
			env := w.RoleEnv(r, peers[w.Backends], services)
			if dir, ok := data[p.name]; ok {
				env[patterns.EnvData] = dir
			}
			p.env = append(append([]string{}, base...), patterns.EnvListenFD+"=3")
			for _, k := range slices.Sorted(maps.Keys(env)) {
				p.env = append(p.env, k+"="+env[k])
			}
			go p.supervise()
		}
	}
	stopMu.Lock()
	stopHook = func() {
		// Entry points first, so they drain while their backends still
		// answer; then the backends.
		for _, entry := range []bool{true, false} {
			var wg sync.WaitGroup
			for _, p := range procs {
				if p.entry == entry {
					wg.Add(1)
					go func() { defer wg.Done(); p.terminate() }()
				}
			}
			wg.Wait()
		}
		for _, dir := range data {
			if err := unix.Unmount(dir, 0); err != nil {
				logf("unmount %s: %v", dir, err)
			}
		}
	}
	stopMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for _, p := range procs {
		_, port, _ := net.SplitHostPort(p.addr)
		url := "http://127.0.0.1:" + port + "/readyz"
		for !patterns.Ready(ctx, client, url) {
			if ctx.Err() != nil {
				return fmt.Errorf("%s did not answer /readyz within 60s", p.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Fprintf(console, "%s: %d processes in %s\n", ReadyLine, len(procs), time.Since(start).Round(time.Millisecond))
	select {}
}

// mountDisks mounts the disk of each instance of t that keeps storage at
// its MountPoint, and returns the mount point of each, by instance
// ("kvstore/shard-0").
func mountDisks(t *patterns.Topology, args map[string]string) (map[string]string, error) {
	devs, err := findDisks(sysBlock, diskNames(args), 10*time.Second)
	if err != nil {
		return nil, err
	}
	data := map[string]string{}
	for _, w := range t.Workloads {
		if w.Storage == nil {
			continue
		}
		for r := 0; r < w.Replicas; r++ {
			name := w.Service + "/" + w.Instance(r)
			dev, ok := devs[name]
			if !ok {
				return nil, fmt.Errorf("%s keeps storage, and %s names no disk for it (the host attaches one per instance)", name, ArgDisks)
			}
			dir := MountPoint(w.Storage.Path, w.Service, w.Instance(r))
			if err := mountDisk(dev, dir); err != nil {
				return nil, fmt.Errorf("the storage of %s: %w", name, err)
			}
			logf("%s: %s on %s", name, dev, dir)
			data[name] = dir
		}
	}
	return data, nil
}

// supervise runs the process and restarts it when it exits, with a backoff
// doubling from 100ms to 5s.
func (p *proc) supervise() {
	defer close(p.done)
	backoff := 100 * time.Millisecond
	out := &prefixWriter{prefix: p.name + " | "}
	for {
		started := time.Now()
		cmd := exec.Command(self)
		cmd.Env = p.env
		cmd.Stdout, cmd.Stderr = out, out
		cmd.ExtraFiles = []*os.File{p.socket}
		stopMu.Lock()
		if stopping {
			stopMu.Unlock()
			return
		}
		err := cmd.Start()
		p.mu.Lock()
		p.cur = cmd
		p.mu.Unlock()
		stopMu.Unlock()
		if err == nil {
			err = cmd.Wait()
		}
		stopMu.Lock()
		stopped := stopping
		stopMu.Unlock()
		if stopped {
			logf("%s stopped (%s)", p.name, status(err))
			return
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		logf("%s exited (%s); restarting in %s", p.name, status(err), backoff)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

var consoleMu sync.Mutex

// prefixWriter writes whole lines to the console, each with a prefix.
type prefixWriter struct {
	prefix string
	buf    []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	consoleMu.Lock()
	defer consoleMu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		io.WriteString(console, w.prefix+string(w.buf[:i+1]))
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// poweroff syncs and powers the machine off. If the kernel cannot power
// off, the reboot call returns and init exits, which panics the kernel; with
// panic=-1 and QEMU's -no-reboot that ends the VM too.
func poweroff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	os.Exit(1)
}
