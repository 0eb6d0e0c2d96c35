package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/e2e"
)

func TestRunOfAFailingJobExitsWithItsRunsStatus(t *testing.T) {
	run := kiln(t)
	cmd := run("run", "./sdk/testdata/batch")
	cmd.Env = append(os.Environ(), "DIR="+t.TempDir(), "FAIL=0")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("kiln run of a failing job = %v (exit %d), want exit 3, the failed run's; output:\n%s", err, code, out)
	}
	if want := "kiln: migrate[0] attempt 3 failed (exit status 3); the job fails"; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

func TestValidateOfAnInvalidScheduleNamesItsLine(t *testing.T) {
	run := kiln(t)
	file := filepath.Join(t.TempDir(), "kiln.hcl")
	if err := os.WriteFile(file, []byte("service \"report\" {\n  cron {\n    schedule = \"every minute\"\n  }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run("validate", file).CombinedOutput()
	if err == nil {
		t.Fatalf("kiln validate accepted an invalid schedule:\n%s", out)
	}
	for _, want := range []string{file + ":3:5: Error: Invalid cron schedule", `cron.schedule: "every minute" is not a cron schedule`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDockerTargetRefusesACronJobNamingIt(t *testing.T) {
	run := kiln(t)
	out, err := run("run", "--target", "docker", "./examples/report").CombinedOutput()
	if want := `service "report" is a cron job, which the docker target does not run yet`; err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("kiln run --target docker of a cron job = %v:\n%s\nwant it refused with %q", err, out, want)
	}
}

func TestDeployOfAJobWaitsForItToComplete(t *testing.T) {
	cfg := e2e.Cluster(t)
	ns := e2e.Namespace(t, cfg, "kiln-cli-job")
	run := kiln(t)
	kc := e2e.Kubeconfig()
	out, err := run("deploy", "./sdk/testdata/batch", "--image", "registry.example/batch:1", "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	for _, want := range []string{"kiln: applied Job/migrate", "kiln: job Job/migrate: 5/5 succeeded, 0 active, 0 failed", "kiln: batch rolled out in namespace " + ns + ", its jobs completed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("deploy output lacks %q:\n%s", want, out)
		}
	}
	out, err = run("down", "--app", "batch", "--kubeconfig", kc, "-n", ns).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kiln: batch is down (2 objects deleted)") {
		t.Fatalf("down: %v\n%s", err, out)
	}
}
