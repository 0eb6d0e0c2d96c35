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
)

// Topology is every workload an app needs, in target-neutral terms.
type Topology struct {
	App string
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
	env[EnvService] = w.Service
	env[EnvIndex] = strconv.Itoa(i)
	env[EnvCount] = strconv.Itoa(w.Replicas)
	if len(peers) > 0 {
		env[EnvPeers] = strings.Join(peers, ",")
	}
	env[EnvServices] = services.String()
	return env
}

// Build works out the topology of a valid app. Backends come before the
// workload that forwards to them, so a deployer can start them in order.
func Build(app *spec.App) (*Topology, error) {
	if err := app.Validate(); err != nil {
		return nil, err
	}
	t := &Topology{App: app.Name}
	for i := range app.Services {
		s := &app.Services[i]
		if job := s.Batch(); job != nil {
			t.Jobs = append(t.Jobs, Workload{Service: s.Name, Role: RoleJob, Replicas: job.Completions, Unit: "job", Env: s.Env, Job: job, Cron: s.Cron})
			continue
		}
		backend := Workload{Service: s.Name, Replicas: s.Backends(), Env: s.Env}
		front := Workload{Service: s.Name, Replicas: 1, Entry: true, Role: RoleRouter, Unit: "router", Env: s.Env}
		switch s.Pattern() {
		case "simple", "spread":
			backend.Role, backend.Unit = RoleReplica, "replica"
		case "shard":
			backend.Role, backend.Unit, backend.Stable = RoleLeaf, "shard", true
		case "scatter":
			backend.Role, backend.Unit, backend.Stable = RoleLeaf, "leaf", true
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
