// Package kubevirt renders a kiln microVM image for KubeVirt: an OCI image
// that carries the kernel and the initramfs (KubeVirt's kernel boot
// container), and, from kubevirt.io/api types, one
// VirtualMachineInstanceReplicaSet per workload of the pattern's topology
// (one VM per pod, each running one role), with the same labels and
// Services as the container path (deployer/kubernetes).
package kubevirt

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
	"github.com/kiln-dev/kiln/unikernel"
	"github.com/kiln-dev/kiln/unikernel/vminit"
)

// Paths of the kernel and initramfs in the kernel boot image.
const (
	KernelPath = "/boot/vmlinuz"
	InitrdPath = "/boot/initrd"
)

// KubeVirt's masquerade binding gives the guest this address and gateway.
const (
	guestIP = "10.0.2.2/24"
	gateway = "10.0.2.1"
)

// KernelImage is an OCI image, FROM scratch, holding the image's kernel and
// initramfs at KernelPath and InitrdPath. It is reproducible: the same image
// directory always gives the same digest.
func KernelImage(im *unikernel.Image) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "boot/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	for _, f := range []struct{ src, dst string }{{im.KernelPath(), KernelPath}, {im.InitrdPath(), InitrdPath}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.dst, "/"), Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: "amd64", OS: "linux",
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Labels: map[string]string{"dev.kiln.kernel-release": im.KernelRelease}},
	})
}

// Push writes the kernel boot image to ref with the default keychain and
// returns the reference by digest.
func Push(ctx context.Context, im *unikernel.Image, ref string, opts ...name.Option) (string, error) {
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", err
	}
	img, err := KernelImage(im)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", r, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}

// Options say how to render.
type Options struct {
	// Image is the kernel boot image's reference (from Push).
	Image string
	// Namespace of the objects; empty leaves it to kubectl. It also goes
	// into the guests' DNS search path ("default" when empty).
	Namespace string
	// Memory (MiB, default 256) and CPUs (default 1) of each VM: a VM runs
	// one role.
	Memory, CPUs int
	// ClusterDNS is the cluster's DNS Service address (default 10.96.0.10,
	// kubeadm's) and ClusterDomain its domain (default cluster.local). A
	// pod learns them from the kubelet; the guest learns them from its
	// kernel command line.
	ClusterDNS, ClusterDomain string
}

// Defaults of Options.
const (
	DefaultMemory        = 256
	DefaultCPUs          = 1
	DefaultClusterDNS    = "10.96.0.10"
	DefaultClusterDomain = "cluster.local"
)

// KubeVirt kernel boot gives the guest no DHCP client of ours to talk to:
// the init configures the masquerade binding's fixed addresses.

// Render renders the image's app; see RenderApp.
func Render(im *unikernel.Image, o Options) ([]byte, error) {
	objs, err := RenderApp(im.App, o)
	if err != nil {
		return nil, err
	}
	return kubernetes.YAML(objs)
}

// RenderApp turns app into KubeVirt objects from kubevirt.io/api types, in
// the container path's order: for each service its backends, then its entry
// point. Each workload of the topology becomes a
// VirtualMachineInstanceReplicaSet whose VMs boot the kernel boot image
// (o.Image) with KubeVirt's kernelBoot and run one role each, told by the
// kernel command line (kiln.env=KILN_ROLE=...,KILN_SERVICE=...). VMI
// template labels are the container path's pod labels; KubeVirt copies them
// to each virt-launcher pod, so the container path's Services (entry
// Service, headless Service of the leaves) select the VMs' pods unchanged.
//
// Stable identity: a VirtualMachineInstanceReplicaSet has no ordinal, unlike
// a StatefulSet. A shard or scatter leaf i therefore gets its own
// VirtualMachineInstanceReplicaSet, <service>-shard-<i> (or -leaf-<i>),
// with one replica, KILN_INDEX=i fixed on its command line, the label
// apps.kubernetes.io/pod-index=i (the label a StatefulSet pod carries), and
// hostname <service>-shard-<i> plus subdomain <service>-shard: with the
// headless Service <service>-shard this gives the VM's pod the DNS name
// <service>-shard-<i>.<service>-shard, the very peer URL the container path
// uses. A replaced VM keeps index, name and DNS name.
func RenderApp(app *spec.App, o Options) ([]metav1.Object, error) {
	if o.Image == "" {
		return nil, fmt.Errorf("kubevirt: no kernel boot image: pass --image REF (kiln vm kubevirt --push REF builds and pushes one)")
	}
	t, err := patterns.Build(app)
	if err != nil {
		return nil, err
	}
	if err := t.NoJobs("kubevirt"); err != nil {
		return nil, err
	}
	if err := t.NoLeases("kubevirt"); err != nil {
		return nil, err
	}
	if err := t.NoStorage("kubevirt"); err != nil {
		// KubeVirt would hand each VM its claim as a blank disk, and the
		// guest has no mkfs to format it: the vm target formats its disks
		// on the host, before QEMU starts.
		return nil, fmt.Errorf("%w; on a cluster, kiln deploy runs it as containers, each instance with a claim of its own", err)
	}
	if o.Memory == 0 {
		o.Memory = DefaultMemory
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	if o.ClusterDNS == "" {
		o.ClusterDNS = DefaultClusterDNS
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	// Ambassador shards are refused by check, so every service has a
	// Service of its own, as on the container path.
	r := &renderer{app: app, o: o, services: kubernetes.Discovery(app)}
	if err := r.check(); err != nil {
		return nil, err
	}
	for i := range app.Services {
		if err := r.service(&app.Services[i], t); err != nil {
			return nil, err
		}
	}
	return r.objs, nil
}

type renderer struct {
	app      *spec.App
	o        Options
	services patterns.Discovery
	objs     []metav1.Object
}

// check refuses what one role per VM cannot express.
func (r *renderer) check() error {
	var errs spec.Errors
	for i, s := range r.app.Services {
		p := spec.ServicePath(i, s.Name)
		if len(s.Sidecars) > 0 {
			errs = append(errs, &spec.FieldError{Path: p.Dot("sidecars"), Msg: "a microVM runs the program alone: sidecar containers need the container path (kiln render without --unikernel)"})
		}
		if len(s.Init) > 0 {
			errs = append(errs, &spec.FieldError{Path: p.Dot("init"), Msg: "a microVM runs the program alone: init containers need the container path (kiln render without --unikernel)"})
		}
		if s.Shard != nil && s.Shard.Ambassador != "" {
			errs = append(errs, &spec.FieldError{Path: p.Dot("shard").Dot("ambassador"), Msg: "a microVM runs one role: an ambassador router inside the client's VM needs the container path (kiln render without --unikernel)"})
		}
	}
	return errs.Err()
}

func (r *renderer) labels(s *spec.Service, role patterns.Role) map[string]string {
	return map[string]string{
		kubernetes.LabelName:      s.Name,
		kubernetes.LabelInstance:  r.app.Name,
		kubernetes.LabelComponent: string(role),
		kubernetes.LabelManagedBy: kubernetes.ManagedBy,
	}
}

// selector is the container path's selector: name, instance, component.
func selector(labels map[string]string) map[string]string {
	return map[string]string{
		kubernetes.LabelName:      labels[kubernetes.LabelName],
		kubernetes.LabelInstance:  labels[kubernetes.LabelInstance],
		kubernetes.LabelComponent: labels[kubernetes.LabelComponent],
	}
}

func (r *renderer) meta(name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: r.o.Namespace, Labels: maps.Clone(labels)}
}

func (r *renderer) service(s *spec.Service, t *patterns.Topology) error {
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
	port := s.HandlerPort()
	if s.Simple != nil {
		labels := r.labels(s, patterns.RoleReplica)
		r.replicaSet(s, back.Name(), patterns.RoleReplica, labels, back.Replicas, 0, back.Replicas, nil, "", "")
		r.addService(s.Name, s, labels, port, false)
		return nil
	}
	backLabels := r.labels(s, back.Role)
	r.addService(back.Name(), s, backLabels, port, true)
	var peers []string
	if back.Stable {
		for i := range back.Replicas {
			host := fmt.Sprintf("%s-%d", back.Name(), i)
			peers = append(peers, fmt.Sprintf("http://%s.%s:%d", host, back.Name(), port))
			l := maps.Clone(backLabels)
			l[podIndexLabel] = strconv.Itoa(i)
			r.replicaSet(s, host, back.Role, l, 1, i, back.Replicas, nil, host, back.Name())
		}
	} else {
		peers = []string{fmt.Sprintf("dns+http://%s:%d", back.Name(), port)}
		r.replicaSet(s, back.Name(), back.Role, backLabels, back.Replicas, 0, back.Replicas, nil, "", "")
	}
	frontLabels := r.labels(s, front.Role)
	r.replicaSet(s, front.Name(), front.Role, frontLabels, s.RouterReplicas(), 0, 1, peers, "", "")
	r.addService(s.Name, s, frontLabels, port, false)
	return nil
}

// podIndexLabel is the label a StatefulSet pod carries; leaf VMs carry it
// too, so the same selectors find leaf i on both paths.
const podIndexLabel = "apps.kubernetes.io/pod-index"

// replicaSet adds a VirtualMachineInstanceReplicaSet of replicas VMs, each
// running role with KILN_INDEX=index and KILN_COUNT=count.
func (r *renderer) replicaSet(s *spec.Service, name string, role patterns.Role, labels map[string]string, replicas, index, count int, peers []string, hostname, subdomain string) {
	port := s.HandlerPort()
	w := patterns.Workload{Service: s.Name, Role: role, Replicas: count, Env: s.Env}
	env := w.RoleEnv(index, peers, r.services)
	env[patterns.EnvAddr] = ":" + strconv.Itoa(port)
	if role == patterns.RoleRouter || role == patterns.RoleRoot {
		// As on pods: its backends may have no DNS name yet when it starts.
		env[patterns.EnvWarm] = "0"
	}
	grace := int64(patterns.DefaultGrace.Seconds())
	vmi := kubevirtv1.VirtualMachineInstanceSpec{
		Domain: kubevirtv1.DomainSpec{
			CPU: &kubevirtv1.CPU{Cores: uint32(r.o.CPUs)},
			Resources: kubevirtv1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse(strconv.Itoa(r.o.Memory) + "Mi"),
			}},
			Firmware: &kubevirtv1.Firmware{KernelBoot: &kubevirtv1.KernelBoot{
				KernelArgs: r.kernelArgs(env),
				Container: &kubevirtv1.KernelBootContainer{
					Image: r.o.Image, KernelPath: KernelPath, InitrdPath: InitrdPath,
					ImagePullPolicy: corev1.PullIfNotPresent,
				},
			}},
			Devices: kubevirtv1.Devices{
				Interfaces: []kubevirtv1.Interface{{
					Name:                   "default",
					InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}},
					Ports:                  []kubevirtv1.Port{{Name: "http", Port: int32(port), Protocol: "TCP"}},
				}},
				Rng:                      &kubevirtv1.Rng{},
				AutoattachGraphicsDevice: ptr(false),
			},
		},
		Networks:                      []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}},
		TerminationGracePeriodSeconds: &grace,
		ReadinessProbe:                httpProbe("/readyz", port, 0),
		// A VM boots in seconds, not milliseconds, when the node lacks
		// KVM: give it time before liveness counts.
		LivenessProbe: httpProbe("/healthz", port, 30),
		Hostname:      hostname,
		Subdomain:     subdomain,
	}
	r.objs = append(r.objs, &kubevirtv1.VirtualMachineInstanceReplicaSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachineInstanceReplicaSet"},
		ObjectMeta: r.meta(name, labels),
		Spec: kubevirtv1.VirtualMachineInstanceReplicaSetSpec{
			Replicas: ptr(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: selectorFor(labels)},
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
				Spec:       vmi,
			},
		},
	})
}

// selectorFor selects one replica set's VMs: the container path's selector,
// plus the leaf's index when it has one.
func selectorFor(labels map[string]string) map[string]string {
	sel := selector(labels)
	if i, ok := labels[podIndexLabel]; ok {
		sel[podIndexLabel] = i
	}
	return sel
}

func httpProbe(path string, port int, delay int32) *kubevirtv1.Probe {
	return &kubevirtv1.Probe{
		Handler:             kubevirtv1.Handler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(int32(port))}},
		InitialDelaySeconds: delay,
		PeriodSeconds:       5,
	}
}

// addService is the container path's Service, with a numeric target port:
// a virt-launcher pod names no container port "http".
func (r *renderer) addService(name string, s *spec.Service, labels map[string]string, port int, headless bool) {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: r.meta(name, labels),
		Spec: corev1.ServiceSpec{
			Selector: selector(labels),
			Ports:    []corev1.ServicePort{{Name: "http", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}},
		},
	}
	switch {
	case headless:
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		svc.Spec.PublishNotReadyAddresses = true
	case s.Public:
		svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	default:
		svc.Spec.Type = corev1.ServiceTypeClusterIP
	}
	r.objs = append(r.objs, svc)
}

// kernelArgs is the guest's kernel command line: the image's base
// arguments, KubeVirt's masquerade addresses, the cluster's DNS, and the
// role environment, sorted by key so that the output is deterministic.
func (r *renderer) kernelArgs(env map[string]string) string {
	ns := r.o.Namespace
	if ns == "" {
		ns = "default"
	}
	d := r.o.ClusterDomain
	return strings.Join([]string{
		unikernel.BaseCmdline(),
		vminit.ArgIP + "=" + guestIP, vminit.ArgGW + "=" + gateway,
		vminit.ArgDNS + "=" + r.o.ClusterDNS,
		vminit.ArgSearch + "=" + strings.Join([]string{ns + ".svc." + d, "svc." + d, d}, ","),
		vminit.ArgEnv + "=" + vminit.EncodeEnv(env),
	}, " ")
}

func ptr[T any](v T) *T { return &v }

// Decode reads YAML that RenderApp wrote back into kubevirt.io/api and
// k8s.io/api types, refusing unknown fields: a check that every field
// written is one the types know.
func Decode(b []byte) ([]any, error) {
	var out []any
	for i, doc := range strings.Split(string(b), "\n---\n") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var obj any
		switch tm.Kind {
		case "VirtualMachineInstanceReplicaSet":
			obj = &kubevirtv1.VirtualMachineInstanceReplicaSet{}
		case "Service":
			obj = &corev1.Service{}
		default:
			return nil, fmt.Errorf("document %d: unexpected kind %q", i, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		out = append(out, obj)
	}
	return out, nil
}
