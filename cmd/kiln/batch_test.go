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
	if err != nil || !strings.Contains(string(out), "kiln: batch is down (3 objects deleted)") {
		t.Fatalf("down: %v\n%s", err, out)
	}
}

func TestDockerTargetRefusesAServiceThatTakesALease(t *testing.T) {
	run := kiln(t)
	out, err := run("run", "--target", "docker", "./examples/compactor").CombinedOutput()
	if want := `service "compactor" takes the lease "compactor", which the docker target does not hold yet`; err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("kiln run --target docker of the compactor = %v:\n%s\nwant it refused with %q", err, out, want)
	}
}

func TestDownLocalDeletesTheStorageOnlyWhenConfirmed(t *testing.T) {
	run := kiln(t)
	state := t.TempDir()
	shard := filepath.Join(state, "data", "kvstore", "shard-0")
	if err := os.MkdirAll(shard, 0o700); err != nil {
		t.Fatal(err)
	}
	// The same instance's disk on the vm target: still one instance.
	if err := os.WriteFile(shard+".img", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run("down", "--target", "local", "--delete-data", "--app", "kvstore", "--state-dir", state).CombinedOutput()
	if want := "needs a confirmation: run it on a terminal, or add --yes"; err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("kiln down --delete-data with no terminal = %v:\n%s\nwant it refused with %q", err, out, want)
	}
	if _, err := os.Stat(shard); err != nil {
		t.Fatalf("the refused down deleted the data: %v", err)
	}
	out, err = run("down", "--target", "local", "--delete-data", "--yes", "--app", "kvstore", "--state-dir", state).CombinedOutput()
	if want := "kiln: deleted the data of kvstore's 1 instances under " + state; err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("kiln down --delete-data --yes = %v:\n%s\nwant %q", err, out, want)
	}
	if _, err := os.Stat(filepath.Join(state, "data")); !os.IsNotExist(err) {
		t.Errorf("after down --delete-data --yes, %s/data: %v, want it gone", state, err)
	}
}
