// Package spec is kiln's model of an application: plain data that every
// front-end (Go SDK, //kiln: annotations, kiln.hcl) produces and every
// back-end (builder, patterns, deployers) consumes.
//
// The JSON form of App is stable: fields keep their order and maps are
// sorted, so the same App always encodes to the same bytes.
package spec

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// App is a whole application: one or more services.
type App struct {
	Name     string    `json:"name"`
	Services []Service `json:"services"`
}

// Service is one service and the pattern it follows. Exactly one of Simple,
// Shard, Scatter, Spread, Job and Cron is set. A job or cron service serves
// no requests: its program runs a function to completion.
type Service struct {
	Name string `json:"name"`
	// Port is where the program's handler listens inside its workload.
	Port int `json:"port,omitempty"`
	// Public asks targets that can to expose the entry point outside the
	// cluster (a LoadBalancer Service on Kubernetes).
	Public bool `json:"public,omitempty"`
	// Routers is how many routers (a scatter service's roots) a cluster
	// runs in front of a shard, scatter or spread service, so that losing
	// one loses no request; 0 means DefaultRouters. A target on one
	// machine (local, docker, vm) runs one, which it restarts.
	Routers int `json:"routers,omitempty"`
	// Egress are the address blocks outside the app (CIDRs, such as
	// "10.20.0.0/16" or "0.0.0.0/0" for anywhere) that the service's
	// programs reach. A cluster's network policies let its pods reach DNS,
	// the app's other services and these, and nothing else.
	Egress []string `json:"egress,omitempty"`

	Simple  *Simple  `json:"simple,omitempty"`
	Shard   *Shard   `json:"shard,omitempty"`
	Scatter *Scatter `json:"scatter,omitempty"`
	Spread  *Spread  `json:"spread,omitempty"`
	Job     *Job     `json:"job,omitempty"`
	Cron    *Cron    `json:"cron,omitempty"`

	Env       map[string]string `json:"env,omitempty"`
	Resources *Resources        `json:"resources,omitempty"`
	Sidecars  []Container       `json:"sidecars,omitempty"`
	Init      []Container       `json:"init,omitempty"`
	Volumes   []Volume          `json:"volumes,omitempty"`
	Probes    *Probes           `json:"probes,omitempty"`
	Autoscale *Autoscale        `json:"autoscale,omitempty"`
	// Leases are the named leases the service's processes take with
	// sdk.Lead and sdk.Lock. Only serving services have them; the
	// processes that take them are its replicas, shards or leaves.
	Leases []Lease `json:"leases,omitempty"`
	// Storage gives each shard or leaf a volume of its own that outlives
	// its process: instance i always gets volume i.
	Storage *Storage `json:"storage,omitempty"`
}

// DefaultPort is the handler port when a service does not name one.
const DefaultPort = 8080

// Simple is N identical replicas behind one load-balanced entry.
type Simple struct {
	Replicas int `json:"replicas"`
}

// Shard is N shards with stable identities; a router hashes a key taken from
// each request to one of them.
type Shard struct {
	Shards int `json:"shards"`
	Key    Key `json:"key"`
	// Ambassador names a client workload whose pods run the router as a
	// sidecar instead of as a Deployment of its own (Kubernetes only).
	Ambassador string `json:"ambassador,omitempty"`
}

// Key says where a shard router finds a request's key. Exactly one field is
// set.
type Key struct {
	// PathSegment is a 1-based path segment: 2 takes "k" from /kv/k.
	PathSegment int `json:"path_segment,omitempty"`
	// Regexp is matched against the path; its first capture group is the key.
	Regexp string `json:"regexp,omitempty"`
	Header string `json:"header,omitempty"`
	Query  string `json:"query,omitempty"`
	// Func names a Go function registered with the SDK.
	Func string `json:"func,omitempty"`
}

// String describes the rule the way error messages show it.
func (k Key) String() string {
	switch {
	case k.PathSegment > 0:
		return fmt.Sprintf("path segment %d (%sKEY)", k.PathSegment, strings.Repeat("/…", k.PathSegment-1)+"/")
	case k.Regexp != "":
		return fmt.Sprintf("first capture of regexp %q on the path", k.Regexp)
	case k.Header != "":
		return fmt.Sprintf("header %q", k.Header)
	case k.Query != "":
		return fmt.Sprintf("query parameter %q", k.Query)
	case k.Func != "":
		return fmt.Sprintf("key function %q", k.Func)
	}
	return "no key rule"
}

// Gathers built into kiln.
const (
	GatherConcat = "concat" // concatenate JSON arrays
	GatherMerge  = "merge"  // merge JSON objects
	GatherFirst  = "first"  // the first successful response
)

// Leaf-error policies.
const (
	OnLeafErrorFail    = "fail"
	OnLeafErrorPartial = "partial"
)

// Scatter sends each request to all leaves and gathers their answers.
type Scatter struct {
	Leaves int `json:"leaves"`
	// Gather is one of the built-in gathers, or the name of a Go function
	// registered with the SDK.
	Gather string `json:"gather"`
	// Timeout bounds each leaf's answer.
	Timeout Duration `json:"timeout"`
	// OnLeafError is "fail" or "partial".
	OnLeafError string `json:"on_leaf_error"`
}

// Spread choices.
const (
	ChoiceRandom     = "random"
	ChoiceTwoChoices = "two-choices"
)

// Spread sends each request to a random replica, or to the less loaded of
// two random ones.
type Spread struct {
	Replicas int    `json:"replicas"`
	Choice   string `json:"choice"`
}

// Job runs the program's job function to completion: Completions runs must
// succeed, each with its own completion index (0 to Completions-1, which
// the run reads as sdk.Self().Index), at most Parallelism at a time.
type Job struct {
	// Completions is how many runs must succeed; SetDefaults makes 0 one.
	Completions int `json:"completions"`
	// Parallelism is how many runs may be active at once; SetDefaults
	// makes 0 one.
	Parallelism int `json:"parallelism"`
	// Retries is how many failed runs the whole job tolerates, counted over
	// every index, before it fails (Kubernetes' backoffLimit). 0 means a
	// first failure fails the job.
	Retries int `json:"retries"`
	// Deadline bounds the whole job, retries included; 0 means none.
	Deadline Duration `json:"deadline,omitzero"`
}

// Concurrency policies of a cron job, with Kubernetes' meaning.
const (
	ConcurrencyAllow   = "allow"   // runs may overlap
	ConcurrencyForbid  = "forbid"  // a run due while one is active is skipped
	ConcurrencyReplace = "replace" // a run due while one is active replaces it
)

// Cron runs a job on a schedule.
type Cron struct {
	// Schedule is a standard 5-field cron line ("*/5 * * * *") or a
	// descriptor: @yearly, @monthly, @weekly, @daily, @hourly, or
	// "@every 1m".
	Schedule string `json:"schedule"`
	// TimeZone is the IANA zone the schedule is read in ("Europe/Paris");
	// empty means the target's local zone (UTC on Kubernetes).
	TimeZone string `json:"time_zone,omitempty"`
	// ConcurrencyPolicy is "allow", "forbid" or "replace"; SetDefaults
	// makes "" allow, as Kubernetes does.
	ConcurrencyPolicy string `json:"concurrency_policy"`
	// StartingDeadline is how late a run may start after its scheduled
	// time before it is skipped as missed; 0 means no limit.
	StartingDeadline Duration `json:"starting_deadline,omitzero"`
	// Suspend stops new runs from starting; active ones go on.
	Suspend bool `json:"suspend,omitempty"`
	// Job is what each run does.
	Job Job `json:"job"`
}

// Lease is a lock among the processes of one service: at most one holds
// it at a time, and each acquisition carries a fencing token larger than
// every earlier one. The holder renews it while it runs; one that crashes
// or hangs loses it once Duration has passed without a renewal.
type Lease struct {
	// Name is the lease's name within its service, a DNS label.
	Name string `json:"name"`
	// Duration is how long a holder keeps the lease without renewing it:
	// the longest a crashed holder keeps the others waiting. A whole
	// number of seconds, 2s to 1h; SetDefaults makes 0 15s, client-go's
	// default for leader election.
	Duration Duration `json:"duration"`
}

// Storage is a volume per instance of a shard or scatter service. The
// program finds its own as sdk.Self().Data (KILN_DATA), on every target.
type Storage struct {
	// Size is each volume's capacity in Kubernetes notation ("1Gi").
	// Required: Kubernetes needs it for a claim, and the microVM target
	// for its disk.
	Size string `json:"size"`
	// Path is where the program's container sees its volume; SetDefaults
	// makes "" /data. The local target gives each process a directory of
	// its own instead, and the vm target, whose instances share one guest,
	// mounts each one's disk at Path/SERVICE/INSTANCE; KILN_DATA names it.
	Path string `json:"path"`
	// Class is the Kubernetes storage class; "" means the cluster's
	// default.
	Class string `json:"class,omitempty"`
	// OnDelete and OnScaleDown say what becomes of the volumes on
	// Kubernetes when the service is removed or loses instances:
	// "retain" or "delete". SetDefaults makes "" retain: data is only
	// deleted when asked.
	OnDelete    string `json:"on_delete"`
	OnScaleDown string `json:"on_scale_down"`
}

// What becomes of volumes on Kubernetes (Storage.OnDelete, OnScaleDown).
const (
	StorageRetain = "retain"
	StorageDelete = "delete"
)

// DefaultStoragePath is Storage.Path when it sets none.
const DefaultStoragePath = "/data"

// DefaultLeaseDuration is a Lease's Duration when it sets none.
const DefaultLeaseDuration = Duration(15 * time.Second)

// Lease returns the service's lease called name, or nil.
func (s *Service) Lease(name string) *Lease {
	for i := range s.Leases {
		if s.Leases[i].Name == name {
			return &s.Leases[i]
		}
	}
	return nil
}

// Resources are CPU and memory quantities in Kubernetes notation.
type Resources struct {
	Requests Quantities `json:"requests,omitzero"`
	Limits   Quantities `json:"limits,omitzero"`
}

// Quantities is a CPU ("250m") and memory ("128Mi") pair.
type Quantities struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

// Container is a sidecar or init container that runs beside the program.
type Container struct {
	Name   string            `json:"name"`
	Image  string            `json:"image"`
	Args   []string          `json:"args,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	Ports  []int             `json:"ports,omitempty"`
	Mounts []Mount           `json:"mounts,omitempty"`
}

// Volume is a scratch volume shared by the program and its containers.
type Volume struct {
	Name string `json:"name"`
	// Path is where the program itself sees it; empty means not mounted.
	Path string `json:"path,omitempty"`
}

// Mount places a Volume into a container.
type Mount struct {
	Volume string `json:"volume"`
	Path   string `json:"path"`
}

// Probes override the health endpoints kiln probes.
type Probes struct {
	Readiness *Probe `json:"readiness,omitempty"`
	Liveness  *Probe `json:"liveness,omitempty"`
}

// Probe is an HTTP GET probe.
type Probe struct {
	Path   string   `json:"path"`
	Period Duration `json:"period,omitzero"`
}

// Autoscale bounds the replica count of a scalable workload.
type Autoscale struct {
	Min       int `json:"min"`
	Max       int `json:"max"`
	TargetCPU int `json:"target_cpu,omitempty"` // percent of the CPU request
}

// Duration is a time.Duration written as "1.5s" in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"2s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Pattern names the service's pattern: "simple", "shard", "scatter",
// "spread", "job", "cron", or "" when none is set.
func (s *Service) Pattern() string {
	switch {
	case s.Simple != nil:
		return "simple"
	case s.Shard != nil:
		return "shard"
	case s.Scatter != nil:
		return "scatter"
	case s.Spread != nil:
		return "spread"
	case s.Job != nil:
		return "job"
	case s.Cron != nil:
		return "cron"
	}
	return ""
}

// Batch is the job a job or cron service runs, or nil for a service that
// serves requests.
func (s *Service) Batch() *Job {
	switch {
	case s.Job != nil:
		return s.Job
	case s.Cron != nil:
		return &s.Cron.Job
	}
	return nil
}

// Backends is how many leaves, shards or replicas sit behind the entry;
// 0 for a job or cron service, which has no entry.
func (s *Service) Backends() int {
	switch {
	case s.Simple != nil:
		return s.Simple.Replicas
	case s.Shard != nil:
		return s.Shard.Shards
	case s.Scatter != nil:
		return s.Scatter.Leaves
	case s.Spread != nil:
		return s.Spread.Replicas
	}
	return 0
}

// DefaultRouters is how many routers a cluster runs when Routers is 0:
// two, so a router's restart or its node's drain is not an outage.
const DefaultRouters = 2

// RouterReplicas is how many routers a cluster runs in front of s: Routers,
// DefaultRouters when unset, or 0 when s has no router (a simple service,
// whose Service balances itself; a job; a shard whose router runs in its
// ambassador's pods).
func (s *Service) RouterReplicas() int {
	if !s.HasRouter() {
		return 0
	}
	return cmp.Or(s.Routers, DefaultRouters)
}

// HasRouter reports whether a workload of its own forwards to s's backends.
func (s *Service) HasRouter() bool {
	return s.Scatter != nil || s.Spread != nil || (s.Shard != nil && s.Shard.Ambassador == "")
}

// HandlerPort is Port, or DefaultPort when unset.
func (s *Service) HandlerPort() int {
	if s.Port == 0 {
		return DefaultPort
	}
	return s.Port
}

// Service returns the service called name, or nil.
func (a *App) Service(name string) *Service {
	for i := range a.Services {
		if a.Services[i].Name == name {
			return &a.Services[i]
		}
	}
	return nil
}

// MarshalStable is the canonical JSON form of a: two-space indented and
// newline-terminated. Every front-end must produce these exact bytes.
func (a *App) MarshalStable() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(a); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Parse decodes the JSON form of an App, refusing unknown fields so a typo
// is an error instead of a silently ignored setting.
func Parse(b []byte) (*App, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var a App
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return &a, nil
}
