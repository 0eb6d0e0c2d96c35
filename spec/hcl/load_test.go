package hcl

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	hclv2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/spec"
)

const goodPath = "testdata/good/kiln.hcl"

func TestLoadDecodesEveryFieldOfAGoodDescriptor(t *testing.T) {
	f, diags := Load(hclparse.NewParser(), goodPath, Options{})
	if diags.HasErrors() {
		t.Fatalf("Load(%s) = %v, want no errors", goodPath, diags)
	}
	got, err := f.App.MarshalStable()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "good.json", got)

	// The golden file pins the values; this pins that the descriptor leaves
	// no field of spec.Service unset, so a field added to the spec without
	// a way to write it in kiln.hcl fails here.
	for _, field := range unsetFields(reflect.ValueOf(f.App.Services), "services") {
		t.Errorf("Load(%s) sets no service's %s, want every field of spec.Service set", goodPath, field)
	}

	dir, err := filepath.Abs("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"web":    filepath.Join(dir, "cmd", "web"),
		"kv":     filepath.Join(dir, "cmd", "kv"),
		"search": filepath.Join(filepath.Dir(dir), "search"),
		"images": dir,
	} {
		if got := f.Sources[name]; got != want {
			t.Errorf("Load(%s).Sources[%q] = %q, want %q", goodPath, name, got, want)
		}
	}
	if len(f.Sources) != len(f.App.Services) {
		t.Errorf("Load(%s) has %d sources for %d services, want one each", goodPath, len(f.Sources), len(f.App.Services))
	}
}

// unsetFields lists the struct fields under v that are zero in every
// element of every slice they appear in.
func unsetFields(v reflect.Value, path string) []string {
	set := map[string]bool{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), path+"[]")
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				fp := path + "." + v.Type().Field(i).Name
				if _, ok := set[fp]; !ok {
					set[fp] = false
				}
				if !v.Field(i).IsZero() {
					set[fp] = true
				}
				walk(v.Field(i), fp)
			}
		}
	}
	walk(v, path)
	var unset []string
	for fp, ok := range set {
		if !ok {
			unset = append(unset, fp)
		}
	}
	return unset
}

const variablesSrc = `variable "shards" {
  default = 3
}
variable "stage" {
  default = "dev"
}
variable "public" {
  type    = bool
  default = false
}
locals {
  mode = upper("${var.stage}-${var.shards}")
  tag  = join("-", [local.mode, "x"])
}
service "kv" {
  public = var.public
  env    = { MODE = local.mode, TAG = local.tag }
  shard {
    shards = var.shards
    key { path_segment = 2 }
  }
}
`

func TestLoadTakesVariablesFromVarsThenEnvThenDefault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		shards int
		mode   string
		public bool
	}{
		{name: "defaults", shards: 3, mode: "DEV-3"},
		{name: "KILN_VAR_ converts to the default's type", opts: Options{Env: []string{"KILN_VAR_shards=4", "HOME=/root"}}, shards: 4, mode: "DEV-4"},
		{name: "--var wins over KILN_VAR_", opts: Options{Vars: map[string]string{"shards": "5"}, Env: []string{"KILN_VAR_shards=4"}}, shards: 5, mode: "DEV-5"},
		{name: "the last KILN_VAR_ entry wins", opts: Options{Env: []string{"KILN_VAR_stage=qa", "KILN_VAR_stage=prod"}}, shards: 3, mode: "PROD-3"},
		{name: "a declared type converts", opts: Options{Vars: map[string]string{"public": "true"}}, shards: 3, mode: "DEV-3", public: true},
		{name: "KILN_VAR_ for no variable is ignored", opts: Options{Env: []string{"KILN_VAR_nosuch=1"}}, shards: 3, mode: "DEV-3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, diags := LoadBytes(hclparse.NewParser(), []byte(variablesSrc), "kiln.hcl", tc.opts)
			if diags.HasErrors() {
				t.Fatalf("Load(%s) = %v, want no errors", tc.name, diags)
			}
			s := f.App.Service("kv")
			got := fmt.Sprintf("shards %d, MODE %q, TAG %q, public %v", s.Shard.Shards, s.Env["MODE"], s.Env["TAG"], s.Public)
			want := fmt.Sprintf("shards %d, MODE %q, TAG %q, public %v", tc.shards, tc.mode, tc.mode+"-x", tc.public)
			if got != want {
				t.Errorf("Load(%s) = %s, want %s", tc.name, got, want)
			}
		})
	}
}

// badCase is a descriptor with one problem, and the one error Load must
// report for it.
type badCase struct {
	name    string
	src     string
	vars    map[string]string
	env     []string
	at      string // Subject as file:line,col-col; "" for none
	summary string
	detail  string // a substring of Detail
}

var badCases = []badCase{
	{
		name: "egress not a block",
		src: `service "web" {
  egress = ["0.0.0.0/0", "10.1.2.3/8"]
  simple { replicas = 2 }
}`,
		at: "kiln.hcl:2,3-39", summary: "Invalid egress block", detail: `"10.1.2.3/8" has host bits set; write "10.0.0.0/8"`,
	},
	{
		name: "routers on replicas",
		src: `service "web" {
  routers = 2
  simple { replicas = 2 }
}`,
		at: "kiln.hcl:2,3-14", summary: "Invalid router count", detail: `a simple service has no router of its own; remove routers`,
	},
	{
		name: "too many routers",
		src: `service "kv" {
  routers = 40
  shard {
    shards = 3
    key { path_segment = 2 }
  }
}`,
		at: "kiln.hcl:2,3-15", summary: "Invalid router count", detail: `routers must be in 1–16, got 40`,
	},
	{
		name: "storage without a size",
		src: `service "kv" {
  shard {
    shards = 3
    key { path_segment = 2 }
  }
  storage { path = "/data" }
}`,
		at: "kiln.hcl:6,3-10", summary: "Missing storage size", detail: `In service "kv", storage.size must be set, like "1Gi".`,
	},
	{
		name: "storage on replicas",
		src: `service "web" {
  simple { replicas = 2 }
  storage { size = "1Gi" }
}`,
		at: "kiln.hcl:3,3-10", summary: "Invalid storage", detail: `only a shard or scatter service has storage`,
	},
	{
		name: "unknown storage policy",
		src: `service "kv" {
  shard {
    shards = 3
    key { path_segment = 2 }
  }
  storage {
    size      = "1Gi"
    on_delete = "keep"
  }
}`,
		at: "kiln.hcl:8,5-23", summary: "Invalid storage deletion policy", detail: `storage.on_delete must be one of "retain", "delete", got "keep"`,
	},
	{
		name: "lease duration too short",
		src: `service "compactor" {
  simple { replicas = 3 }
  lease "compactor" { duration = "1s" }
}`,
		at: "kiln.hcl:3,23-38", summary: "Invalid lease duration", detail: `In service "compactor", leases[0].duration must be 2s to 1h, got 1s.`,
	},
	{
		name: "lease name not a label",
		src: `service "compactor" {
  simple { replicas = 3 }
  lease "Compactor" {}
}`,
		at: "kiln.hcl:3,3-20", summary: "Invalid lease name", detail: `leases[0].name: "Compactor" is not a DNS label`,
	},
	{
		name: "lease on a job",
		src: `service "migrate" {
  job {}
  lease "l" {}
}`,
		at: "kiln.hcl:3,3-12", summary: "Invalid leases", detail: `a job service's runs do not elect`,
	},
	{
		name: "invalid cron schedule",
		src: `service "report" {
  cron { schedule = "every minute" }
}`,
		at: "kiln.hcl:2,10-35", summary: "Invalid cron schedule", detail: `In service "report", cron.schedule: "every minute" is not a cron schedule (5 fields like "*/5 * * * *", or @yearly, @monthly, @weekly, @daily, @hourly, "@every 1m"): expected exactly 5 fields, found 2: [every minute].`,
	},
	{
		name: "cron without a schedule",
		src: `service "report" {
  cron { suspend = true }
}`,
		at: "kiln.hcl:2,3-7", summary: "Missing cron schedule", detail: `cron.schedule must be set`,
	},
	{
		name: "unknown time zone",
		src: `service "report" {
  cron {
    schedule  = "@daily"
    time_zone = "Paris"
  }
}`,
		at: "kiln.hcl:4,5-24", summary: "Invalid time zone", detail: `cron.time_zone: "Paris" is not an IANA time zone`,
	},
	{
		name: "unknown concurrency policy",
		src: `service "report" {
  cron {
    schedule           = "@hourly"
    concurrency_policy = "queue"
  }
}`,
		at: "kiln.hcl:4,5-33", summary: "Invalid concurrency policy", detail: `cron.concurrency_policy must be one of "allow", "forbid", "replace", got "queue"`,
	},
	{
		name: "starting deadline that is no duration",
		src: `service "report" {
  cron {
    schedule          = "@hourly"
    starting_deadline = "soon"
  }
}`,
		at: "kiln.hcl:4,5-31", summary: "Invalid duration", detail: `starting_deadline = "soon" is not a duration`,
	},
	{
		name: "cron job template of negative parallelism",
		src: `service "report" {
  cron {
    schedule = "@every 1m"
    job { parallelism = -1 }
  }
}`,
		at: "kiln.hcl:4,11-27", summary: "Invalid parallelism", detail: `cron.job.parallelism must be ≥ 1, got -1`,
	},
	{
		name: "negative completions",
		src: `service "migrate" {
  job {
    completions = -2
  }
}`,
		at: "kiln.hcl:3,5-21", summary: "Invalid completion count", detail: `job.completions must be ≥ 1, got -2`,
	},
	{
		name: "negative retries",
		src: `service "migrate" {
  job { retries = -1 }
}`,
		at: "kiln.hcl:2,9-21", summary: "Invalid retry count", detail: `job.retries must be ≥ 0, got -1`,
	},
	{
		name: "two job blocks",
		src: `service "migrate" {
  job { completions = 2 }
  job { completions = 3 }
}`,
		at: "kiln.hcl:3,3-6", summary: "Duplicate job block", detail: "Only one job block is allowed here",
	},
	{
		name: "job and cron",
		src: `service "migrate" {
  job {}
  cron { schedule = "@daily" }
}`,
		at: "kiln.hcl:1,1-18", summary: "Conflicting patterns", detail: "sets job and cron",
	},
	{
		name: "public job",
		src: `service "migrate" {
  public = true
  job {}
}`,
		at: "kiln.hcl:2,3-16", summary: "Invalid public", detail: "a job service serves no requests",
	},
	{
		name: "zero shards",
		src: `service "kv" {
  shard {
    shards = 0
    key { path_segment = 2 }
  }
}`,
		at: "kiln.hcl:3,5-15", summary: "Invalid shard count", detail: `In service "kv", shard.shards must be ≥ 1, got 0.`,
	},
	{
		name: "zero leaves",
		src: `service "search" {
  scatter { leaves = 0 }
}`,
		at: "kiln.hcl:2,13-23", summary: "Invalid leaf count", detail: "scatter.leaves must be ≥ 1, got 0",
	},
	{
		name: "zero replicas",
		src: `service "web" {
  simple { replicas = 0 }
}`,
		at: "kiln.hcl:2,12-24", summary: "Invalid replica count", detail: "simple.replicas must be ≥ 1, got 0",
	},
	{
		name: "replicas left out",
		src: `service "web" {
  simple {}
}`,
		at: "kiln.hcl:2,3-9", summary: "Invalid replica count", detail: "simple.replicas must be ≥ 1, got 0",
	},
	{
		name: "unknown leaf-error policy",
		src: `service "search" {
  scatter {
    leaves        = 2
    on_leaf_error = "ignore"
  }
}`,
		at: "kiln.hcl:4,5-29", summary: "Invalid leaf-error policy", detail: `scatter.on_leaf_error must be one of "fail", "partial", got "ignore"`,
	},
	{
		name: "unknown spread choice",
		src: `service "images" {
  spread {
    replicas = 2
    choice   = "best"
  }
}`,
		at: "kiln.hcl:4,5-22", summary: "Invalid spread choice", detail: `got "best"`,
	},
	{
		name: "two patterns",
		src: `service "web" {
  simple { replicas = 1 }
  spread { replicas = 2 }
}`,
		at: "kiln.hcl:1,1-14", summary: "Conflicting patterns", detail: `Service "web" sets simple and spread; a service follows exactly one pattern.`,
	},
	{
		name: "no pattern",
		src:  `service "web" {}`,
		at:   "kiln.hcl:1,1-14", summary: "Missing pattern", detail: `Service "web" must set one pattern`,
	},
	{
		name: "a label on a pattern block",
		src: `service "web" {
  simple "x" { replicas = 1 }
}`,
		at: "kiln.hcl:2,10-13", summary: "Extraneous label for simple", detail: "No labels are expected for simple blocks.",
	},
	{
		name: "a service without a name",
		src: `service {
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:1,9-10", summary: "Missing name for service", detail: "All service blocks must have 1 labels (name).",
	},
	{
		name: "one-line block with two attributes",
		src: `service "search" {
  scatter { leaves = 2  gather = "merge" }
}`,
		at: "kiln.hcl:2,25-31", summary: "Invalid single-argument block definition", detail: "A single-line block definition must end with a closing brace immediately after its single argument definition.",
	},
	{
		name: "two simple blocks",
		src: `service "web" {
  simple { replicas = 1 }
  simple { replicas = 2 }
}`,
		at: "kiln.hcl:3,3-9", summary: "Duplicate simple block", detail: "already defined at kiln.hcl:2,3-9",
	},
	{
		name: "unknown attribute",
		src: `service "web" {
  colour = "red"
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,3-9", summary: "Unsupported argument", detail: `An argument named "colour" is not expected here.`,
	},
	{
		name: "unknown block",
		src: `service "web" {
  simple { replicas = 1 }
  replicaset {}
}`,
		at: "kiln.hcl:3,3-13", summary: "Unsupported block type", detail: `Blocks of type "replicaset" are not expected here.`,
	},
	{
		name: "unknown top-level attribute",
		src: `name = "shop"
service "web" {
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:1,1-5", summary: "Unsupported argument", detail: `An argument named "name" is not expected here.`,
	},
	{
		name: "duplicate service",
		src: `service "web" {
  simple { replicas = 1 }
}
service "web" {
  simple { replicas = 2 }
}`,
		at: "kiln.hcl:4,1-14", summary: "Duplicate service name", detail: `A service named "web" is already defined at kiln.hcl:1,1-14`,
	},
	{
		name: "port out of range",
		src: `service "web" {
  port = 70000
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,3-15", summary: "Invalid port", detail: "port must be a port in 1–65535, got 70000",
	},
	{
		name: "service name not a DNS label",
		src: `service "Web" {
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:1,1-14", summary: "Invalid service name", detail: `In service "Web", name: "Web" is not a DNS label`,
	},
	{
		name: "app name not a DNS label",
		src: `app = "Shop"
service "web" {
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:1,1-13", summary: "Invalid app name", detail: `App: "Shop" is not a DNS label`,
	},
	{
		name: "no services",
		src:  `app = "shop"`,
		at:   "kiln.hcl:1,1-1", summary: "No services", detail: "The file must list at least one service.",
	},
	{
		name: "timeout not a duration",
		src: `service "search" {
  scatter {
    leaves  = 2
    timeout = "soon"
  }
}`,
		at: "kiln.hcl:4,5-21", summary: "Invalid duration", detail: `timeout = "soon" is not a duration`,
	},
	{
		name: "non-positive timeout",
		src: `service "search" {
  scatter {
    leaves  = 2
    timeout = "-1s"
  }
}`,
		at: "kiln.hcl:4,5-20", summary: "Invalid timeout", detail: "scatter.timeout must be > 0, got -1s",
	},
	{
		name: "period not a duration",
		src: `service "web" {
  simple { replicas = 1 }
  probes {
    liveness {
      path   = "/live"
      period = "later"
    }
  }
}`,
		at: "kiln.hcl:6,7-23", summary: "Invalid duration", detail: `period = "later" is not a duration`,
	},
	{
		name: "regexp without a capture group",
		src: `service "users" {
  shard {
    shards = 2
    key { regexp = "^/users/[0-9]+" }
  }
}`,
		at: "kiln.hcl:4,11-36", summary: "Invalid key regexp", detail: "has no capture group; wrap the key in ( )",
	},
	{
		name: "regexp that does not compile",
		src: `service "users" {
  shard {
    shards = 2
    key { regexp = "(" }
  }
}`,
		at: "kiln.hcl:4,11-23", summary: "Invalid key regexp", detail: "shard.key.regexp does not compile",
	},
	{
		name: "two key rules",
		src: `service "users" {
  shard {
    shards = 2
    key {
      header = "X-User"
      query  = "user"
    }
  }
}`,
		at: "kiln.hcl:4,5-8", summary: "Conflicting key rules", detail: "shard.key sets 2 key rules; set exactly one.",
	},
	{
		name: "two key blocks",
		src: `service "users" {
  shard {
    shards = 2
    key { header = "X-User" }
    key { query = "user" }
  }
}`,
		at: "kiln.hcl:5,5-8", summary: "Duplicate key block", detail: "Only one key block is allowed here",
	},
	{
		name: "key missing",
		src: `service "kv" {
  shard { shards = 2 }
}`,
		at: "kiln.hcl:2,3-8", summary: "Missing shard key", detail: "shard.key must set one of path_segment, regexp, header, query or func.",
	},
	{
		name: "bad ambassador",
		src: `service "kv" {
  shard {
    shards     = 2
    ambassador = "Web"
    key { path_segment = 2 }
  }
}`,
		at: "kiln.hcl:4,5-23", summary: "Invalid ambassador name", detail: `shard.ambassador: "Web" is not a DNS label`,
	},
	{
		name: "env key KILN_",
		src: `service "web" {
  env    = { KILN_X = "1" }
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,14-26", summary: "Invalid environment variable", detail: `In service "web", env["KILN_X"]: KILN_ variables are kiln's own; pick another name.`,
	},
	{
		name: "sidecar without image",
		src: `service "web" {
  simple { replicas = 1 }
  sidecar "agent" {}
}`,
		at: "kiln.hcl:3,3-18", summary: "Missing image", detail: "sidecars[0].image must be set.",
	},
	{
		name: "duplicate container name",
		src: `service "web" {
  simple { replicas = 1 }
  sidecar "agent" { image = "agent:1" }
  init "agent" { image = "agent:1" }
}`,
		at: "kiln.hcl:4,3-15", summary: "Duplicate container name", detail: `init[0].name: "agent" is used by another container of this service.`,
	},
	{
		name: "container port out of range",
		src: `service "web" {
  simple { replicas = 1 }
  sidecar "agent" {
    image = "agent:1"
    ports = [9000, 0]
  }
}`,
		at: "kiln.hcl:5,20-21", summary: "Invalid container port", detail: "sidecars[0].ports[1] must be a port in 1–65535, got 0",
	},
	{
		name: "mount of an undeclared volume",
		src: `service "web" {
  simple { replicas = 1 }
  sidecar "agent" {
    image = "agent:1"
    mount {
      volume = "cache"
      path   = "/cache"
    }
  }
}`,
		at: "kiln.hcl:6,7-23", summary: "Undeclared volume", detail: `sidecars[0].mounts[0].volume: "cache" is not one of the service's volumes; declare it under volumes.`,
	},
	{
		name: "relative mount path",
		src: `service "web" {
  simple { replicas = 1 }
  volume "cache" {}
  init "warm" {
    image = "warm:1"
    mount {
      volume = "cache"
      path   = "cache"
    }
  }
}`,
		at: "kiln.hcl:8,7-23", summary: "Invalid mount path", detail: `init[0].mounts[0].path must be an absolute path, got "cache"`,
	},
	{
		name: "relative volume path",
		src: `service "web" {
  simple { replicas = 1 }
  volume "cache" { path = "var/cache" }
}`,
		at: "kiln.hcl:3,20-38", summary: "Invalid volume path", detail: `volumes[0].path must be an absolute path`,
	},
	{
		name: "duplicate volume",
		src: `service "web" {
  simple { replicas = 1 }
  volume "cache" {}
  volume "cache" { path = "/cache" }
}`,
		at: "kiln.hcl:4,3-17", summary: "Duplicate volume name", detail: `A volume named "cache" is already declared at kiln.hcl:3,3-17`,
	},
	{
		name: "cpu not a quantity",
		src: `service "web" {
  simple { replicas = 1 }
  resources {
    requests { cpu = "lots" }
  }
}`,
		at: "kiln.hcl:4,16-28", summary: "Invalid CPU quantity", detail: `resources.requests.cpu: "lots" is not a quantity like "250m" or "1".`,
	},
	{
		name: "memory not a quantity",
		src: `service "web" {
  simple { replicas = 1 }
  resources {
    limits { memory = "1 GB" }
  }
}`,
		at: "kiln.hcl:4,14-29", summary: "Invalid memory quantity", detail: `resources.limits.memory: "1 GB" is not a quantity`,
	},
	{
		name: "autoscale max below min",
		src: `service "web" {
  simple { replicas = 1 }
  autoscale {
    min = 3
    max = 2
  }
}`,
		at: "kiln.hcl:5,5-12", summary: "Invalid autoscale maximum", detail: "autoscale.max must be ≥ autoscale.min (3), got 2.",
	},
	{
		name: "target cpu above 100",
		src: `service "web" {
  simple { replicas = 1 }
  autoscale {
    min        = 1
    max        = 2
    target_cpu = 150
  }
}`,
		at: "kiln.hcl:6,5-21", summary: "Invalid CPU target", detail: "autoscale.target_cpu must be a percentage in 1–100, got 150.",
	},
	{
		name: "probe path without a slash",
		src: `service "web" {
  simple { replicas = 1 }
  probes {
    readiness { path = "ready" }
  }
}`,
		at: "kiln.hcl:4,17-31", summary: "Invalid probe path", detail: `probes.readiness.path must start with '/', got "ready".`,
	},
	{
		name: "undeclared variable",
		src: `service "kv" {
  shard {
    shards = var.count
    key { path_segment = 2 }
  }
}`,
		at: "kiln.hcl:3,14-23", summary: "Undeclared variable", detail: `There is no variable named "count"; declare it with a variable "count" block.`,
	},
	{
		name: "undeclared local",
		src: `service "web" {
  env = { MODE = local.mode }
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,18-28", summary: "Undeclared local value", detail: `There is no local value named "mode"`,
	},
	{
		name: "unquoted string",
		src: `service "web" {
  env = { MODE = prod }
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,18-22", summary: "Unknown reference", detail: `There is nothing named "prod" here.`,
	},
	{
		name: "locals in a cycle",
		src: `locals {
  a = local.b
  b = "${local.a}-x"
  c = upper(local.a)
}
service "web" {
  env = { A = local.a, C = local.c }
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,3-14", summary: "Cycle in local values", detail: "local.a → local.b → local.a",
	},
	{
		name: "local that refers to itself",
		src: `locals {
  a = "${local.a}-x"
}
service "web" {
  env = { A = local.a }
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,3-21", summary: "Cycle in local values", detail: "(local.a → local.a)",
	},
	{
		name: "variable without a value",
		src: `variable "shards" {}
service "kv" {
  shard {
    shards = var.shards
    key { path_segment = 2 }
  }
}`,
		at: "kiln.hcl:1,1-18", summary: "No value for variable", detail: `Variable "shards" has no default and no value was given; set a default, pass --var shards=VALUE or set KILN_VAR_shards.`,
	},
	{
		name: "variable without a value in a duration",
		src: `variable "timeout" { type = string }
service "search" {
  scatter {
    leaves  = 2
    timeout = var.timeout
  }
}`,
		at: "kiln.hcl:1,1-19", summary: "No value for variable", detail: `Variable "timeout" has no default`,
	},
	{
		name: "key rule of the wrong type",
		src: `service "kv" {
  shard {
    shards = 2
    key { path_segment = "second" }
  }
}`,
		at: "kiln.hcl:4,27-33", summary: "Unsuitable value type", detail: "a number is required",
	},
	{
		name: "--var for an undeclared variable",
		src: `service "web" {
  simple { replicas = 1 }
}`,
		vars: map[string]string{"nosuch": "1"},
		at:   "", summary: "Undeclared variable in --var nosuch", detail: `declares no variable "nosuch"`,
	},
	{
		name: "--var that does not convert",
		src: `variable "shards" { default = 3 }
service "kv" {
  shard {
    shards = var.shards
    key { path_segment = 2 }
  }
}`,
		vars: map[string]string{"shards": "four"},
		at:   "kiln.hcl:1,1-18", summary: "Invalid value for variable", detail: `Variable "shards" is a number, but --var shards=four cannot be converted to one`,
	},
	{
		name: "KILN_VAR_ that does not convert",
		src: `variable "public" {
  type = bool
}
service "web" {
  public = var.public
  simple { replicas = 1 }
}`,
		env: []string{"KILN_VAR_public=yes"},
		at:  "kiln.hcl:1,1-18", summary: "Invalid value for variable", detail: `Variable "public" is a bool, but KILN_VAR_public=yes cannot be converted to one`,
	},
	{
		name: "unknown variable type",
		src: `variable "shards" {
  type    = list
  default = 3
}
service "kv" {
  shard {
    shards = var.shards
    key { path_segment = 2 }
  }
}`,
		at: "kiln.hcl:2,3-17", summary: "Invalid variable type", detail: "must be string, number or bool",
	},
	{
		name: "default of the wrong type",
		src: `variable "public" {
  type    = bool
  default = "maybe"
}
service "web" {
  public = var.public
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:3,3-20", summary: "Invalid default value", detail: `The default of variable "public" must be a bool`,
	},
	{
		name: "duplicate variable",
		src: `variable "n" { default = 1 }
variable "n" { default = 2 }
service "web" {
  simple { replicas = var.n }
}`,
		at: "kiln.hcl:2,1-13", summary: "Duplicate variable", detail: `A variable named "n" is already declared at kiln.hcl:1,1-13`,
	},
	{
		name: "wrong type",
		src: `service "web" {
  simple { replicas = "two" }
}`,
		at: "kiln.hcl:2,24-27", summary: "Unsuitable value type", detail: "a number is required",
	},
	{
		name: "unknown function",
		src: `service "web" {
  simple { replicas = double(1) }
}`,
		at: "kiln.hcl:2,23-29", summary: "Call to unknown function", detail: `There is no function named "double".`,
	},
	{
		name: "source that is an import path",
		src: `service "web" {
  source = "github.com/x/y"
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,3-28", summary: "Invalid source", detail: `source = "github.com/x/y" is not a relative path; write the directory of the service's main package relative to kiln.hcl`,
	},
	{
		name: "absolute source",
		src: `service "web" {
  source = "/src/web"
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,3-22", summary: "Invalid source", detail: "is not a relative path",
	},
	{
		name: "syntax error",
		src: `service "web" {
  port =
  simple { replicas = 1 }
}`,
		at: "kiln.hcl:2,9-3,1", summary: "Invalid expression", detail: "Expected the start of an expression",
	},
}

func TestLoadReportsEachProblemAtItsPosition(t *testing.T) {
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := LoadBytes(hclparse.NewParser(), []byte(tc.src), "kiln.hcl", Options{Vars: tc.vars, Env: tc.env})
			errs := errorsOf(diags)
			if len(errs) != 1 {
				t.Fatalf("Load(%s) = %d errors:\n%s\nwant 1", tc.name, len(errs), describe(errs))
			}
			d := errs[0]
			at := ""
			if d.Subject != nil {
				at = d.Subject.String()
			}
			if at != tc.at || d.Summary != tc.summary || !strings.Contains(d.Detail, tc.detail) {
				t.Errorf("Load(%s) = %s, want %s | %s | …%s…", tc.name, describe(errs), tc.at, tc.summary, tc.detail)
			}
		})
	}
}

func errorsOf(diags hclv2.Diagnostics) hclv2.Diagnostics {
	var errs hclv2.Diagnostics
	for _, d := range diags {
		if d.Severity == hclv2.DiagError {
			errs = append(errs, d)
		}
	}
	return errs
}

// describe shows diags one a line as "position | summary | detail".
func describe(diags hclv2.Diagnostics) string {
	var lines []string
	for _, d := range diags {
		at := ""
		if d.Subject != nil {
			at = d.Subject.String()
		}
		lines = append(lines, fmt.Sprintf("%s | %s | %s", at, d.Summary, d.Detail))
	}
	return strings.Join(lines, "\n")
}

const badPath = "testdata/bad/kiln.hcl"

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	_, diags := Load(hclparse.NewParser(), badPath, Options{})
	var got []string
	for _, d := range errorsOf(diags) {
		got = append(got, d.Subject.String()+" "+d.Summary)
	}
	want := []string{
		"testdata/bad/kiln.hcl:8,14-24 Undeclared variable",
		"testdata/bad/kiln.hcl:13,5-15 Invalid shard count",
		"testdata/bad/kiln.hcl:14,5-8 Conflicting key rules",
		"testdata/bad/kiln.hcl:21,1-19 Conflicting patterns",
		"testdata/bad/kiln.hcl:24,11-26 Invalid environment variable",
		"testdata/bad/kiln.hcl:26,5-14 Invalid probe path",
		"testdata/bad/kiln.hcl:27,7-22 Invalid duration",
		"testdata/bad/kiln.hcl:30,3-18 Missing image",
		"testdata/bad/kiln.hcl:32,7-23 Undeclared volume",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Load(%s) =\n%s\nwant\n%s", badPath, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDiagnosticsTextShowsTheSource(t *testing.T) {
	p := hclparse.NewParser()
	_, diags := Load(p, badPath, Options{})
	var buf bytes.Buffer
	if err := hclv2.NewDiagnosticTextWriter(&buf, p.Files(), 78, false).WriteDiagnostics(diags); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "bad.txt", buf.Bytes())
}

func TestFileDiagnosticsPlacesLaterSpecErrors(t *testing.T) {
	f, diags := Load(hclparse.NewParser(), goodPath, Options{})
	if diags.HasErrors() {
		t.Fatalf("Load(%s) = %v, want no errors", goodPath, diags)
	}
	web := spec.ServicePath(0, "web")
	for _, tc := range []struct {
		name string
		err  error
		want string // position | summary | detail
	}{
		{
			name: "an attribute",
			err:  spec.Errors{{Path: web.Dot("sidecars").Index(0).Dot("ports").Index(1), Msg: "must not be 9001 on this target"}},
			want: goodPath + ":42,20-24 | Invalid container port | In service \"web\", sidecars[0].ports[1] must not be 9001 on this target.",
		},
		{
			name: "an env key",
			err:  spec.Errors{{Path: web.Dot("env").Key("MODE"), Msg: "is reserved by the target"}},
			want: goodPath + ":24,50-70 | Invalid environment variable | In service \"web\", env[\"MODE\"] is reserved by the target.",
		},
		{
			name: "an absent attribute falls back to its block",
			err:  spec.Errors{{Path: web.Dot("volumes").Index(1).Dot("path"), Msg: "must be set on this target"}},
			want: goodPath + ":66,3-16 | Missing volume path | In service \"web\", volumes[1].path must be set on this target.",
		},
		{
			name: "a wrapped single FieldError",
			err:  fmt.Errorf("kubernetes: %w", &spec.FieldError{Path: spec.ServicePath(1, "kv"), Msg: "cannot run on this target"}),
			want: goodPath + ":85,1-13 | Invalid service | Service \"kv\": cannot run on this target.",
		},
		{
			name: "another error",
			err:  errors.New("cluster unreachable"),
			want: " | Invalid app | cluster unreachable.",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe(f.Diagnostics(tc.err)); got != tc.want {
				t.Errorf("Diagnostics(%s) = %s, want %s", tc.name, got, tc.want)
			}
		})
	}
	if got := f.Diagnostics(nil); got != nil {
		t.Errorf("Diagnostics(nil) = %v, want nil", got)
	}
}

func TestRangeFallsBackToTheEnclosingBlock(t *testing.T) {
	f, _ := Load(hclparse.NewParser(), goodPath, Options{})
	for _, tc := range []struct {
		path spec.Path
		want string
	}{
		{"services[web].port", ":22,3-16"},
		{"services[web].sidecars[1]", ":48,3-20"},
		{"services[web].sidecars[1].args", ":48,3-20"},
		{"services[web].volumes[1].path", ":66,3-16"},
		{`services[web].env["NOSUCH"]`, ":24,3-72"},
		{`services[web].env["a.b[c]"].x`, ":24,3-72"},
		{"services[nosuch].port", ":1,1-1"},
		{"name", ":3,1-13"},
		{"", ":1,1-1"},
		{"services[web", ":1,1-1"},
		{`services[web]["unterminated`, ":20,1-14"},
	} {
		if got := f.Range(tc.path).String(); got != goodPath+tc.want {
			t.Errorf("Range(%s) = %s, want %s", tc.path, got, goodPath+tc.want)
		}
	}
}

func TestLoadReportsAMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kiln.hcl")
	f, diags := Load(hclparse.NewParser(), path, Options{})
	if got := describe(errorsOf(diags)); got != " | Failed to read file | The configuration file \""+path+"\" could not be read." {
		t.Errorf("Load(%s) = %s, want one error saying the file could not be read", path, got)
	}
	if f == nil || f.App == nil || f.Path != path {
		t.Errorf("Load(%s) = %+v, want an empty File for the path", path, f)
	}
}
