// Package kubetest starts a real kube-apiserver and etcd for a test
// through controller-runtime's envtest, with the binaries from
// internal/testbed/kubeassets (built on first use) and the SLOPolicy CRD
// from deploy/helm/scx-slo/crds installed. No kubectl is needed.
package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/testbed/kubeassets"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// Cluster is a running control plane.
type Cluster struct {
	Config *rest.Config
	Client client.Client // knows the built-in kinds and scx-slo.io/v1alpha1
	Scheme *k8sruntime.Scheme
}

// CRDDir is the directory of the generated CRD manifests.
func CRDDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "../../../deploy/helm/scx-slo/crds")
}

// Start runs kube-apiserver and etcd for t (stopped when t ends), with
// the CRDs of CRDDir and of extraCRDDirs (e.g. monitoring CRDs a chart
// test needs) installed. It builds the binaries when the cache
// lacks them (minutes, once per machine); when that fails the test is
// skipped, or failed under SCX_SLO_LAB_REQUIRED=1. Under -short it skips.
func Start(t testing.TB, extraCRDDirs ...string) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	assets, err := kubeassets.Ensure(ctx, testWriter{t})
	needs.Part(t, "kube-apiserver and etcd", err)
	t.Setenv("TEST_ASSET_KUBE_APISERVER", assets.APIServer)
	t.Setenv("TEST_ASSET_ETCD", assets.Etcd)

	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:        append([]string{CRDDir()}, extraCRDDirs...),
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 2 * time.Minute, // a busy 2-core CI host
		ControlPlaneStopTimeout:  time.Minute,
	}
	if os.Getenv("SCX_SLO_KUBE_LOG") != "" {
		env.AttachControlPlaneOutput = true
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest (kube-apiserver %s, etcd %s): %v", assets.APIServer, assets.Etcd, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{Config: cfg, Client: c, Scheme: scheme}
}

// Codecs decodes YAML and JSON of the kinds the cluster's scheme knows.
func (c *Cluster) Codecs() serializer.CodecFactory { return serializer.NewCodecFactory(c.Scheme) }

// CreateNamespaces creates the named namespaces, failing the test on any
// error.
func (c *Cluster) CreateNamespaces(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := c.Client.Create(context.Background(), ns); err != nil {
			t.Fatalf("creating namespace %s: %v", name, err)
		}
	}
}

// Kubeconfig writes a kubeconfig file reaching the API server (for a
// process under test, e.g. the agent's --kubernetes.kubeconfig) and
// returns its path.
func (c *Cluster) Kubeconfig(t testing.TB) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.Config.CertData, ClientKeyData: c.Config.KeyData, Token: c.Config.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatalf("writing a kubeconfig: %v", err)
	}
	return p
}

// testWriter sends build progress to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
