package helmchart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

// The real `scx-slo webhook`, started with the chart Deployment's args and
// env, its Secret's files as the volume mounts them, and the chart's RBAC
// (impersonating its service account), serves its certificate for the
// Service's name and writes SLOPolicy status.
func TestWebhookRunsWithTheChartsPodSpec(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	c := cluster.Client
	cluster.CreateNamespaces(t, releaseNamespace, "shop")
	name := releaseName + "-webhook"
	objs := mustRender(t, webhookOn)
	var dep appsv1.Deployment
	findNamed(t, objs, "Deployment", name, &dep)
	var sec corev1.Secret
	findNamed(t, objs, "Secret", name+"-tls", &sec)
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if strings.HasPrefix(o.GetName(), name) {
				if err := c.Create(ctx, o); err != nil {
					t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		}
	}
	if err := c.Create(ctx, &v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"},
		Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{}, LatencyBudget: "2ms"}}); err != nil {
		t.Fatal(err)
	}

	// The Secret volume.
	tlsDir := t.TempDir()
	for k, v := range sec.Data {
		if err := os.WriteFile(filepath.Join(tlsDir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := impersonatingKubeconfig(t, cluster.Config, name)

	ctr := dep.Spec.Template.Spec.Containers[0]
	mount := ctr.VolumeMounts[0].MountPath
	addr := exportertest.FreeAddr(t)
	var args []string
	for _, a := range ctr.Args {
		if strings.HasPrefix(a, "--webhook.listen-address=") {
			a = "--webhook.listen-address=" + addr
		}
		args = append(args, strings.ReplaceAll(a, "="+mount+"/", "="+tlsDir+"/"))
	}
	args = append(args, "--kubernetes.kubeconfig="+kubeconfig)
	t.Logf("args from the chart: %q", ctr.Args)
	cmd := exec.Command(exportertest.Binary(t), args...)
	// The downward API env the chart sets.
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+releaseNamespace, "POD_NAME="+name+"-0")
	log := &exportertest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); <-done })

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sec.Data["ca.crt"])
	// The API server dials the Service's name; so does this client.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: name + "." + releaseNamespace + ".svc"}}}
	deadline := time.Now().Add(2 * time.Minute)
	healthy := false
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("scx-slo webhook exited: %v\n%s", err, log.String())
		default:
		}
		if !healthy {
			if resp, err := hc.Get("https://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				healthy = resp.StatusCode == http.StatusOK
			}
		}
		var p v1alpha1.SLOPolicy
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "p"}, &p); err != nil {
			t.Fatal(err)
		}
		if healthy && p.Status.ObservedGeneration == p.Generation {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz over TLS %v, policy status %+v\n%s", healthy, p.Status, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
