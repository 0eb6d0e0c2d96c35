package e2e

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// EnvKubeconfig points tests at a test cluster. It is not KUBECONFIG, so a
// test never touches the cluster a developer works with.
const EnvKubeconfig = "KILN_TEST_KUBECONFIG"

// Cluster returns the test cluster's config, or skips (fails under CI).
func Cluster(t testing.TB) *rest.Config {
	t.Helper()
	path := os.Getenv(EnvKubeconfig)
	var cfg *rest.Config
	err := errors.New(EnvKubeconfig + " is not set")
	if path != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err == nil {
		var cs *kubernetes.Clientset
		if cs, err = kubernetes.NewForConfig(cfg); err == nil {
			_, err = cs.Discovery().ServerVersion()
		}
	}
	Require(t, "a Kubernetes test cluster", err, "run hack/test, which starts one with hack/kube-up, or export "+EnvKubeconfig+" after `eval \"$(hack/kube-up)\"`")
	return cfg
}

// Namespace creates a fresh namespace that enforces the Pod Security
// "restricted" profile, and deletes it when the test ends.
func Namespace(t testing.TB, cfg *rest.Config, prefix string) string {
	t.Helper()
	return namespace(t, cfg, prefix, nil)
}

func namespace(t testing.TB, cfg *rest.Config, prefix string, annotations map[string]string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: prefix + "-",
		Annotations:  annotations,
		Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
			"pod-security.kubernetes.io/warn":    "restricted",
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Logf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// Kubeconfig is the path of the test cluster's kubeconfig.
func Kubeconfig() string { return os.Getenv(EnvKubeconfig) }
