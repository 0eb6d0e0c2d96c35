package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/spec"
)

// cases is a table of apps covering each pattern with sidecars, init
// containers, autoscaling and public entry points.
func cases() map[string]*spec.App {
	logging := func(s spec.Service) spec.Service {
		s.Volumes = []spec.Volume{{Name: "logs", Path: "/var/log/app"}}
		s.Sidecars = []spec.Container{{Name: "log-agent", Image: "example/log-agent:1", Args: []string{"--dir", "/logs"}, Mounts: []spec.Mount{{Volume: "logs", Path: "/logs"}}}}
		return s
	}
	withInit := func(s spec.Service) spec.Service {
		s.Init = []spec.Container{{Name: "migrate", Image: "example/migrate:1", Env: map[string]string{"STEP": "1"}}}
		return s
	}
	public := func(s spec.Service) spec.Service { s.Public = true; return s }
	scaled := func(s spec.Service) spec.Service {
		s.Autoscale = &spec.Autoscale{Min: 2, Max: 6, TargetCPU: 70}
		s.Resources = &spec.Resources{Requests: spec.Quantities{CPU: "200m", Memory: "128Mi"}, Limits: spec.Quantities{CPU: "1", Memory: "512Mi"}}
		return s
	}
	hello := spec.Service{Name: "hello", Simple: &spec.Simple{Replicas: 3}}
	kv := spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}}
	search := spec.Service{Name: "search", Scatter: &spec.Scatter{Leaves: 4, Timeout: spec.Duration(500 * time.Millisecond), OnLeafError: spec.OnLeafErrorPartial}}
	spread := spec.Service{Name: "spread", Spread: &spec.Spread{Replicas: 4}}
	app := func(name string, svcs ...spec.Service) *spec.App {
		a := &spec.App{Name: name, Services: svcs}
		a.SetDefaults()
		return a
	}
	migrate := spec.Service{Name: "migrate", Job: &spec.Job{Completions: 5, Parallelism: 2, Retries: 3, Deadline: spec.Duration(90 * time.Second)}}
	report := spec.Service{Name: "report", Env: map[string]string{"OUT": "-"}, Cron: &spec.Cron{
		Schedule: "*/5 * * * *", TimeZone: "Europe/Paris", ConcurrencyPolicy: spec.ConcurrencyForbid,
		StartingDeadline: spec.Duration(1500 * time.Millisecond), Job: spec.Job{Retries: 1, Deadline: spec.Duration(time.Minute)},
	}}
	ambassador := kv
	ambassador.Port = 9090
	ambassador.Shard = &spec.Shard{Shards: 3, Key: spec.Key{Header: "X-User"}, Ambassador: "web"}
	out := map[string]*spec.App{
		"simple-all":         app("simple-all", public(withInit(logging(scaled(hello))))),
		"shard-sidecar-init": app("shard-sidecar-init", withInit(logging(kv))),
		"scatter-public":     app("scatter-public", public(logging(search))),
		"spread-scaled":      app("spread-scaled", scaled(withInit(spread))),
		"ambassador":         app("ambassador", spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 2}}, ambassador),
		"job-indexed":        app("job-indexed", withInit(migrate)),
		"batch":              app("batch", spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 1}}, migrate, report),
	}
	// Every example, as its program describes itself.
	examples, _ := filepath.Glob("../../examples/testdata/*.json")
	for _, path := range examples {
		b, err := os.ReadFile(path)
		if err != nil {
			panic(err)
		}
		a, err := spec.Parse(b)
		if err != nil {
			panic(fmt.Sprintf("%s: %v", path, err))
		}
		out["example-"+strings.TrimSuffix(filepath.Base(path), ".json")] = a
	}
	if len(examples) < 4 {
		panic("examples/testdata lacks the examples' specs")
	}
	return out
}

func TestRenderGolden(t *testing.T) {
	for name, app := range cases() {
		t.Run(name, func(t *testing.T) {
			objs, err := Render(app, Options{Image: "registry.example/" + name + ":1"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := Render(app, Options{Image: "registry.example/" + name + ":1"})
			if b, _ := YAML(again); string(b) != string(got) {
				t.Fatal("two renders of the same app differ")
			}
			golden.Check(t, name+".yaml", got)
			checkSecure(t, objs)
		})
	}
}

// checkSecure asserts the restricted profile's settings and the labels on
// every object and container.
func checkSecure(t *testing.T, objs []metav1.Object) {
	t.Helper()
	for _, o := range objs {
		for _, l := range []string{LabelName, LabelInstance, LabelComponent, LabelManagedBy} {
			if o.GetLabels()[l] == "" {
				t.Errorf("%s lacks label %s", o.GetName(), l)
			}
		}
		var pod *corev1.PodSpec
		switch w := o.(type) {
		case *appsv1.Deployment:
			pod = &w.Spec.Template.Spec
		case *appsv1.StatefulSet:
			pod = &w.Spec.Template.Spec
		case *batchv1.Job:
			pod = &w.Spec.Template.Spec
		case *batchv1.CronJob:
			pod = &w.Spec.JobTemplate.Spec.Template.Spec
		default:
			continue
		}
		if *pod.AutomountServiceAccountToken || !*pod.SecurityContext.RunAsNonRoot || *pod.SecurityContext.RunAsUser != uid {
			t.Errorf("%s: pod security context %+v", o.GetName(), pod.SecurityContext)
		}
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			sc := c.SecurityContext
			if *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s/%s: container security context %+v", o.GetName(), c.Name, sc)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s/%s has no resource requests: its pod would be BestEffort", o.GetName(), c.Name)
			}
		}
	}
}

func TestRenderRefusesWhatAClusterCannotExpress(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  spec.Service
		want string
	}{
		{"autoscaled shard", spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 3, Key: spec.Key{Query: "k"}}, Autoscale: &spec.Autoscale{Min: 1, Max: 3}},
			"services[kv].autoscale: a shard service cannot autoscale: its leaf count is part of each leaf's identity"},
		{"port out of range", spec.Service{Name: "kv", Port: 70000, Simple: &spec.Simple{Replicas: 1}},
			"services[kv].port: must be a port in 1–65535, got 70000"},
		{"name not a DNS label", spec.Service{Name: "Key_Value", Simple: &spec.Simple{Replicas: 1}},
			`services[Key_Value].name: "Key_Value" is not a DNS label`},
		{"name too long for a StatefulSet", spec.Service{Name: strings.Repeat("a", 50), Simple: &spec.Simple{Replicas: 1}},
			"is 50 characters; Kubernetes workload names derived from it need it at most 46"},
		{"unknown ambassador client", spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 1, Key: spec.Key{Query: "k"}, Ambassador: "web"}},
			`services[kv].shard.ambassador: "web" is not a service of this app`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &spec.App{Name: "app", Services: []spec.Service{tc.svc}}
			app.SetDefaults()
			_, err := Render(app, Options{Image: "x"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
