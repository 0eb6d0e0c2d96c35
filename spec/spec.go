// Package spec is kiln's model of an application: plain data that every
// front-end (Go SDK, //kiln: annotations, kiln.hcl) produces and every
// back-end (builder, patterns, deployers) consumes.
//
// The JSON form of App is stable: fields keep their order and maps are
// sorted, so the same App always encodes to the same bytes.
package spec

import (
	"bytes"
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
