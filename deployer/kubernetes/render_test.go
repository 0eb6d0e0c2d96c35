package kubernetes

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/patterns"
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
	stored := func(s spec.Service, st *spec.Storage) spec.Service {
		if st == nil {
			st = &spec.Storage{Size: "1Gi"}
		}
		s.Storage = st
		return s
	}
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
	leased := spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 2}, Leases: []spec.Lease{{Name: "compactor"}, {Name: "index", Duration: spec.Duration(5 * time.Second)}}}
	leasedKV := kv
	leasedKV.Leases = []spec.Lease{{Name: "rebalance"}}
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
		"leases":             app("leases", leased, leasedKV, search),
		"storage":            app("storage", stored(kv, nil), stored(search, &spec.Storage{Size: "10Gi", Path: "/var/lib/index", Class: "standard", OnDelete: spec.StorageDelete, OnScaleDown: spec.StorageDelete})),
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
		if !*pod.SecurityContext.RunAsNonRoot || *pod.SecurityContext.RunAsUser != uid {
			t.Errorf("%s: pod security context %+v", o.GetName(), pod.SecurityContext)
		}
		// Only pods that take leases get an account and its token.
		leases := slices.ContainsFunc(pod.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == patterns.EnvLeases })
		if *pod.AutomountServiceAccountToken != leases || (pod.ServiceAccountName != "") != leases {
			t.Errorf("%s: takes leases: %v, but automountServiceAccountToken = %v, serviceAccountName = %q", o.GetName(), leases, *pod.AutomountServiceAccountToken, pod.ServiceAccountName)
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

// TestRoutersAreNotSinglePointsOfFailure: every router and root runs as
// two pods by default, or as many as routers says, under a disruption
// budget that keeps all but one up, spread over nodes; a simple service's
// replicas, which a Service balances, get no router.
func TestRoutersAreNotSinglePointsOfFailure(t *testing.T) {
	for _, tc := range []struct {
		routers, want int
	}{{0, 2}, {1, 1}, {3, 3}} {
		t.Run(fmt.Sprint(tc.routers), func(t *testing.T) {
			app := &spec.App{Name: "shop", Services: []spec.Service{
				{Name: "web", Simple: &spec.Simple{Replicas: 2}},
				{Name: "kv", Routers: tc.routers, Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}},
				{Name: "search", Routers: tc.routers, Scatter: &spec.Scatter{Leaves: 2}},
			}}
			app.SetDefaults()
			objs, err := Render(app, Options{Image: "registry.example/shop:1"})
			if err != nil {
				t.Fatal(err)
			}
			budgets := map[string]bool{}
			for _, o := range objs {
				if _, ok := o.(*policyv1.PodDisruptionBudget); ok {
					budgets[o.GetName()] = true
				}
			}
			for _, name := range []string{"kv-router", "search-root"} {
				var d *appsv1.Deployment
				for _, o := range objs {
					if x, ok := o.(*appsv1.Deployment); ok && x.Name == name {
						d = x
					}
				}
				if d == nil {
					t.Fatalf("no Deployment %s", name)
				}
				if got := int(*d.Spec.Replicas); got != tc.want {
					t.Errorf("%s runs %d pods, want %d", name, got, tc.want)
				}
				spreads := len(d.Spec.Template.Spec.TopologySpreadConstraints) > 0
				if budgets[name] != (tc.want > 1) || spreads != (tc.want > 1) {
					t.Errorf("%s: disruption budget %v, spread over nodes %v; want both %v", name, budgets[name], spreads, tc.want > 1)
				}
			}
			for _, o := range objs {
				if strings.HasPrefix(o.GetName(), "web-") && o.GetName() != "web-replica" {
					t.Errorf("simple service web has %T %s, want only its replicas", o, o.GetName())
				}
			}
		})
	}
}

// TestNetworkPoliciesFollowTheTopology: each workload's pods accept only
// what the topology sends them (a leaf its root, a shard its router or its
// ambassador's client, an entry the app or, when public, anyone), and
// reach DNS, the app, and what the spec adds; a pod with a sidecar keeps
// its egress open, since kiln cannot know where the sidecar connects.
func TestNetworkPoliciesFollowTheTopology(t *testing.T) {
	app := &spec.App{Name: "shop", Services: []spec.Service{
		{Name: "web", Public: true, Simple: &spec.Simple{Replicas: 2}, Egress: []string{"10.20.0.0/16"}},
		{Name: "carts", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}},
		{Name: "catalog", Scatter: &spec.Scatter{Leaves: 4}, Sidecars: []spec.Container{{Name: "agent", Image: "agent:1", Ports: []int{9000}}}},
		{Name: "sessions", Port: 8090, Shard: &spec.Shard{Shards: 2, Key: spec.Key{Header: "X-S"}, Ambassador: "web"}},
		{Name: "report", Job: &spec.Job{}},
	}}
	app.SetDefaults()
	objs, err := Render(app, Options{Image: "registry.example/shop:1"})
	if err != nil {
		t.Fatal(err)
	}
	describe := func(peers []networkingv1.NetworkPolicyPeer) string {
		if peers == nil {
			return "anyone"
		}
		var out []string
		for _, p := range peers {
			switch {
			case p.IPBlock != nil:
				out = append(out, p.IPBlock.CIDR)
			case p.PodSelector.MatchLabels[LabelName] == "":
				out = append(out, "the app")
			default:
				out = append(out, p.PodSelector.MatchLabels[LabelName]+"/"+cmp.Or(p.PodSelector.MatchLabels[LabelComponent], "*"))
			}
		}
		return strings.Join(out, "+")
	}
	got := map[string]string{}
	for _, o := range objs {
		np, ok := o.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		var in []string
		for _, r := range np.Spec.Ingress {
			in = append(in, fmt.Sprintf("%s:%d", describe(r.From), r.Ports[0].Port.IntValue()))
		}
		out := "open"
		if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			out = "dns"
			for _, r := range np.Spec.Egress[1:] {
				if r.To == nil {
					out += fmt.Sprintf("+port %d", r.Ports[0].Port.IntValue())
				} else {
					out += "+" + describe(r.To)
				}
			}
		}
		got[np.Name] = fmt.Sprintf("in %s; out %s", cmp.Or(strings.Join(in, ", "), "nothing"), out)
	}
	want := map[string]string{
		"web-replica":    "in anyone:8080; out dns+the app+10.20.0.0/16",
		"carts-shard":    "in carts/router:8080; out dns+the app",
		"carts-router":   "in the app:8080; out dns+the app",
		"catalog-leaf":   "in catalog/root:8080, the app:9000; out open",
		"catalog-root":   "in the app:8080, the app:9000; out open",
		"sessions-shard": "in web/*:8090; out dns+the app",
		"report":         "in nothing; out dns+the app",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("policy %s: %s, want %s", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("policies %v, want one per workload: %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}
