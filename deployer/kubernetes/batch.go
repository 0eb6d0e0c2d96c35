package kubernetes

// Jobs and cron jobs: an Indexed batch/v1 Job, or a batch/v1 CronJob whose
// template is that Job, with Kubernetes' own meaning for every field.

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// completionIndex is the annotation the Job controller sets on each pod of
// an Indexed Job.
const completionIndex = "batch.kubernetes.io/job-completion-index"

var concurrencyPolicies = map[string]batchv1.ConcurrencyPolicy{
	spec.ConcurrencyAllow:   batchv1.AllowConcurrent,
	spec.ConcurrencyForbid:  batchv1.ForbidConcurrent,
	spec.ConcurrencyReplace: batchv1.ReplaceConcurrent,
}

// batch renders a job or cron service: a Job, or a CronJob, named after it.
func (r *renderer) batch(s *spec.Service, t *patterns.Topology) {
	var w *patterns.Workload
	for i := range t.Jobs {
		if t.Jobs[i].Service == s.Name {
			w = &t.Jobs[i]
		}
	}
	labels := r.labels(s, patterns.RoleJob)
	job := r.jobSpec(s, w, labels)
	r.workloadPolicy(s, w, labels, nil)
	c := s.Cron
	if c == nil {
		r.add(&batchv1.Job{
			TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
			ObjectMeta: r.meta(s.Name, labels),
			Spec:       job,
		})
		return
	}
	cj := &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: r.meta(s.Name, labels),
		Spec: batchv1.CronJobSpec{
			Schedule:          c.Schedule,
			ConcurrencyPolicy: concurrencyPolicies[c.ConcurrencyPolicy],
			// Always written, so that a suspend dropped from the spec
			// resumes the CronJob instead of leaving the cluster's value.
			Suspend:     ptr(c.Suspend),
			JobTemplate: batchv1.JobTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: job},
		},
	}
	if c.TimeZone != "" {
		cj.Spec.TimeZone = ptr(c.TimeZone)
	}
	if c.StartingDeadline > 0 {
		cj.Spec.StartingDeadlineSeconds = ptr(seconds(c.StartingDeadline))
	}
	r.add(cj)
}

// seconds is d in whole seconds, rounded up: Kubernetes counts deadlines in
// seconds, and a deadline must not become shorter.
func seconds(d spec.Duration) int64 { return int64(math.Ceil(d.D().Seconds())) }

// jobSpec is the Indexed Job that runs w: each pod knows its completion
// index as KILN_INDEX (and JOB_COMPLETION_INDEX), failed pods are not
// restarted in place but counted against the backoff limit, as the local
// target counts failed runs.
func (r *renderer) jobSpec(s *spec.Service, w *patterns.Workload, labels map[string]string) batchv1.JobSpec {
	j := w.Job
	pod := r.pod(s, w, labels, nil)
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	js := batchv1.JobSpec{
		Completions:    ptr(int32(j.Completions)),
		Parallelism:    ptr(int32(j.Parallelism)),
		CompletionMode: ptr(batchv1.IndexedCompletion),
		BackoffLimit:   ptr(int32(j.Retries)),
		Template:       pod,
	}
	if j.Deadline > 0 {
		js.ActiveDeadlineSeconds = ptr(seconds(j.Deadline))
	}
	return js
}

// JobError is a Job that failed, naming a failed pod and why it failed.
type JobError struct {
	Object string // Job/name
	Reason string
}

func (e *JobError) Error() string { return e.Object + " failed: " + e.Reason }

// jobDone reads a Job's status: whether it has ended, its progress, and
// the condition that failed it.
func jobDone(u *unstructured.Unstructured) (done bool, progress string, failed map[string]any) {
	want, _, _ := unstructured.NestedInt64(u.Object, "spec", "completions")
	succeeded, _, _ := unstructured.NestedInt64(u.Object, "status", "succeeded")
	active, _, _ := unstructured.NestedInt64(u.Object, "status", "active")
	failures, _, _ := unstructured.NestedInt64(u.Object, "status", "failed")
	progress = fmt.Sprintf("%d/%d succeeded, %d active, %d failed", succeeded, want, active, failures)
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, cond := range conds {
		m, _ := cond.(map[string]any)
		if m["status"] != "True" {
			continue
		}
		switch m["type"] {
		case "Complete":
			return true, progress, nil
		case "Failed":
			return true, progress, m
		}
	}
	return false, progress, nil
}

// whyJobFailed names the Job's failed condition and its first failed pod,
// with the exit code and reason of the container that ended it.
func (c *Cluster) whyJobFailed(ctx context.Context, u *unstructured.Unstructured, cond map[string]any) string {
	why := fmt.Sprintf("%v: %v", cond["reason"], cond["message"])
	pods, err := c.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(c.Namespace).
		List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + u.GetName()})
	if err != nil {
		return why
	}
	items := pods.Items
	slices.SortFunc(items, func(a, b unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
	for _, p := range items {
		if phase, _, _ := unstructured.NestedString(p.Object, "status", "phase"); phase != "Failed" {
			continue
		}
		index := p.GetAnnotations()[completionIndex]
		statuses, _, _ := unstructured.NestedSlice(p.Object, "status", "containerStatuses")
		for _, st := range statuses {
			m, _ := st.(map[string]any)
			term, ok, _ := unstructured.NestedMap(m, "state", "terminated")
			if !ok {
				continue
			}
			code, _, _ := unstructured.NestedInt64(term, "exitCode")
			if code == 0 {
				continue
			}
			msg := ""
			if s, _ := term["message"].(string); s != "" {
				msg = ": " + s
			}
			return fmt.Sprintf("%s; pod %s (index %s): container %v exited %d, %v%s", why, p.GetName(), index, m["name"], code, term["reason"], msg)
		}
		reason, _, _ := unstructured.NestedString(p.Object, "status", "reason")
		message, _, _ := unstructured.NestedString(p.Object, "status", "message")
		return fmt.Sprintf("%s; pod %s (index %s): %s %s", why, p.GetName(), index, reason, message)
	}
	return why
}
