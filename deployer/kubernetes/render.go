// Package kubernetes is kiln's Kubernetes target: it renders an app's
// topology to objects built from k8s.io/api types, applies them with
// server-side apply, prunes what a new render no longer has, and waits for
// the rollout.
package kubernetes

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kiln-dev/kiln/internal/runas"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Labels kiln sets on every object. LabelInstance and LabelManagedBy form
// the inventory that pruning lists.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "kiln"

	// podIndexLabel is set by the StatefulSet controller on each pod.
	podIndexLabel = "apps.kubernetes.io/pod-index"
)

// Security defaults: the non-root user kiln's images run as.
const (
	uid = runas.UID
	gid = runas.GID
)

// Defaults for containers whose spec sets no resources: a request makes
// every pod Burstable, never BestEffort.
var (
	defaultCPURequest    = resource.MustParse("50m")
	defaultMemoryRequest = resource.MustParse("64Mi")
	defaultMemoryLimit   = resource.MustParse("256Mi")
)

// drainSeconds is how long a stopping pod keeps serving while endpoints
// forget it, before SIGTERM starts the drain.
const drainSeconds = 5

// Options say where and how to render.
type Options struct {
	// Image is the app's image: every role of every service runs it,
	// unless Images names another for its service.
	Image string
	// Images are the images of services built from a main package of
	// their own, by service name. nil means Image runs every service.
	Images map[string]string
	// Namespace, when set, is written into every object.
	Namespace string
}

// Render turns app into Kubernetes objects, in apply order: for each service
// its leases and the account that takes them, its backends, then its entry
// point. It fails, naming the field, on anything a cluster cannot express.
func Render(app *spec.App, opts Options) ([]metav1.Object, error) {
	t, err := patterns.Build(app)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, s := range app.Services {
		if opts.image(s.Name) == "" {
			missing = append(missing, s.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("kubernetes: no image for service %s: set Options.Image, or Options.Images for each service", strings.Join(missing, ", "))
	}
	r := &renderer{app: app, opts: opts, services: Discovery(app)}
	if err := r.check(); err != nil {
		return nil, err
	}
	r.discovery()
	for i := range app.Services {
		r.service(&app.Services[i], t)
	}
	return r.objs, nil
}

// DiscoveryConfigMap names the ConfigMap that holds an app's KILN_SERVICES.
func DiscoveryConfigMap(app string) string { return app + "-kiln-services" }

// discovery adds the ConfigMap every pod reads KILN_SERVICES from. Pods
// take it through envFrom rather than inline, so that adding or removing
// a service changes this one object and rolls no other service's pods;
// a pod started later reads the new list.
func (r *renderer) discovery() {
	labels := map[string]string{LabelName: r.app.Name, LabelInstance: r.app.Name, LabelManagedBy: ManagedBy, LabelComponent: "discovery"}
	r.add(&corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: r.meta(DiscoveryConfigMap(r.app.Name), labels),
		Data:       map[string]string{patterns.EnvServices: r.services.String()},
	})
}

// fromDiscovery is the envFrom that reads the discovery ConfigMap; env,
// which RoleEnv filled, loses its inline copy.
func (r *renderer) fromDiscovery(env map[string]string) []corev1.EnvFromSource {
	delete(env, patterns.EnvServices)
	return []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: DiscoveryConfigMap(r.app.Name)},
	}}}
}

func (o *Options) image(service string) string {
	if im := o.Images[service]; im != "" {
		return im
	}
	return o.Image
}

type renderer struct {
	app      *spec.App
	opts     Options
	services patterns.Discovery
	objs     []metav1.Object
}

// Discovery is where the services of app are reached inside the cluster:
// each entry Service's DNS name (resolved in the pod's own namespace) and
// port. An ambassador shard has no Service of its own: its router listens
// on 127.0.0.1 inside the pods of its client, the only service that
// reaches it. Jobs and cron jobs serve nothing, so they are not listed.
func Discovery(app *spec.App) patterns.Discovery {
	d := patterns.ByName(app)
	for i, s := range app.Services {
		if s.Shard != nil && s.Shard.Ambassador != "" {
			d[i].URL = "http://127.0.0.1:" + strconv.Itoa(s.HandlerPort())
		}
	}
	return slices.DeleteFunc(d, func(e patterns.Endpoint) bool { return app.Service(e.Service).Batch() != nil })
}

// check refuses what the cluster cannot express, before anything is sent.
func (r *renderer) check() error {
	var errs spec.Errors
	for i, s := range r.app.Services {
		p := spec.ServicePath(i, s.Name)
		if s.Autoscale != nil && (s.Shard != nil || s.Scatter != nil) {
			count := "scatter.leaves"
			if s.Shard != nil {
				count = "shard.shards"
			}
			errs = append(errs, &spec.FieldError{Path: p.Dot("autoscale"), Msg: fmt.Sprintf(
				"a %s service cannot autoscale: its leaf count is part of each leaf's identity (which keys or data it holds); change %s instead",
				s.Pattern(), count)})
		}
		// A StatefulSet's name goes into its pods' controller-revision-hash
		// label, which caps it at 52 characters.
		if n := len(s.Name) + len("-shard"); n > 52 {
			errs = append(errs, &spec.FieldError{Path: p.Dot("name"), Msg: fmt.Sprintf("is %d characters; Kubernetes workload names derived from it need it at most %d", len(s.Name), 52-len("-shard"))})
		}
		for j, v := range s.Volumes {
			if s.Storage != nil && v.Name == storageVolume {
				errs = append(errs, &spec.FieldError{Path: p.Dot("volumes").Index(j).Dot("name"), Msg: fmt.Sprintf("%q is the name of the service's storage volume on Kubernetes; rename this one", v.Name)})
			}
		}
		if a := s.Shard; a != nil && a.Ambassador != "" {
			client := r.app.Service(a.Ambassador)
			if client == nil {
				errs = append(errs, &spec.FieldError{Path: p.Dot("shard").Dot("ambassador"), Msg: fmt.Sprintf("%q is not a service of this app", a.Ambassador)})
			} else if client.Port == s.Port || (client.HandlerPort() == s.HandlerPort()) {
				errs = append(errs, &spec.FieldError{Path: p.Dot("port"), Msg: fmt.Sprintf("must differ from the port of %q (%d): the ambassador router shares its pods", a.Ambassador, client.HandlerPort())})
			}
		}
	}
	return errs.Err()
}

func (r *renderer) labels(s *spec.Service, role patterns.Role) map[string]string {
	return map[string]string{
		LabelName:      s.Name,
		LabelInstance:  r.app.Name,
		LabelComponent: string(role),
		LabelManagedBy: ManagedBy,
	}
}

func selector(labels map[string]string) map[string]string {
	return map[string]string{LabelName: labels[LabelName], LabelInstance: labels[LabelInstance], LabelComponent: labels[LabelComponent]}
}

func (r *renderer) meta(name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: r.opts.Namespace, Labels: maps.Clone(labels)}
}

func (r *renderer) add(o metav1.Object) { r.objs = append(r.objs, o) }

// service renders one service's workloads and entry point.
func (r *renderer) service(s *spec.Service, t *patterns.Topology) {
	if s.Batch() != nil {
		r.batch(s, t)
		return
	}
	var back, front *patterns.Workload
	for i := range t.Workloads {
		w := &t.Workloads[i]
		if w.Service != s.Name {
			continue
		}
		if w.Entry {
			front = w
		} else {
			back = w
		}
	}
	port := int32(s.HandlerPort())

	if s.Simple != nil {
		// A Service already balances over replicas: no router needed.
		labels := r.labels(s, patterns.RoleReplica)
		r.leases(back, labels)
		r.deployment(s, back, labels, back.Replicas, r.pod(s, back, labels, nil), true)
		r.addService(s.Name, s, labels, port, false)
		r.disruption(back.Name(), labels, back.Replicas)
		r.workloadPolicy(s, back, labels, nil)
		return
	}

	backLabels := r.labels(s, back.Role)
	r.leases(back, backLabels)
	r.addService(back.Name(), s, backLabels, port, true)
	var peers []string
	if back.Stable {
		// Each leaf keeps a DNS name through the headless Service.
		for i := range back.Replicas {
			peers = append(peers, fmt.Sprintf("http://%s-%d.%s:%d", back.Name(), i, back.Name(), port))
		}
		r.statefulSet(s, back, backLabels)
	} else {
		// Spread replicas come and go; the router resolves them all.
		peers = []string{fmt.Sprintf("dns+http://%s:%d", back.Name(), port)}
		r.deployment(s, back, backLabels, back.Replicas, r.pod(s, back, backLabels, nil), true)
	}
	r.disruption(back.Name(), backLabels, back.Replicas)
	frontLabels := r.labels(s, front.Role)
	r.workloadPolicy(s, back, backLabels, frontLabels)

	if s.Shard != nil && s.Shard.Ambassador != "" {
		return // the router runs inside the client's pods; see ambassador
	}
	// Routers are as many as the spec says (two by default), so that one
	// restarting, or its node draining, loses no request.
	r.deployment(s, front, frontLabels, s.RouterReplicas(), r.pod(s, front, frontLabels, peers), false)
	r.disruption(front.Name(), frontLabels, s.RouterReplicas())
	r.workloadPolicy(s, front, frontLabels, nil)
	r.addService(s.Name, s, frontLabels, port, false)
}

// pods is how many pods w runs: its replicas, or for an entry point the
// service's routers.
func pods(s *spec.Service, w *patterns.Workload) int {
	if w.Entry {
		return s.RouterReplicas()
	}
	return w.Replicas
}

// spread asks the scheduler to put a workload's pods on different nodes
// where it can, and on the same one where there is only one: a node's loss
// then takes one router or one shard, not all of them.
func spread(labels map[string]string) []corev1.TopologySpreadConstraint {
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       corev1.LabelHostname,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: selector(labels)},
	}}
}

// ambassadors returns the router containers that run inside client's pods.
func (r *renderer) ambassadors(client *spec.Service) []corev1.Container {
	var out []corev1.Container
	for i := range r.app.Services {
		s := &r.app.Services[i]
		if s.Shard == nil || s.Shard.Ambassador != client.Name {
			continue
		}
		port := s.HandlerPort()
		var peers []string
		for j := range s.Shard.Shards {
			peers = append(peers, fmt.Sprintf("http://%s-shard-%d.%s-shard:%d", s.Name, j, s.Name, port))
		}
		w := patterns.Workload{Service: s.Name, Role: patterns.RoleRouter, Replicas: 1, Env: s.Env}
		env := w.RoleEnv(0, peers, r.services)
		// Only the pod's own containers reach it.
		env[patterns.EnvAddr] = "127.0.0.1:" + strconv.Itoa(port)
		env[patterns.EnvWarm] = "0" // as pod's routers
		from := r.fromDiscovery(env)
		c := r.container(s.Name+"-router", r.opts.image(s.Name), nil, env, nil, nil)
		c.EnvFrom = from
		c.Ports = []corev1.ContainerPort{{Name: shortName(s.Name), ContainerPort: int32(port)}}
		// No probes: the kubelet probes the pod IP, which this loopback-only
		// router does not listen on, and an image FROM scratch has nothing
		// to exec. A router that dies is restarted all the same.
		out = append(out, c)
	}
	return out
}

func (r *renderer) addService(name string, s *spec.Service, labels map[string]string, port int32, headless bool) {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: r.meta(name, labels),
		Spec: corev1.ServiceSpec{
			Selector: selector(labels),
			Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromString("http")}},
		},
	}
	switch {
	case headless:
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		// Peers must resolve while they start, or routers wait on DNS.
		svc.Spec.PublishNotReadyAddresses = true
	case s.Public:
		svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	default:
		svc.Spec.Type = corev1.ServiceTypeClusterIP
	}
	r.add(svc)
}

func (r *renderer) deployment(s *spec.Service, w *patterns.Workload, labels map[string]string, replicas int, pod corev1.PodTemplateSpec, scalable bool) {
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: r.meta(w.Name(), labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: selector(labels)},
			Template: pod,
		},
	}
	if scalable && s.Autoscale != nil {
		d.Spec.Replicas = nil // the HPA owns the count
		r.add(d)
		r.autoscaler(s, w.Name(), labels)
		return
	}
	r.add(d)
}

func (r *renderer) statefulSet(s *spec.Service, w *patterns.Workload, labels map[string]string) {
	set := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: r.meta(w.Name(), labels),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr(int32(w.Replicas)),
			ServiceName:         w.Name(),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: selector(labels)},
			Template:            r.pod(s, w, labels, nil),
		},
	}
	if st := w.Storage; st != nil {
		// Pod i mounts claim data-NAME-i, made from the template once and
		// kept for its replacements: instance i always gets volume i.
		claim := corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: storageVolume, Labels: maps.Clone(labels)},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(st.Size)}},
			},
		}
		if st.Class != "" {
			claim.Spec.StorageClassName = ptr(st.Class)
		}
		set.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{claim}
		set.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: retention(st.OnDelete),
			WhenScaled:  retention(st.OnScaleDown),
		}
		app := &set.Spec.Template.Spec.Containers[0]
		app.VolumeMounts = append(app.VolumeMounts, corev1.VolumeMount{Name: storageVolume, MountPath: st.Path})
	}
	r.add(set)
}

// tmpVolume is the program's writable /tmp, unless the spec mounts one.
const (
	tmpVolume = "kiln-tmp"
	tmpDir    = "/tmp"
)

// storageVolume names the volume of a shard's or leaf's storage, and so
// its claims: data-kv-shard-0, data-kv-shard-1, ...
const storageVolume = "data"

func retention(policy string) appsv1.PersistentVolumeClaimRetentionPolicyType {
	if policy == spec.StorageDelete {
		return appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	}
	return appsv1.RetainPersistentVolumeClaimRetentionPolicyType
}

func (r *renderer) autoscaler(s *spec.Service, target string, labels map[string]string) {
	cpu := int32(s.Autoscale.TargetCPU)
	if cpu == 0 {
		cpu = 80
	}
	r.add(&autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: r.meta(target, labels),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:    ptr(int32(s.Autoscale.Min)),
			MaxReplicas:    int32(s.Autoscale.Max),
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &cpu},
				},
			}},
		},
	})
}

// disruption keeps all but one replica up through voluntary disruptions
// such as node drains.
func (r *renderer) disruption(name string, labels map[string]string, replicas int) {
	if replicas <= 1 {
		return
	}
	one := intstr.FromInt32(1)
	r.add(&policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: r.meta(name, labels),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &one,
			Selector:       &metav1.LabelSelector{MatchLabels: selector(labels)},
		},
	})
}

// pod is the pod template of one workload: the program in its role, the
// spec's sidecars and init containers, and restricted security settings.
func (r *renderer) pod(s *spec.Service, w *patterns.Workload, labels map[string]string, peers []string) corev1.PodTemplateSpec {
	port := s.HandlerPort()
	role := w.Role
	job := role == patterns.RoleJob
	env := w.RoleEnv(0, peers, r.services)
	if !job {
		env[patterns.EnvAddr] = ":" + strconv.Itoa(port)
	}
	if w.Entry {
		// Its backends may have no DNS name yet when it starts.
		env[patterns.EnvWarm] = "0"
	}
	var fromLabel []corev1.EnvVar
	switch {
	case w.Stable:
		delete(env, patterns.EnvIndex)
		fromLabel = []corev1.EnvVar{{Name: patterns.EnvIndex, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['" + podIndexLabel + "']"},
		}}}
	case job:
		// Each pod of an Indexed Job has its own completion index.
		delete(env, patterns.EnvIndex)
		fromLabel = []corev1.EnvVar{{Name: patterns.EnvIndex, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + completionIndex + "']"},
		}}}
	}
	var mounts []corev1.VolumeMount
	var volumes []corev1.Volume
	for _, v := range s.Volumes {
		volumes = append(volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		if v.Path != "" {
			mounts = append(mounts, corev1.VolumeMount{Name: v.Name, MountPath: v.Path})
		}
	}
	if !slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool { return m.MountPath == tmpDir }) {
		// The root file system is read-only; a program's os.TempDir
		// still works.
		volumes = append(volumes, corev1.Volume{Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		mounts = append(mounts, corev1.VolumeMount{Name: tmpVolume, MountPath: tmpDir})
	}
	from := r.fromDiscovery(env)
	app := r.container("app", r.opts.image(s.Name), nil, env, mounts, s.Resources)
	app.Env = append(app.Env, fromLabel...)
	app.EnvFrom = from
	grace := int64(patterns.DefaultGrace.Seconds())
	if !job {
		// A job's run serves nothing: no port, no probe, no drain.
		app.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}
		app.ReadinessProbe = probe(s, "/readyz", func(p *spec.Probes) *spec.Probe { return p.Readiness }, role)
		app.LivenessProbe = probe(s, "/healthz", func(p *spec.Probes) *spec.Probe { return p.Liveness }, role)
		app.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: drainSeconds}}}
		grace += drainSeconds
	}

	containers := []corev1.Container{app}
	for _, c := range s.Sidecars {
		containers = append(containers, r.sidecar(c))
	}
	containers = append(containers, r.ambassadors(s)...)
	var inits []corev1.Container
	for _, c := range s.Init {
		inits = append(inits, r.sidecar(c))
	}
	// Only pods that take leases talk to the API server; see leases.
	account, token := "", false
	if len(w.Leases) > 0 {
		account, token = w.Name(), true
	}
	var constraints []corev1.TopologySpreadConstraint
	if !job && (pods(s, w) > 1 || s.Autoscale != nil) {
		constraints = spread(labels)
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
		Spec: corev1.PodSpec{
			TopologySpreadConstraints: constraints,
			InitContainers:            inits,
			Containers:                containers,
			Volumes:                   volumes,
			ServiceAccountName:        account,
			// The API server copies serviceAccountName into this deprecated
			// alias, and reads it back when serviceAccountName is unset: a
			// service that stops taking leases would keep the deleted
			// account unless kiln owns, and so drops, both.
			DeprecatedServiceAccount:      account,
			AutomountServiceAccountToken:  ptr(token),
			TerminationGracePeriodSeconds: &grace,
			DNSConfig:                     dnsConfig(),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr(true),
				RunAsUser:      ptr(int64(uid)),
				RunAsGroup:     ptr(int64(gid)),
				FSGroup:        ptr(int64(gid)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		},
	}
}

// dnsConfig asks the pod's resolver to send a query again after one
// second, three times, rather than after five seconds, twice (the
// default of glibc and Go). A lost DNS packet then costs a second: kiln's
// programs find each other, and routers their shards, by name, and a dial
// that waited five seconds for a lookup has spent its whole timeout
// (forward's dialer) and fails the request.
func dnsConfig() *corev1.PodDNSConfig {
	return &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{
		{Name: "timeout", Value: ptr("1")},
		{Name: "attempts", Value: ptr("3")},
	}}
}

func (r *renderer) sidecar(c spec.Container) corev1.Container {
	var mounts []corev1.VolumeMount
	for _, m := range c.Mounts {
		mounts = append(mounts, corev1.VolumeMount{Name: m.Volume, MountPath: m.Path})
	}
	out := r.container(c.Name, c.Image, c.Args, c.Env, mounts, nil)
	for _, p := range c.Ports {
		out.Ports = append(out.Ports, corev1.ContainerPort{ContainerPort: int32(p)})
	}
	return out
}

// container applies the settings every container shares: sorted env,
// resources with defaults, and the restricted security context.
func (r *renderer) container(name, image string, args []string, env map[string]string, mounts []corev1.VolumeMount, res *spec.Resources) corev1.Container {
	c := corev1.Container{
		Name:         name,
		Image:        image,
		Args:         args,
		VolumeMounts: mounts,
		Resources:    resources(res),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			RunAsNonRoot:             ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: env[k]})
	}
	return c
}

func resources(res *spec.Resources) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: defaultCPURequest, corev1.ResourceMemory: defaultMemoryRequest},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: defaultMemoryLimit},
	}
	if res == nil {
		return out
	}
	set := func(l corev1.ResourceList, q spec.Quantities) {
		if q.CPU != "" {
			l[corev1.ResourceCPU] = resource.MustParse(q.CPU)
		}
		if q.Memory != "" {
			l[corev1.ResourceMemory] = resource.MustParse(q.Memory)
		}
	}
	set(out.Requests, res.Requests)
	set(out.Limits, res.Limits)
	return out
}

// probe is an HTTP probe on path, unless the spec overrides it for the
// program's own roles (routers and roots always use kiln's endpoints).
func probe(s *spec.Service, path string, pick func(*spec.Probes) *spec.Probe, role patterns.Role) *corev1.Probe {
	period := int32(5)
	if s.Probes != nil && (role == patterns.RoleLeaf || role == patterns.RoleReplica) {
		if p := pick(s.Probes); p != nil {
			path = p.Path
			if p.Period > 0 {
				period = int32(max(1, p.Period.D().Seconds()))
			}
		}
	}
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
		PeriodSeconds: period,
	}
}

func ptr[T any](v T) *T { return &v }

// YAML writes objects as a multi-document YAML stream that kubectl apply -f
// accepts. The output is deterministic.
func YAML(objs []metav1.Object) ([]byte, error) {
	var out []byte
	for i, o := range objs {
		m, err := clean(o)
		if err != nil {
			return nil, err
		}
		b, err := yaml.Marshal(m)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, b...)
	}
	return out, nil
}

// JSONList writes objects as a v1 List.
func JSONList(objs []metav1.Object) ([]byte, error) {
	items := make([]any, len(objs))
	for i, o := range objs {
		m, err := clean(o)
		if err != nil {
			return nil, err
		}
		items[i] = m
	}
	b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
	return append(b, '\n'), err
}

// clean drops the empty status and null timestamps that typed objects
// marshal, so the output is what a person would write.
func clean(o metav1.Object) (map[string]any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	dropTimestamps(m)
	return m, nil
}

func dropTimestamps(v any) {
	switch t := v.(type) {
	case map[string]any:
		if t["creationTimestamp"] == nil {
			delete(t, "creationTimestamp")
		}
		for _, c := range t {
			dropTimestamps(c)
		}
	case []any:
		for _, c := range t {
			dropTimestamps(c)
		}
	}
}

// shortName is a port name for service s: port names are at most 15
// characters and unique within a pod.
func shortName(s string) string {
	if len(s) > 15 {
		s = s[:15]
	}
	return strings.TrimRight(s, "-")
}
