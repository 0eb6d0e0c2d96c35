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
