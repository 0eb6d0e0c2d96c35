package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/spec"
)

// TestJobRunsEachIndexAndDeployWaitsForIt applies a job of 5 completions
// under "restricted" with no warning, waits for it to complete (kwok's pods
// succeed as soon as they run), and applies again to see nothing change.
func TestJobRunsEachIndexAndDeployWaitsForIt(t *testing.T) {
	cfg := rest.CopyConfig(e2e.Cluster(t))
	warned := &warnings{}
	cfg.WarningHandler = warned
	c := testCluster(t, cfg)
	var progress bytes.Buffer
	c.out = &progress
	ctx := context.Background()
	app := cases()["batch"]
	objs, err := Render(app, Options{Image: "registry.example/batch:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, app.Name, objs); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, objs, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s", progress.String())
	if want := "kiln: job Job/migrate: 5/5 succeeded, 0 active, 0 failed\n"; !strings.Contains(progress.String(), want) {
		t.Errorf("progress lacks %q", want)
	}
	pods, err := c.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(c.Namespace).
		List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=migrate"})
	if err != nil {
		t.Fatal(err)
	}
	var indexes []string
	for _, p := range pods.Items {
		indexes = append(indexes, p.GetAnnotations()[completionIndex])
	}
	slices.Sort(indexes)
	if want := []string{"0", "1", "2", "3", "4"}; !slices.Equal(indexes, want) {
		t.Errorf("the Job's pods have completion indexes %v, want each of %v once", indexes, want)
	}
	res, err := c.Apply(ctx, app.Name, objs)
	if err != nil || len(res.Changed)+len(res.Pruned) != 0 {
		t.Fatalf("second apply: changed %v, pruned %v, err %v; want nothing", res.Changed, res.Pruned, err)
	}
	if len(warned.msgs) != 0 {
		t.Fatalf("the API server warned: %q", warned.msgs)
	}

	// A Job the CronJob starts carries the template's labels, and is the
	// CronJob's to delete: a deploy leaves it.
	cj, err := c.dyn.Resource(schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}).Namespace(c.Namespace).Get(ctx, "report", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jobs := c.dyn.Resource(schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}).Namespace(c.Namespace)
	started, _, _ := unstructured.NestedMap(cj.Object, "spec", "jobTemplate")
	run := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "batch/v1", "kind": "Job", "metadata": started["metadata"], "spec": started["spec"]}}
	run.SetName("report-29000000")
	run.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "report", UID: cj.GetUID(), Controller: ptr(true)}})
	if _, err := jobs.Create(ctx, run, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Apply(ctx, app.Name, objs); err != nil || len(res.Pruned) != 0 {
		t.Fatalf("apply beside a run of the CronJob pruned %v (err %v); want nothing", res.Pruned, err)
	}

	// Without the cron job, its CronJob and its policy are pruned and
	// nothing else.
	app.Services = app.Services[:2]
	objs, _ = Render(app, Options{Image: "registry.example/batch:1"})
	res, err = c.Apply(ctx, app.Name, objs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Pruned, []string{"CronJob/report", "NetworkPolicy/report"}) || len(res.Changed) != 0 {
		t.Fatalf("removing report pruned %v and changed %v; want CronJob/report and NetworkPolicy/report pruned and nothing changed", res.Pruned, res.Changed)
	}
}

// TestWaitNamesTheFailedPodOfAJob runs a job whose program fails (kwok
// makes the pods of image kiln.test/fail:1 exit 1) and expects Wait to
// name the Job, the failed pod, its index and the container's exit.
func TestWaitNamesTheFailedPodOfAJob(t *testing.T) {
	cfg := e2e.Cluster(t)
	c := testCluster(t, cfg)
	ctx := context.Background()
	app := &spec.App{Services: []spec.Service{{Name: "migrate", Job: &spec.Job{Completions: 1}}}}
	app.SetDefaults()
	objs, err := Render(app, Options{Image: "kiln.test/fail:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, app.Name, objs); err != nil {
		t.Fatal(err)
	}
	err = c.Wait(ctx, objs, time.Minute)
	var je *JobError
	if !errors.As(err, &je) {
		t.Fatalf("Wait() = %v, want a *JobError", err)
	}
	t.Log(err)
	for _, want := range []string{"BackoffLimitExceeded", "pod migrate-0-", "(index 0): container app exited 1, Error: kwok: image kiln.test/fail:1 exits 1"} {
		if je.Object != "Job/migrate" || !strings.Contains(je.Reason, want) {
			t.Errorf("JobError{%s, %s}, want Job/migrate and a reason with %q", je.Object, je.Reason, want)
		}
	}
}

func TestApplyOfAChangedJobSaysToDeleteIt(t *testing.T) {
	c := testCluster(t, e2e.Cluster(t))
	ctx := context.Background()
	app := &spec.App{Services: []spec.Service{{Name: "migrate", Job: &spec.Job{Completions: 2}}}}
	app.SetDefaults()
	objs, _ := Render(app, Options{Image: "registry.example/migrate:1"})
	if _, err := c.Apply(ctx, app.Name, objs); err != nil {
		t.Fatal(err)
	}
	objs, _ = Render(app, Options{Image: "registry.example/migrate:2"})
	_, err := c.Apply(ctx, app.Name, objs)
	if want := "applying Job/migrate: a Job's pod template and completions cannot change once it exists; delete it"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Apply() of a new image = %v, want an error saying %q", err, want)
	}
}
