package spec

import (
	"testing"
	"time"
)

func TestLeaseFieldsAreValidatedOnePathEach(t *testing.T) {
	sec := func(n float64) Duration { return Duration(n * float64(time.Second)) }
	for _, tc := range []struct {
		name string
		svc  Service
		want string // "" when valid
	}{
		{"default duration", Service{Name: "compactor", Simple: &Simple{Replicas: 3}, Leases: []Lease{{Name: "compactor"}}}, ""},
		{"two leases on shards", Service{Name: "kv", Shard: &Shard{Shards: 3, Key: Key{PathSegment: 2}}, Leases: []Lease{{Name: "a", Duration: sec(2)}, {Name: "b", Duration: sec(3600)}}}, ""},
		{"no name", Service{Name: "c", Simple: &Simple{Replicas: 1}, Leases: []Lease{{}}},
			`services[c].leases[0].name: must be set`},
		{"name not a label", Service{Name: "c", Simple: &Simple{Replicas: 1}, Leases: []Lease{{Name: "Big_Lock"}}},
			`services[c].leases[0].name: "Big_Lock" is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`},
		{"twice", Service{Name: "c", Simple: &Simple{Replicas: 1}, Leases: []Lease{{Name: "l"}, {Name: "l"}}},
			`services[c].leases[1].name: "l" is used by an earlier lease of this service; lease names must be unique`},
		{"too short", Service{Name: "c", Simple: &Simple{Replicas: 1}, Leases: []Lease{{Name: "l", Duration: sec(1)}}},
			`services[c].leases[0].duration: must be 2s to 1h, got 1s`},
		{"too long", Service{Name: "c", Simple: &Simple{Replicas: 1}, Leases: []Lease{{Name: "l", Duration: sec(7200)}}},
			`services[c].leases[0].duration: must be 2s to 1h, got 2h0m0s`},
		{"fraction of a second", Service{Name: "c", Simple: &Simple{Replicas: 1}, Leases: []Lease{{Name: "l", Duration: sec(2.5)}}},
			`services[c].leases[0].duration: must be a whole number of seconds (Kubernetes counts a Lease in seconds), got 2.5s`},
		{"on a job", Service{Name: "migrate", Job: &Job{}, Leases: []Lease{{Name: "l"}}},
			`services[migrate].leases: a job service's runs do not elect: leases belong to the replicas, shards or leaves of a serving service`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkValidate(t, tc.svc, tc.want) })
	}
}

func TestLeaseDurationDefaultsToFifteenSeconds(t *testing.T) {
	app := &App{Services: []Service{{Name: "c", Simple: &Simple{Replicas: 1}, Leases: []Lease{{Name: "l"}}}}}
	app.SetDefaults()
	if got := app.Services[0].Lease("l").Duration.D(); got != 15*time.Second {
		t.Errorf("Duration = %s, want 15s", got)
	}
	if app.Services[0].Lease("m") != nil {
		t.Errorf("Lease(%q) = non-nil for a lease the service lacks", "m")
	}
}

// checkValidate validates an app of svc, with defaults set, and wants
// the errors want ("" for none) in one string.
func checkValidate(t *testing.T, svc Service, want string) {
	t.Helper()
	app := &App{Services: []Service{svc}}
	app.SetDefaults()
	got := ""
	if err := app.Validate(); err != nil {
		got = err.Error()
	}
	if got != want {
		t.Errorf("Validate() = %q, want %q", got, want)
	}
}
