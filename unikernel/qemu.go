package unikernel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/internal/child"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/unikernel/vminit"
)

// ControlGuestPort is where the init serves its control endpoint in the
// guest.
const ControlGuestPort = 7079

// QEMU is the emulator kiln boots images with.
const QEMU = "qemu-system-x86_64"

// Machine types.
const (
	MachineMicroVM = "microvm" // virtio-mmio devices, no PCI, no firmware to speak of
	MachinePC      = "pc"      // the classic PC, for comparison
)

// Accelerators.
const (
	AccelAuto = "auto" // KVM when a probe boot works, else TCG
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// BootOptions say how to boot an image.
type BootOptions struct {
	// HostPorts are the host ports on 127.0.0.1 forwarded to each entry
	// point, in the image's Entries order; 0 or missing picks a free port.
	HostPorts []int
	// Machine is MachineMicroVM (the default) or MachinePC.
	Machine string
	// Accel is AccelAuto (the default), AccelKVM or AccelTCG.
	Accel string
	// Memory in MiB (default 256) and CPUs (default 2 under KVM, 1 under
	// software emulation; see defaultCPUs).
	Memory, CPUs int
	// Console is the file that receives the guest's serial console;
	// "" means console.log in the image's directory.
	Console string
	// ReadyTimeout bounds the wait for every entry point to answer /readyz
	// (default 120s: a software-emulated boot takes seconds).
	ReadyTimeout time.Duration
	// ExtraArgs are added to the kernel command line.
	ExtraArgs []string
	// ConsoleOutput, when set, receives the console as it is written.
	ConsoleOutput io.Writer
	// StateDir is the app's state directory, which keeps the disk of each
	// instance that keeps storage (data/SERVICE/INSTANCE.img, see
	// DiskPath) from one boot to the next; "" means the local target's,
	// local.StateDir(app).
	StateDir string
}

// VM is a running microVM.
type VM struct {
	Endpoints []Endpoint
	Console   string // path of the console log
	Accel     string // the accelerator in use
	Machine   string
	Started   time.Time
	cmd       *exec.Cmd
	control   string        // the init's stop URL
	followed  chan struct{} // closed when the console is copied out
	exited    chan struct{}
	waitErr   error
	stopOnce  sync.Once
}

// Endpoint is where one service of a VM serves on the host.
type Endpoint struct {
	Service string
	URL     string
}

// ErrNoQEMU says QEMU is not installed.
var ErrNoQEMU = fmt.Errorf("%s not found in PATH (install it with `apt-get install -y %s`)", QEMU, QEMUPackage)

// FindQEMU returns the path of qemu-system-x86_64, or an error naming its
// apt package.
func FindQEMU() (string, error) {
	p, err := exec.LookPath(QEMU)
	if err != nil {
		return "", ErrNoQEMU
	}
	return p, nil
}

// Boot starts the image under QEMU and returns once every entry point
// answers /readyz through its forwarded port. On error no QEMU is left
// running.
func Boot(ctx context.Context, im *Image, o BootOptions) (*VM, error) {
	qemu, err := FindQEMU()
	if err != nil {
		return nil, err
	}
	if o.Machine == "" {
		o.Machine = MachineMicroVM
	}
	if o.Machine != MachineMicroVM && o.Machine != MachinePC {
		return nil, fmt.Errorf("machine %q: use %s or %s", o.Machine, MachineMicroVM, MachinePC)
	}
	if o.Memory == 0 {
		o.Memory = 256
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 120 * time.Second
	}
	if o.Console == "" {
		o.Console = filepath.Join(im.Dir, "console.log")
	}
	accel := o.Accel
	switch accel {
	case "", AccelAuto:
		accel = chooseAccel(ctx, qemu, im, o.Machine)
	case AccelKVM, AccelTCG:
	default:
		return nil, fmt.Errorf("accelerator %q: use auto, kvm or tcg", accel)
	}
	if o.CPUs == 0 {
		o.CPUs = defaultCPUs(accel)
	}
	vm := &VM{Console: o.Console, Accel: accel, Machine: o.Machine, exited: make(chan struct{})}
	var fwd []string
	for i, e := range im.Entries {
		port := 0
		if i < len(o.HostPorts) {
			port = o.HostPorts[i]
		}
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		} else if err := portFree(port); err != nil {
			return nil, fmt.Errorf("vm: entry port %d: %w (choose another with --port)", port, err)
		}
		fwd = append(fwd, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", port, e.GuestPort))
		vm.Endpoints = append(vm.Endpoints, Endpoint{Service: e.Service, URL: fmt.Sprintf("http://127.0.0.1:%d", port)})
	}
	// The init's control endpoint, through which Shutdown stops the
	// program gracefully.
	ctl, err := freePort()
	if err != nil {
		return nil, err
	}
	fwd = append(fwd, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", ctl, ControlGuestPort))
	vm.control = fmt.Sprintf("http://127.0.0.1:%d%s", ctl, vminit.StopPath)
	extra := append([]string{fmt.Sprintf("%s=%d", vminit.ArgCtl, ControlGuestPort)}, o.ExtraArgs...)
	state := o.StateDir
	if state == "" && im.App != nil {
		state = local.StateDir(im.App.Name)
	}
	disks, err := prepareDisks(ctx, im, state, o.Machine)
	if err != nil {
		return nil, err
	}
	args := qemuArgs(im, o.Machine, accel, o.Memory, o.CPUs, o.Console, fwd, extra, disks)
	os.Remove(o.Console)
	vm.cmd = exec.Command(qemu, args...)
	var stderr strings.Builder
	vm.cmd.Stdout, vm.cmd.Stderr = &stderr, &stderr
	child.Own(vm.cmd) // Stop ends it
	vm.Started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", QEMU, err)
	}
	go func() { vm.waitErr = vm.cmd.Wait(); close(vm.exited) }()
	vm.followed = make(chan struct{})
	if o.ConsoleOutput != nil {
		go func() { follow(o.Console, o.ConsoleOutput, vm.exited); close(vm.followed) }()
	} else {
		close(vm.followed)
	}
	if err := vm.waitReady(ctx, o.ReadyTimeout); err != nil {
		vm.Stop()
		if s := strings.TrimSpace(stderr.String()); s != "" {
			err = fmt.Errorf("%w\n%s says: %s", err, QEMU, s)
		}
		return nil, err
	}
	return vm, nil
}

// defaultCPUs is the guest's CPU count when none is asked for. Under TCG
// a second vCPU is a second host thread translating code, competing with
// the first for the host's CPUs, and the kernel spends ~0.1s bringing it
// up: one vCPU boots kiln's examples about 0.4s faster, for the whole
// topology too (bench/vm.md).
func defaultCPUs(accel string) int {
	if accel == AccelTCG {
		return 1
	}
	return 2
}

// qemuArgs is QEMU's command line for the image, with the disk images
// disks (one per Disk of the image, in order) attached.
func qemuArgs(im *Image, machine, accel string, mem, cpus int, console string, fwd, extra, disks []string) []string {
	cmdline := []string{im.Cmdline}
	cpu := "max"
	if accel == AccelKVM {
		cpu = "host"
	} else if khz := hostTSCkHz(); khz > 0 {
		// Without KVM the guest cannot calibrate its clock against a
		// real timer and hangs early in boot: tell it the TSC rate (TCG's
		// TSC runs at the host's) and the matching loops per jiffy.
		hz := im.HZ
		if hz == 0 {
			hz = 250
		}
		cmdline = append(cmdline, fmt.Sprintf("tsc_early_khz=%d lpj=%d", khz, khz*1000/int64(hz)))
	}
	if machine == MachineMicroVM {
		cmdline = append(cmdline, "pci=off") // it has no PCI bus to look for
	}
	drives, disksArg := diskArgs(im, machine, disks)
	if disksArg != "" {
		cmdline = append(cmdline, disksArg)
	}
	cmdline = append(cmdline, extra...)
	netdev := "user,id=n0"
	if len(fwd) > 0 {
		netdev += "," + strings.Join(fwd, ",")
	}
	m, nic, rng := "microvm,x-option-roms=off,pit=off,pic=off,rtc=on", "virtio-net-device,netdev=n0", "virtio-rng-device"
	kernel := im.KernelPath()
	if im.PVH != "" {
		// No real-mode setup, no decompression under emulation.
		kernel = filepath.Join(im.Dir, im.PVH)
	}
	if machine == MachinePC {
		m, nic, rng = "pc", "virtio-net-pci,netdev=n0", "virtio-rng-pci"
		kernel = im.KernelPath()
	}
	return append([]string{
		"-M", m, "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "file:" + console,
		"-kernel", kernel, "-initrd", im.InitrdPath(),
		"-append", strings.Join(cmdline, " "),
		"-netdev", netdev, "-device", nic, "-device", rng,
	}, drives...)
}

// hostTSCkHz reads the host's TSC rate from /proc/cpuinfo ("cpu MHz"); 0
// when it cannot.
func hostTSCkHz() int64 {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int64(mhz * 1000)
			}
		}
	}
	return 0
}

func (vm *VM) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Until the guest's network is up, QEMU's user networking accepts a
	// connection on the forwarded port and then holds it unanswered: wait
	// for the init's ready line on the console before asking over HTTP,
	// and keep each request short.
	for grep(vm.Console, vminit.ReadyLine) == "" {
		select {
		case <-vm.exited:
			return fmt.Errorf("vm: %s exited (%v) before the guest was ready; the console says:\n%s", QEMU, vm.waitErr, tail(vm.Console, 30))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("vm: the guest was not ready within %s; the console (%s) says:\n%s", timeout, vm.Console, tail(vm.Console, 30))
			}
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if line := grep(vm.Console, vminit.FatalLine); line != "" {
			return fmt.Errorf("vm: the guest failed: %s\nconsole (%s):\n%s", line, vm.Console, tail(vm.Console, 30))
		}
	}
	client := &http.Client{Timeout: 500 * time.Millisecond}
	for _, e := range vm.Endpoints {
		for !patterns.Ready(ctx, client, e.URL+"/readyz") {
			select {
			case <-vm.exited:
				return fmt.Errorf("vm: %s exited (%v) before %s was ready; the console says:\n%s", QEMU, vm.waitErr, e.Service, tail(vm.Console, 30))
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("vm: %s did not answer /readyz within %s; the console (%s) says:\n%s", e.Service, timeout, vm.Console, tail(vm.Console, 30))
				}
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop ends QEMU (SIGTERM to its process, SIGKILL after 5s) and waits for
// it.
func (vm *VM) Stop() {
	vm.stopOnce.Do(func() {
		select {
		case <-vm.exited:
			return
		default:
		}
		pid := vm.cmd.Process.Pid
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-vm.exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-vm.exited
		}
	})
}

// Shutdown stops the program the way Ctrl-C stops the local target: the
// init sends SIGTERM to the entry points, which drain, then to the
// backends, and powers the VM off. If QEMU has not exited within twice the
// init's grace period (plus 5s), Stop ends it.
// It returns why it had to fall back to Stop, if it did.
func (vm *VM) Shutdown() error {
	select {
	case <-vm.exited:
		return nil
	default:
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Post(vm.control, "text/plain", nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			err = fmt.Errorf("the init answered the stop request with %s", resp.Status)
		} else {
			select {
			case <-vm.exited:
				return nil
			case <-time.After(2*vminit.Grace + 5*time.Second):
				err = fmt.Errorf("the guest did not power off within %s of the stop request", 2*vminit.Grace+5*time.Second)
			}
		}
	}
	vm.Stop()
	return err
}

// Exited is closed when QEMU has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// PID is QEMU's process ID.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Run boots the image, prints one line per entry point to out (the same
// line the local target prints), and stops the VM when ctx ends.
func Run(ctx context.Context, im *Image, o BootOptions, out io.Writer) error {
	vm, err := Boot(ctx, im, o)
	if err != nil {
		return err
	}
	defer vm.Stop()
	for _, e := range vm.Endpoints {
		fmt.Fprintf(out, "kiln: %s serving at %s\n", e.Service, e.URL)
	}
	select {
	case <-ctx.Done():
		if o.ConsoleOutput != nil {
			fmt.Fprintf(o.ConsoleOutput, "kiln: stopping the VM (%s, pid %d)\n", QEMU, vm.PID())
		}
		err := vm.Shutdown()
		<-vm.followed
		if o.ConsoleOutput != nil {
			if err != nil {
				fmt.Fprintf(o.ConsoleOutput, "kiln: stopped QEMU with SIGTERM: %v\n", err)
			}
			fmt.Fprintln(o.ConsoleOutput, "kiln: stopped")
		}
		return nil
	case <-vm.exited:
		return fmt.Errorf("vm: %s exited (%v); the console (%s) says:\n%s", QEMU, vm.waitErr, vm.Console, tail(vm.Console, 30))
	}
}

// follow copies what is appended to file to w until done is closed.
func follow(file string, w io.Writer, done <-chan struct{}) {
	var f *os.File
	for f == nil {
		f, _ = os.Open(file)
		select {
		case <-done:
			if f != nil {
				f.Close()
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer f.Close()
	for {
		io.Copy(w, f)
		select {
		case <-done:
			io.Copy(w, f)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

func tail(file string, n int) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func grep(file, substr string) string {
	b, _ := os.ReadFile(file)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// probeResult is what chooseAccel remembers between runs.
type probeResult struct {
	Key   string    `json:"key"`
	Accel string    `json:"accel"`
	At    time.Time `json:"at"`
}

// probeTCGFor is how long a failed KVM probe is believed: KVM that starts
// working (a module loaded, a host fixed) is found again after it.
const probeTCGFor = 24 * time.Hour

// fresh reports whether pr answers for key at now.
func (pr probeResult) fresh(key string, now time.Time) bool {
	return pr.Key == key && (pr.Accel == AccelKVM || now.Sub(pr.At) < probeTCGFor)
}

// probeKey names what a probe's answer depends on: QEMU, the kernel, the
// machine type, and this boot of the host (its KVM may differ after a
// reboot or a migration).
func probeKey(qemu string, im *Image, machine string) string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return fmt.Sprintf("%s %s %s boot %s", qemu, im.KernelRelease, machine, strings.TrimSpace(string(boot)))
}

// chooseAccel picks KVM only when a probe boot under KVM reaches the init
// (within 10s); it remembers the answer (see probeKey and probeTCGFor) in
// the user's cache directory, since a probe that fails costs its whole
// timeout.
func chooseAccel(ctx context.Context, qemu string, im *Image, machine string) string {
	if env := os.Getenv("KILN_VM_ACCEL"); env == AccelKVM || env == AccelTCG {
		return env
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return AccelTCG
	}
	f.Close()
	key := probeKey(qemu, im, machine)
	cache := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "kiln", "vm-accel.json")
		var pr probeResult
		if b, err := os.ReadFile(cache); err == nil && json.Unmarshal(b, &pr) == nil && pr.fresh(key, time.Now()) {
			return pr.Accel
		}
	}
	accel := AccelTCG
	if ProbeKVM(ctx, qemu, im, machine, 10*time.Second) == nil {
		accel = AccelKVM
	}
	if cache != "" {
		b, _ := json.Marshal(probeResult{Key: key, Accel: accel, At: time.Now()})
		os.MkdirAll(filepath.Dir(cache), 0o755)
		os.WriteFile(cache, b, 0o644)
	}
	return accel
}

// ProbeKVM boots the image under KVM with kiln.probe, which makes the init
// print a line and power off at once, and reports whether the line came
// within timeout.
func ProbeKVM(ctx context.Context, qemu string, im *Image, machine string, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "kiln-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	console := filepath.Join(dir, "console.log")
	args := qemuArgs(im, machine, AccelKVM, 128, 1, console, nil, []string{vminit.ArgProbe}, nil)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	child.Own(cmd)
	out, err := cmd.CombinedOutput()
	if grep(console, vminit.ProbeOK) != "" {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("KVM guest did not reach its init within %s", timeout)
	}
	return fmt.Errorf("KVM guest failed: %v %s", err, strings.TrimSpace(string(out)))
}
