package spec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/golden"
)

func TestValidateReportsEveryFieldPath(t *testing.T) {
	app := &App{
		Name: "Shop",
		Services: []Service{
			{Name: "kv", Port: 70000, Shard: &Shard{Shards: 0}},
			{Name: "search", Routers: 20, Egress: []string{"10.0.0.0/8", "example.com", "10.1.2.3/8"}, Scatter: &Scatter{Leaves: 2, OnLeafError: "ignore"}},
			{Name: "both", Simple: &Simple{Replicas: 1}, Spread: &Spread{Replicas: 0, Choice: "best"}},
			{Name: "kv"},
			{
				Name:      "side",
				Routers:   2,
				Simple:    &Simple{Replicas: 2},
				Env:       map[string]string{"KILN_ROLE": "x"},
				Resources: &Resources{Requests: Quantities{CPU: "lots"}},
				Volumes:   []Volume{{Name: "logs", Path: "var/log"}},
				Sidecars: []Container{
					{Name: "agent", Mounts: []Mount{{Volume: "cache", Path: "/c"}}, Ports: []int{0}},
				},
				Autoscale: &Autoscale{Min: 3, Max: 2},
				Probes:    &Probes{Readiness: &Probe{Path: "ready"}},
			},
			{Name: "keys", Shard: &Shard{Shards: 2, Key: Key{Regexp: "/users/\\d+", Header: "X-K"}}},
		},
	}
	err := app.Validate()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Validate() = %v, want Errors", err)
	}
	want := []string{
		`name: "Shop" is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
		`services[kv].port: must be a port in 1–65535, got 70000`,
		`services[kv].shard.shards: must be ≥ 1, got 0`,
		`services[kv].shard.key: must set one of path_segment, regexp, header, query or func`,
		`services[search].routers: must be in 1–16, got 20`,
		`services[search].egress[1]: "example.com" is not an address block like "10.0.0.0/8", or "0.0.0.0/0" for anywhere`,
		`services[search].egress[2]: "10.1.2.3/8" has host bits set; write "10.0.0.0/8"`,
		`services[search].scatter.gather: must be "concat", "merge", "first" or the name of a Go gather function`,
		`services[search].scatter.timeout: must be > 0, got 0s`,
		`services[search].scatter.on_leaf_error: must be one of "fail", "partial", got "ignore"`,
		`services[both].spread.replicas: must be ≥ 1, got 0`,
		`services[both].spread.choice: must be one of "random", "two-choices", got "best"`,
		`services[both]: sets simple and spread; a service follows exactly one pattern`,
		`services[kv].name: "kv" is used by an earlier service; service names must be unique`,
		`services[kv]: must set one pattern: simple, shard, scatter, spread, job or cron`,
		`services[side].routers: a simple service has no router of its own; remove routers`,
		`services[side].env["KILN_ROLE"]: KILN_ variables are kiln's own; pick another name`,
		`services[side].resources.requests.cpu: "lots" is not a quantity like "250m" or "1"`,
		`services[side].volumes[0].path: must be an absolute path, got "var/log"`,
		`services[side].sidecars[0].image: must be set`,
		`services[side].sidecars[0].ports[0]: must be a port in 1–65535, got 0`,
		`services[side].sidecars[0].mounts[0].volume: "cache" is not one of the service's volumes; declare it under volumes`,
		`services[side].probes.readiness.path: must start with '/', got "ready"`,
		`services[side].autoscale.max: must be ≥ autoscale.min (3), got 2`,
		`services[keys].shard.key.regexp: "/users/\\d+" has no capture group; wrap the key in ( )`,
		`services[keys].shard.key: sets 2 key rules; set exactly one`,
	}
	got := strings.Split(err.Error(), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate() reported:\n%s\n\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidAppsPass(t *testing.T) {
	for name, svc := range map[string]Service{
		"simple":  {Name: "hello", Simple: &Simple{Replicas: 3}},
		"shard":   {Name: "kv", Shard: &Shard{Shards: 3, Key: Key{PathSegment: 2}}},
		"scatter": {Name: "search", Scatter: &Scatter{Leaves: 4}},
		"spread":  {Name: "spread", Spread: &Spread{Replicas: 4}},
	} {
		app := &App{Services: []Service{svc}}
		app.SetDefaults()
		if err := app.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestStableJSON pins the JSON form every front-end must reproduce.
func TestStableJSON(t *testing.T) {
	app := &App{Services: []Service{{
		Name:    "search",
		Public:  true,
		Scatter: &Scatter{Leaves: 4, Timeout: Duration(250 * time.Millisecond), OnLeafError: OnLeafErrorPartial},
		Env:     map[string]string{"Z": "1", "A": "2"},
		Resources: &Resources{
			Requests: Quantities{CPU: "100m", Memory: "64Mi"},
		},
		Volumes:   []Volume{{Name: "logs", Path: "/var/log/app"}},
		Sidecars:  []Container{{Name: "shipper", Image: "example/shipper:1", Args: []string{"--from", "/logs"}, Mounts: []Mount{{Volume: "logs", Path: "/logs"}}}},
		Autoscale: &Autoscale{Min: 1, Max: 3, TargetCPU: 80},
	}}}
	app.SetDefaults()
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := app.MarshalStable()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "search.json", got)

	back, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.MarshalStable()
	if string(again) != string(got) {
		t.Fatalf("JSON does not round-trip:\n%s\n%s", got, again)
	}
}

func TestParseRefusesUnknownFields(t *testing.T) {
	_, err := Parse([]byte(`{"name":"a","services":[{"name":"a","shards":3}]}`))
	if err == nil || !strings.Contains(err.Error(), `unknown field "shards"`) {
		t.Fatalf("err = %v; want it to name the unknown field", err)
	}
}
