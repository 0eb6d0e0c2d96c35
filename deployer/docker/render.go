// Package docker is kiln's Docker target: it renders an app's topology to a
// plan of Kubernetes-like pods on one Docker engine, applies the plan with
// the engine's API, and finds what it made again by label alone.
//
// Each replica, shard, leaf, router and root is a pod: a holder container,
// started from the service's own image in the pause role, owns the pod's
// network namespace and its aliases on the app's network; the program, its
// sidecars and its init containers join that namespace, so they reach one
// another on 127.0.0.1 as they would in a Kubernetes pod.
package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/internal/runas"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Labels the Docker target sets beside kubernetes's LabelName,
// LabelInstance, LabelComponent and LabelManagedBy.
const (
	LabelPod = "io.kiln.pod" // the pod's name: "kv-shard-2"
	// LabelData marks ("true") the volume of an instance's storage, which
	// down and pruning keep unless asked to delete data.
	LabelData      = "io.kiln.data"
	LabelIndex     = "io.kiln.index"     // the pod's replica index
	LabelContainer = "io.kiln.container" // "app", "holder", or the sidecar's or init container's name
	LabelSpecHash  = "io.kiln.spec-hash" // the hash of the pod's plan (PodPlan.Hash)
	// LabelFrameHash is the hash of what a program swap keeps: the pod's
	// plan less its program's image and environment. Roll replaces the
	// program of a pod whose frame hash is unchanged in place, and
	// recreates the others.
	LabelFrameHash = "io.kiln.frame-hash"
)

// Container roles in LabelContainer besides sidecar and init names.
const (
	containerApp    = "app"
	containerHolder = "holder"
)

// user is who every container runs as: the same non-root user as the
// image's and as on Kubernetes.
const user = runas.User

// Options say what to run and where to publish it.
type Options struct {
	// Image is every service's image, unless Images names another for its
	// service. A reference with a digest (kiln.local/shop:latest@sha256:…)
	// pins it.
	Image string
	// Images are images by service name; nil means Image runs every
	// service.
	Images map[string]string
	// Port is the host port, on 127.0.0.1, of the first service's entry
	// point; 0 picks a free one. Other services' entry points always get
	// free ports.
	Port int
	// Output receives the program containers' logs, each line prefixed
	// with its process ("kv/shard-1 | "). nil means os.Stderr.
	Output io.Writer
}

func (o *Options) image(service string) string {
	if im := o.Images[service]; im != "" {
		return im
	}
	return o.Image
}

// Plan is everything an app needs on an engine: plain data that encodes
// to the same JSON for the same app and options.
type Plan struct {
	App     string       `json:"app"`
	Network NetworkPlan  `json:"network"`
	Volumes []VolumePlan `json:"volumes,omitempty"`
	// Pods are in start order: for each service its backends, then its
	// entry point.
	Pods []PodPlan `json:"pods"`
}

// NetworkPlan is the app's user-defined bridge network.
type NetworkPlan struct {
	Name   string            `json:"name"` // kiln-APP
	Labels map[string]string `json:"labels"`
}

// VolumePlan is one Docker volume: one per pod per spec volume, and one
// per instance of a service with storage.
type VolumePlan struct {
	Name   string            `json:"name"` // kiln-APP-POD-VOLUME; kiln-APP-POD-data for storage
	Pod    string            `json:"pod"`
	Labels map[string]string `json:"labels"`
}

// PodPlan is one pod: a holder, init containers, the program and sidecars.
type PodPlan struct {
	// Name is the pod's name and network alias: "kv-shard-2".
	Name string `json:"name"`
	// Process names the pod in logs: "kv/shard-2".
	Process string        `json:"process"`
	Service string        `json:"service"`
	Role    patterns.Role `json:"role"`
	Index   int           `json:"index"`
	Entry   bool          `json:"entry,omitempty"`
	Aliases []string      `json:"aliases"`
	Port    int           `json:"port"` // the program's port inside the pod
	// Publish, on an entry pod, publishes Port on 127.0.0.1:HostPort
	// (HostPort 0: a free port).
	Publish  bool     `json:"publish,omitempty"`
	HostPort int      `json:"host_port,omitempty"`
	Image    string   `json:"image"`
	Env      []string `json:"env"` // KEY=VALUE, sorted
	// HolderEnv is the holder's: the pause role, which listens on the
	// pod's port and hands the socket to the program (KILN_LISTEN_FROM),
	// so connections made while the program restarts wait for it.
	HolderEnv []string          `json:"holder_env"`
	Mounts    []MountPlan       `json:"mounts,omitempty"`
	Init      []ContainerPlan   `json:"init,omitempty"`
	Sidecars  []ContainerPlan   `json:"sidecars,omitempty"`
	Labels    map[string]string `json:"labels"`
	// Hash is a digest of every other field: a pod whose hash changed is
	// recreated.
	Hash string `json:"hash"`
}

// ContainerPlan is an init container or a sidecar of a pod.
type ContainerPlan struct {
	Name   string      `json:"name"`
	Image  string      `json:"image"`
	Args   []string    `json:"args,omitempty"`
	Env    []string    `json:"env,omitempty"`
	Mounts []MountPlan `json:"mounts,omitempty"`
}

// MountPlan mounts a Docker volume at Path.
type MountPlan struct {
	Volume string `json:"volume"` // the Docker volume's name
	Path   string `json:"path"`
}

// NetworkName is the name of app's network: kiln-APP.
func NetworkName(app string) string { return "kiln-" + app }

// Render turns app into a plan. It needs no engine.
func Render(app *spec.App, o Options) (*Plan, error) {
	t, err := patterns.Build(app)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, s := range app.Services {
		if o.image(s.Name) == "" {
			missing = append(missing, s.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("docker: no image for service %s: set Options.Image, or Options.Images for each service", strings.Join(missing, ", "))
	}
	disc := patterns.ByName(app)
	p := &Plan{App: app.Name, Network: NetworkPlan{Name: NetworkName(app.Name), Labels: map[string]string{
		kubernetes.LabelInstance:  app.Name,
		kubernetes.LabelManagedBy: kubernetes.ManagedBy,
	}}}
	first := true
	for wi := range t.Workloads {
		w := &t.Workloads[wi]
		s := app.Service(w.Service)
		port := s.HandlerPort()
		var peers []string
		if b := t.Workload(w.Backends); b != nil {
			for j := range b.Replicas {
				peers = append(peers, "http://"+b.Name()+"-"+strconv.Itoa(j)+":"+strconv.Itoa(port))
			}
		}
		for i := range w.Replicas {
			name := w.Name() + "-" + strconv.Itoa(i)
			pod := PodPlan{
				Name:    name,
				Process: w.Service + "/" + w.Instance(i),
				Service: w.Service,
				Role:    w.Role,
				Index:   i,
				Entry:   w.Entry,
				Aliases: []string{name},
				Port:    port,
				Image:   o.image(w.Service),
				Labels: map[string]string{
					kubernetes.LabelInstance:  app.Name,
					kubernetes.LabelName:      w.Service,
					kubernetes.LabelComponent: string(w.Role),
					kubernetes.LabelManagedBy: kubernetes.ManagedBy,
					LabelPod:                  name,
					LabelIndex:                strconv.Itoa(i),
				},
			}
			if w.Entry {
				pod.Aliases = append(pod.Aliases, w.Service)
				pod.Publish = true
				if first {
					pod.HostPort = o.Port
				}
				first = false
			}
			env := w.RoleEnv(i, peers, disc)
			addr := ":" + strconv.Itoa(port)
			// An abstract unix socket: the pod's network namespace is its
			// only scope, so the name need only be unique in the pod.
			from := "@kiln-listener"
			env[patterns.EnvAddr], env[patterns.EnvListenFrom] = addr, from
			pod.Env = envList(env)
			pod.HolderEnv = envList(map[string]string{
				patterns.EnvRole: string(patterns.RolePause), patterns.EnvAddr: addr, patterns.EnvListenFrom: from,
			})
			vol := map[string]string{}
			for _, v := range s.Volumes {
				vp := VolumePlan{Name: "kiln-" + app.Name + "-" + name + "-" + v.Name, Pod: name, Labels: maps.Clone(pod.Labels)}
				p.Volumes = append(p.Volumes, vp)
				vol[v.Name] = vp.Name
				if v.Path != "" {
					pod.Mounts = append(pod.Mounts, MountPlan{Volume: vp.Name, Path: v.Path})
				}
			}
			if st := w.Storage; st != nil {
				// Named after the instance, not the pod's plan, so that the
				// pod's replacements, and the next deploy's, find it.
				vp := VolumePlan{Name: "kiln-" + app.Name + "-" + name + "-data", Pod: name, Labels: maps.Clone(pod.Labels)}
				vp.Labels[LabelData] = "true"
				p.Volumes = append(p.Volumes, vp)
				pod.Mounts = append(pod.Mounts, MountPlan{Volume: vp.Name, Path: st.Path})
			}
			conv := func(c spec.Container) ContainerPlan {
				cp := ContainerPlan{Name: c.Name, Image: c.Image, Args: c.Args, Env: envList(c.Env)}
				for _, m := range c.Mounts {
					cp.Mounts = append(cp.Mounts, MountPlan{Volume: vol[m.Volume], Path: m.Path})
				}
				return cp
			}
			for _, c := range s.Init {
				pod.Init = append(pod.Init, conv(c))
			}
			for _, c := range s.Sidecars {
				pod.Sidecars = append(pod.Sidecars, conv(c))
			}
			pod.Hash = pod.hash()
			p.Pods = append(p.Pods, pod)
		}
	}
	return p, nil
}

func envList(env map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// hash digests the pod's plan without its hash.
func (p PodPlan) hash() string {
	p.Hash = ""
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // plain data always encodes
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// frame digests what Roll keeps when it replaces the pod's program in
// place: the holder (its aliases, ports and environment), the init
// containers, the sidecars and the mounts. The holder runs the pause role
// of whichever image the pod was created with, so the image is no part
// of it.
func (p PodPlan) frame() string {
	p.Image, p.Env = "", nil
	return p.hash()
}

// JSON is the plan's stable JSON form: two-space indented and
// newline-terminated.
func (p *Plan) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
