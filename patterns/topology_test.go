package patterns

import (
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

func TestBuildListsJobsApartFromServingWorkloads(t *testing.T) {
	app := &spec.App{Name: "ops", Services: []spec.Service{
		{Name: "web", Simple: &spec.Simple{Replicas: 2}},
		{Name: "migrate", Job: &spec.Job{Completions: 5, Parallelism: 2}},
		{Name: "report", Cron: &spec.Cron{Schedule: "@daily"}},
	}}
	app.SetDefaults()
	topo, err := Build(app)
	if err != nil {
		t.Fatal(err)
	}
	var serving []string
	for _, w := range topo.Workloads {
		serving = append(serving, w.Name())
	}
	if got, want := strings.Join(serving, " "), "web-replica web-router"; got != want {
		t.Errorf("Build().Workloads = %s, want %s", got, want)
	}
	if len(topo.Jobs) != 2 {
		t.Fatalf("Build().Jobs = %d workloads, want 2", len(topo.Jobs))
	}
	migrate, report := topo.Jobs[0], topo.Jobs[1]
	if migrate.Name() != "migrate-job" || migrate.Role != RoleJob || migrate.Replicas != 5 || migrate.Job.Parallelism != 2 || migrate.Cron != nil {
		t.Errorf("migrate's workload = %+v, want role job, 5 replicas (its completions), no cron", migrate)
	}
	if report.Cron == nil || report.Job != &app.Services[2].Cron.Job || report.Replicas != 1 {
		t.Errorf("report's workload = %+v, want its cron and the cron's job", report)
	}
	env := migrate.RoleEnv(3, nil, ByName(app))
	if env[EnvRole] != "job" || env[EnvIndex] != "3" || env[EnvCount] != "5" {
		t.Errorf("RoleEnv(3) = %v, want KILN_ROLE=job KILN_INDEX=3 KILN_COUNT=5", env)
	}
	want := `service "migrate" is a job, which the docker target does not run yet`
	if err := topo.NoJobs("docker"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("NoJobs(docker) = %v, want %q", err, want)
	}
}

func TestLeasesAndStorageGoToTheBackendsOnlyAndTargetsWithoutThemRefuseThem(t *testing.T) {
	app := &spec.App{Name: "kv", Services: []spec.Service{
		{Name: "kv", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}, Leases: []spec.Lease{{Name: "compactor"}, {Name: "rebuild", Duration: spec.Duration(5e9)}}},
	}}
	app.SetDefaults()
	topo, err := Build(app)
	if err != nil {
		t.Fatal(err)
	}
	shards, router := topo.Workload("kv-shard"), topo.Workload("kv-router")
	if got, want := shards.RoleEnv(1, nil, ByName(app))[EnvLeases], "compactor=15s,rebuild=5s"; got != want {
		t.Errorf("the shards' %s = %q, want %q", EnvLeases, got, want)
	}
	if got, ok := router.RoleEnv(0, nil, ByName(app))[EnvLeases]; ok {
		t.Errorf("the router's %s = %q, want it unset: routers take no lease", EnvLeases, got)
	}
	want := `service "kv" takes the lease "compactor", which the vm target does not hold yet: the local and kubernetes targets do`
	if err := topo.NoLeases("vm"); err == nil || err.Error() != want {
		t.Errorf("NoLeases(vm) = %v, want %q", err, want)
	}
	app.Services[0].Leases, app.Services[0].Storage = nil, &spec.Storage{Size: "1Gi"}
	app.SetDefaults()
	if topo, err = Build(app); err != nil {
		t.Fatal(err)
	}
	if got := topo.Workload("kv-shard").RoleEnv(0, nil, ByName(app))[EnvData]; got != "/data" {
		t.Errorf("the shards' %s = %q, want the storage's path /data", EnvData, got)
	}
	want = `service "kv" keeps storage, which the kubevirt target does not give yet: the local, docker, kubernetes and vm targets do`
	if err := topo.NoStorage("kubevirt"); err == nil || err.Error() != want {
		t.Errorf("NoStorage(kubevirt) = %v, want %q", err, want)
	}
}

// Routers and roots run with sysmon kept awake (sysmonAwake), beside any
// runtime setting of the service's own, which wins; the backends run with
// the service's settings alone.
func TestRoleEnvKeepsSysmonAwakeInRoutersAndRootsOnly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		svc     spec.Service
		godebug string // the service's own GODEBUG
		want    map[string]string
	}{
		{"shard", spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 2, Key: spec.Key{PathSegment: 2}}}, "",
			map[string]string{"kv-router": sysmonAwake, "kv-shard": ""}},
		{"scatter", spec.Service{Name: "search", Scatter: &spec.Scatter{Leaves: 2}}, "",
			map[string]string{"search-root": sysmonAwake, "search-leaf": ""}},
		{"the service's settings kept", spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 2}}, "http2client=0",
			map[string]string{"web-router": sysmonAwake + ",http2client=0", "web-replica": "http2client=0"}},
		{"the service's own schedtrace wins", spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 2}}, "gctrace=1,schedtrace=1000",
			map[string]string{"web-router": "gctrace=1,schedtrace=1000", "web-replica": "gctrace=1,schedtrace=1000"}},
		// The runtime reads " schedtrace" as another key, and so does kiln.
		{"a key with a space is another key", spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 2}}, "gctrace=1, schedtrace=1000",
			map[string]string{"web-router": sysmonAwake + ",gctrace=1, schedtrace=1000", "web-replica": "gctrace=1, schedtrace=1000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.godebug != "" {
				tc.svc.Env = map[string]string{"GODEBUG": tc.godebug}
			}
			app := &spec.App{Name: "app", Services: []spec.Service{tc.svc}}
			app.SetDefaults()
			topo, err := Build(app)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				w := topo.Workload(name)
				if w == nil {
					t.Fatalf("no workload %s", name)
				}
				if got := w.RoleEnv(0, nil, ByName(app))["GODEBUG"]; got != want {
					t.Errorf("%s: GODEBUG=%q, want %q", name, got, want)
				}
			}
		})
	}
}
