package patterns

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// Role is what one process of a pattern does.
type Role string

// The roles of every pattern. RoleDescribe and RolePause are not workloads:
// one asks the binary to print its spec, the other to hold a network
// namespace.
const (
	RoleRouter  Role = "router"
	RoleRoot    Role = "root"
	RoleLeaf    Role = "leaf"
	RoleReplica Role = "replica"
	// RoleJob runs the program's job function once, for the completion
	// index KILN_INDEX names, and exits: 0 when it returned nil.
	RoleJob      Role = "job"
	RoleDescribe Role = "describe"
	// RolePause holds a pod's network namespace, as a Kubernetes pod's
	// infra container does, on targets without pods: it waits for SIGTERM.
	RolePause Role = "pause"
)

// ProbeArg, followed by a URL, makes the binary probe that URL once and
// exit 0 if it answered 200, else 1: a health check for images FROM
// scratch, which have no curl.
const ProbeArg = "--kiln-probe"

// Environment variables through which a deployer tells the binary its role.
const (
	EnvRole     = "KILN_ROLE"
	EnvService  = "KILN_SERVICE"
	EnvIndex    = "KILN_INDEX"
	EnvCount    = "KILN_COUNT"
	EnvPeers    = "KILN_PEERS"     // comma-separated backend base URLs
	EnvAddr     = "KILN_ADDR"      // listen address, e.g. ":8080"
	EnvListenFD = "KILN_LISTEN_FD" // an inherited listening socket
	// EnvReadyFD is a pipe on which the program writes a line once it
	// serves: a deployer that starts a new process beside the old one on
	// the same socket cannot tell them apart by probing it.
	EnvReadyFD = "KILN_READY_FD"
	// EnvListenFrom names a unix socket (an abstract one, "@name", on
	// Linux) from which a pod's holder hands over the listening socket it
	// keeps open, so that connections made while the program restarts wait
	// in its queue, as they do on the local target, which holds every
	// socket itself.
	EnvListenFrom = "KILN_LISTEN_FROM"
	// EnvServices is service discovery: where each service of the app is
	// reached, as name=URL pairs (see Discovery). Every process of an app
	// gets it, so a handler reaches another service by name.
	EnvServices = "KILN_SERVICES"
	// EnvLeases lists the leases a process may take, as name=duration
	// pairs ("compactor=15s,index=5s"); see the lease package.
	EnvLeases = "KILN_LEASES"
	// EnvData is the directory of the instance's own storage, which it
	// keeps across restarts (spec.Storage).
	EnvData = "KILN_DATA"
	// EnvWarm set to "0" stops a router or root from dialling its backends
	// before it serves (see Warmer): on a cluster, where its backends may
	// get no address until after it starts, an early lookup would leave a
	// "no such name" in the cluster DNS's cache, failing its first
	// requests for as long as that answer is cached.
	EnvWarm = "KILN_WARM"
)

// PathCalls is where a replica or leaf answers, as a JSON object, how many
// requests it has made to each service of its app by name since it
// started ({"carts": 12}): the calls between services that the driver's
// dashboard draws. Like /healthz, the path is kiln's, not the program's.
const PathCalls = "/kiln/calls"

// Topology is every workload an app needs, in target-neutral terms.
type Topology struct {
	App string
	// Spec is the app the topology was built from, for what the workloads
	// leave out (key rules, sidecars); nil for a topology built by hand.
	Spec *spec.App
	// Workloads serve requests until they are stopped.
	Workloads []Workload
	// Jobs run to completion, once or on a schedule: one workload of role
	// RoleJob per job or cron service, its Replicas the job's
	// completions. A target that cannot run them must refuse them.
	Jobs []Workload
}

// Workload is a set of identical processes of one role of one service.
type Workload struct {
	Service  string
	Role     Role
	Replicas int
	// Stable workloads give each replica a lasting identity: shard i must
	// stay shard i across restarts.
	Stable bool
	// Entry marks the workload that clients call.
	Entry bool
	// Unit names one replica in Kiln-Backend headers and logs ("shard" gives
	// shard-0, shard-1, ...).
	Unit string
	// Backends names the workload this one forwards to, if any.
	Backends string
	// Env is the service's own environment (its spec's env).
	Env map[string]string
	// Job is what a RoleJob workload runs, and Cron, when set, when it
	// runs it (Job is then &Cron.Job); both nil for a serving workload.
	Job  *spec.Job
	Cron *spec.Cron
	// Leases are the leases the workload's processes may take: the
	// service's, on its replicas, shards or leaves; none on a router.
	Leases []spec.Lease
	// Storage, on a stable workload, gives each replica a volume of its
	// own: replica i always gets volume i.
	Storage *spec.Storage
}

// Name is the workload's name, unique within the app: "kv-router".
func (w *Workload) Name() string { return w.Service + "-" + w.Unit }

// Instance names replica i: "shard-2".
func (w *Workload) Instance(i int) string { return w.Unit + "-" + strconv.Itoa(i) }

// RoleEnv is the whole environment kiln gives replica i: the service's own
// variables, its role, and where the app's services are. peers are the
// base URLs of the backends when the workload forwards to any. Every
// deployer starts its processes with it, so every target wires discovery
// the same way.
func (w *Workload) RoleEnv(i int, peers []string, services Discovery) map[string]string {
	env := maps.Clone(w.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[EnvRole] = string(w.Role)
	if w.Role == RoleRouter || w.Role == RoleRoot {
		env[envGoDebug] = addGoDebug(env[envGoDebug], sysmonAwake)
	}
	env[EnvService] = w.Service
	env[EnvIndex] = strconv.Itoa(i)
	env[EnvCount] = strconv.Itoa(w.Replicas)
	if len(peers) > 0 {
		env[EnvPeers] = strings.Join(peers, ",")
	}
	env[EnvServices] = services.String()
	if w.Storage != nil {
		// Where a container sees it; the local and vm targets, whose
		// processes share one file system, name a directory per instance
		// instead.
		env[EnvData] = w.Storage.Path
	}
	if len(w.Leases) > 0 {
		pairs := make([]string, len(w.Leases))
		for i, l := range w.Leases {
			pairs[i] = l.Name + "=" + l.Duration.D().String()
		}
		env[EnvLeases] = strings.Join(pairs, ",")
	}
	return env
}

// envGoDebug holds the Go runtime's settings.
const envGoDebug = "GODEBUG"

// sysmonAwake is the runtime setting routers and roots run with. The Go
// runtime's monitor thread, sysmon, sleeps deeply while the process has
// nothing to run, and the first system call made the blocking way after
// that wakes it (a futex) into a spell of 20 µs naps, during which it hands
// the process to another thread whenever a call outlasts a nap. The
// forwarding engine reads and writes without such calls (forward's
// sysConn), but accepting, setting up and closing a connection make them,
// so a router that gets a new connection per request, and idles between
// requests, paid for a wake-up and hand-overs per request: at about 6,000
// such requests a second it took 107 µs of CPU and 2.05 context switches
// per request, and 90 µs and 1.03 with this setting. Any schedtrace period
// keeps sysmon out of deep sleep, napping up to 10 ms instead; the longest
// one, 2^31 ms, prints the scheduler's trace line once per 24.8 days of
// the host's uptime.
const sysmonAwake = "schedtrace=2147483647"

// addGoDebug adds setting to the GODEBUG value v, unless v sets that key.
// Keys are compared as the runtime reads them, spaces and all.
func addGoDebug(v, setting string) string {
	key, _, _ := strings.Cut(setting, "=")
	for field := range strings.SplitSeq(v, ",") {
		if k, _, _ := strings.Cut(field, "="); k == key {
			return v
		}
	}
	if v == "" {
		return setting
	}
	return setting + "," + v
}

// Build works out the topology of a valid app. Backends come before the
// workload that forwards to them, so a deployer can start them in order.
func Build(app *spec.App) (*Topology, error) {
	if err := app.Validate(); err != nil {
		return nil, err
	}
	t := &Topology{App: app.Name, Spec: app}
	for i := range app.Services {
		s := &app.Services[i]
		if job := s.Batch(); job != nil {
			t.Jobs = append(t.Jobs, Workload{Service: s.Name, Role: RoleJob, Replicas: job.Completions, Unit: "job", Env: s.Env, Job: job, Cron: s.Cron})
			continue
		}
		backend := Workload{Service: s.Name, Replicas: s.Backends(), Env: s.Env, Leases: s.Leases}
		front := Workload{Service: s.Name, Replicas: 1, Entry: true, Role: RoleRouter, Unit: "router", Env: s.Env}
		switch s.Pattern() {
		case "simple", "spread":
			backend.Role, backend.Unit = RoleReplica, "replica"
		case "shard":
			backend.Role, backend.Unit, backend.Stable, backend.Storage = RoleLeaf, "shard", true, s.Storage
		case "scatter":
			backend.Role, backend.Unit, backend.Stable, backend.Storage = RoleLeaf, "leaf", true, s.Storage
			front.Role, front.Unit = RoleRoot, "root"
		default:
			return nil, fmt.Errorf("service %q: unknown pattern %q", s.Name, s.Pattern())
		}
		front.Backends = backend.Name()
		t.Workloads = append(t.Workloads, backend, front)
	}
	return t, nil
}

// Workload returns the workload called name, or nil.
func (t *Topology) Workload(name string) *Workload {
	for i := range t.Workloads {
		if t.Workloads[i].Name() == name {
			return &t.Workloads[i]
		}
	}
	return nil
}

// NoJobs is nil when t has no jobs, else an error naming the first one,
// for a target that cannot run jobs or cron jobs.
func (t *Topology) NoJobs(target string) error {
	if len(t.Jobs) == 0 {
		return nil
	}
	w := t.Jobs[0]
	kind := "job"
	if w.Cron != nil {
		kind = "cron job"
	}
	return fmt.Errorf("service %q is a %s, which the %s target does not run yet: the local and kubernetes targets run it", w.Service, kind, target)
}

// NoStorage is nil when no service of t keeps storage, else an error
// naming the first, for a target that gives instances no volumes.
func (t *Topology) NoStorage(target string) error {
	for _, w := range t.Workloads {
		if w.Storage != nil {
			return fmt.Errorf("service %q keeps storage, which the %s target does not give yet: the local, docker, kubernetes and vm targets do", w.Service, target)
		}
	}
	return nil
}

// NoLeases is nil when no service of t takes a lease, else an error naming
// the first, for a target that holds no leases.
func (t *Topology) NoLeases(target string) error {
	for _, w := range t.Workloads {
		if len(w.Leases) > 0 {
			return fmt.Errorf("service %q takes the lease %q, which the %s target does not hold yet: the local and kubernetes targets do", w.Service, w.Leases[0].Name, target)
		}
	}
	return nil
}
