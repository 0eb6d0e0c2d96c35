package kubevirt

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/spec"
	"github.com/kiln-dev/kiln/unikernel"
	"github.com/kiln-dev/kiln/unikernel/vminit"
)

// fakeImage is an image directory with small stand-ins for the kernel and
// initramfs: rendering never looks inside them.
func fakeImage(t *testing.T) *unikernel.Image {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel bytes"), 0o644)
	os.WriteFile(filepath.Join(dir, "initramfs.cpio"), []byte("070701 initramfs bytes"), 0o644)
	return &unikernel.Image{
		Dir: dir, Kernel: "vmlinuz", Initrd: "initramfs.cpio", KernelRelease: "6.1.0-56-cloud-amd64",
		Cmdline: "console=ttyS0 panic=-1 quiet kiln.ip=10.0.2.15/24 kiln.gw=10.0.2.2 kiln.port=8080",
		Entries: []unikernel.Entry{{Service: "kv", GuestPort: 8080}},
		App:     &spec.App{Name: "kv", Services: []spec.Service{{Name: "kv"}}},
	}
}

func TestKubeVirtKernelImage(t *testing.T) {
	im := fakeImage(t)
	a, err := KernelImage(im)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := KernelImage(im)
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("two renders of one image differ: %s and %s", da, db)
	}
	layers, err := a.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		files["/"+h.Name] = string(body)
		if h.ModTime.Unix() != 0 {
			t.Errorf("%s has mtime %v", h.Name, h.ModTime)
		}
	}
	if files[KernelPath] != "kernel bytes" || files[InitrdPath] != "070701 initramfs bytes" {
		t.Errorf("layer holds %q", files)
	}

	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := Push(context.Background(), im, host+"/kiln/kv-kernel:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(ref, "@"+da.String()) {
		t.Errorf("pushed as %s, want digest %s", ref, da)
	}
	r, _ := name.ParseReference(ref, name.Insecure)
	if _, err := remote.Image(r); err != nil {
		t.Errorf("the registry does not serve %s: %v", ref, err)
	}
}

func example(t *testing.T, name string) *spec.App {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../examples/testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	app, err := spec.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// TestKubeVirtGolden renders the kv (shard) and search (scatter/gather)
// examples, checks the output against golden files, and decodes it back
// into the kubevirt.io/api and k8s.io/api types with unknown fields
// refused.
func TestKubeVirtGolden(t *testing.T) {
	for _, name := range []string{"kv", "search", "hello"} {
		t.Run(name, func(t *testing.T) {
			app := example(t, name)
			o := Options{Image: "registry.example/" + name + "-vm@sha256:0123"}
			objs, err := RenderApp(app, o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := kubernetes.YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := RenderApp(example(t, name), o)
			if b, _ := kubernetes.YAML(again); string(b) != string(got) {
				t.Fatal("two renders of the same app differ")
			}
			golden.Check(t, "example-"+name+".yaml", got)
			if _, err := Decode(got); err != nil {
				t.Fatalf("the YAML does not decode strictly into the API types: %v", err)
			}
			if _, err := Decode(append(got[:len(got):len(got)], "---\napiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {bogus: 1}\n"...)); err == nil {
				t.Error("Decode accepts an unknown field")
			}
		})
	}
}

// TestKubeVirtTopology checks what the golden files only show: one replica
// set per workload and per stable leaf, the container path's labels and
// Services, one role per VM with a fixed index, and peers that resolve.
func TestKubeVirtTopology(t *testing.T) {
	app := example(t, "kv")
	out, err := Render(&unikernel.Image{App: app}, Options{Image: "reg/kv-vm:1", Namespace: "apps"})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := kubernetes.Render(app, kubernetes.Options{Image: "reg/kv:1", Namespace: "apps"})
	if err != nil {
		t.Fatal(err)
	}
	wantSvcs := map[string]*corev1.Service{}
	for _, o := range k8s {
		if s, ok := o.(*corev1.Service); ok {
			wantSvcs[s.Name] = s
		}
	}
	rs := map[string]*kubevirtv1.VirtualMachineInstanceReplicaSet{}
	var svcs []*corev1.Service
	for _, o := range objs {
		switch o := o.(type) {
		case *kubevirtv1.VirtualMachineInstanceReplicaSet:
			rs[o.Name] = o
		case *corev1.Service:
			svcs = append(svcs, o)
		}
	}
	if len(svcs) != len(wantSvcs) {
		t.Errorf("%d Services, the container path has %d", len(svcs), len(wantSvcs))
	}
	for _, s := range svcs {
		w := wantSvcs[s.Name]
		if w == nil {
			t.Errorf("Service %s is not one of the container path's", s.Name)
			continue
		}
		if fmt.Sprint(s.Labels) != fmt.Sprint(w.Labels) || fmt.Sprint(s.Spec.Selector) != fmt.Sprint(w.Spec.Selector) ||
			s.Spec.ClusterIP != w.Spec.ClusterIP || s.Spec.Type != w.Spec.Type || s.Spec.Ports[0].Port != w.Spec.Ports[0].Port {
			t.Errorf("Service %s differs from the container path's:\n%+v\n%+v", s.Name, s.Spec, w.Spec)
		}
		// Some VM's pod must match the selector.
		found := false
		for _, r := range rs {
			if matches(s.Spec.Selector, r.Spec.Template.ObjectMeta.Labels) {
				found = true
			}
		}
		if !found {
			t.Errorf("Service %s selects no VM", s.Name)
		}
	}
	var names []string
	for n := range rs {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"kv-router", "kv-shard-0", "kv-shard-1", "kv-shard-2"}; !slices.Equal(names, want) {
		t.Fatalf("replica sets %v, want %v", names, want)
	}
	for i := range 3 {
		r := rs[fmt.Sprintf("kv-shard-%d", i)]
		spec := r.Spec.Template.Spec
		args := spec.Domain.Firmware.KernelBoot.KernelArgs
		if *r.Spec.Replicas != 1 || !strings.Contains(args, fmt.Sprintf("KILN_INDEX=%d,", i)) || !strings.Contains(args, "KILN_ROLE=leaf") {
			t.Errorf("kv-shard-%d: replicas %d, kernel args %q", i, *r.Spec.Replicas, args)
		}
		if spec.Hostname != fmt.Sprintf("kv-shard-%d", i) || spec.Subdomain != "kv-shard" {
			t.Errorf("kv-shard-%d: hostname %q subdomain %q", i, spec.Hostname, spec.Subdomain)
		}
		if !matches(r.Spec.Selector.MatchLabels, r.Spec.Template.ObjectMeta.Labels) {
			t.Errorf("kv-shard-%d selects not its own VMs", i)
		}
		for j := range 3 {
			if j != i && matches(r.Spec.Selector.MatchLabels, rs[fmt.Sprintf("kv-shard-%d", j)].Spec.Template.ObjectMeta.Labels) {
				t.Errorf("kv-shard-%d selects the VMs of kv-shard-%d", i, j)
			}
		}
	}
	router := rs["kv-router"].Spec.Template.Spec.Domain.Firmware.KernelBoot
	if vmEnv(t, router.KernelArgs)["KILN_PEERS"] != "http://kv-shard-0.kv-shard:8080,http://kv-shard-1.kv-shard:8080,http://kv-shard-2.kv-shard:8080" ||
		!strings.Contains(router.KernelArgs, "kiln.ip=10.0.2.2/24 kiln.gw=10.0.2.1") ||
		!strings.Contains(router.KernelArgs, "kiln.search=apps.svc.cluster.local,") {
		t.Errorf("router kernel args %q", router.KernelArgs)
	}
	if router.Container.Image != "reg/kv-vm:1" || router.Container.KernelPath != KernelPath || router.Container.InitrdPath != InitrdPath {
		t.Errorf("kernel boot container %+v", router.Container)
	}
	if _, err := RenderApp(app, Options{}); err == nil {
		t.Error("rendering without a kernel boot image succeeds")
	}
	side := example(t, "kv")
	side.Services[0].Sidecars = []spec.Container{{Name: "log", Image: "busybox"}}
	if _, err := RenderApp(side, Options{Image: "x"}); err == nil || !strings.Contains(err.Error(), "sidecars") {
		t.Errorf("a sidecar renders: %v", err)
	}
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubeVirtRefusesStorageSayingWhereItRuns: the guest could not format
// a blank claim, so a service that keeps storage goes to the cluster as
// containers.
func TestKubeVirtRefusesStorageSayingWhereItRuns(t *testing.T) {
	_, err := RenderApp(example(t, "kvstore"), Options{Image: "reg/kvstore-vm:1"})
	want := `service "kvstore" keeps storage, which the kubevirt target does not give yet: the local, docker, kubernetes and vm targets do; on a cluster, kiln deploy runs it as containers, each instance with a claim of its own`
	if err == nil || err.Error() != want {
		t.Errorf("RenderApp(kvstore) = %v, want %q", err, want)
	}
}

// vmEnv is the environment a VM's init gives its program, read from the
// kernel command line as the init reads it.
func vmEnv(t *testing.T, args string) map[string]string {
	t.Helper()
	for word := range strings.FieldsSeq(args) {
		if v, ok := strings.CutPrefix(word, vminit.ArgEnv+"="); ok {
			env, err := vminit.DecodeEnv(v)
			if err != nil {
				t.Fatalf("%s: %v", word, err)
			}
			m := map[string]string{}
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				m[k] = v
			}
			return m
		}
	}
	t.Fatalf("no %s in %q", vminit.ArgEnv, args)
	return nil
}

// Every VM's program gets its service's environment as written, whatever
// the values hold (commas, K=V pairs, spaces, quotes, percent signs), and a
// router gets the service's GODEBUG after its own runtime setting.
func TestKubeVirtVMsGetTheirEnvironmentWhole(t *testing.T) {
	app := example(t, "kv")
	odd := "a,B=c d\"e%41\nf"
	app.Services[0].Env = map[string]string{"GODEBUG": "http2client=0", "ODD": odd}
	objs, err := RenderApp(app, Options{Image: "registry.example/kv-vm@sha256:0123"})
	if err != nil {
		t.Fatal(err)
	}
	vms := 0
	for _, o := range objs {
		rs, ok := o.(*kubevirtv1.VirtualMachineInstanceReplicaSet)
		if !ok {
			continue
		}
		vms++
		args := rs.Spec.Template.Spec.Domain.Firmware.KernelBoot.KernelArgs
		env := vmEnv(t, args) // a space or quote left as it is would cut ODD short
		want := "http2client=0"
		if env["KILN_ROLE"] == "router" {
			want = "schedtrace=2147483647,http2client=0"
		}
		if env["GODEBUG"] != want || env["ODD"] != odd || env["B"] != "" {
			t.Errorf("%s: GODEBUG %q, ODD %q, B %q; want %q, %q, none", rs.Name, env["GODEBUG"], env["ODD"], env["B"], want, odd)
		}
	}
	if vms < 2 {
		t.Errorf("%d VMs, want the shards' and the router's", vms)
	}
}
