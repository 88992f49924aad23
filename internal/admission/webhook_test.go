package admission

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/deploy/helm/helmtest"
	"github.com/scx-slo/scx-slo/internal/slopolicy"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

// testCA signs serving certificates for 127.0.0.1 with chosen serials, so
// a rotation can be told apart at the server.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scx-slo test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a serving certificate and key into dir, each file replaced
// by a rename as a Secret volume update does.
func (ca *testCA) issue(t testing.TB, dir string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "scx-slo-webhook"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	write := func(name string, block *pem.Block) {
		tmp := filepath.Join(dir, "."+name+".tmp")
		must(t, os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600))
		must(t, os.Rename(tmp, filepath.Join(dir, name)))
	}
	write("tls.crt", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	write("tls.key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// webhookConfigs are the configurations the chart installs (rendered with
// Helm's SDK), so the API server applies the chart's own rules, selectors,
// failurePolicy and timeout. Only where they send requests changes: envtest
// turns each service path into https://<host>:<port>/<path> of the local
// server and sets its CA as caBundle.
func webhookConfigs(t *testing.T) ([]*admissionregv1.MutatingWebhookConfiguration, []*admissionregv1.ValidatingWebhookConfiguration) {
	t.Helper()
	m, v := helmtest.WebhookConfigurations(t, map[string]any{"webhook": map[string]any{"enabled": true}})
	toLocal := func(name string, cc *admissionregv1.WebhookClientConfig, want string) {
		if cc.Service == nil || cc.Service.Path == nil || *cc.Service.Path != want {
			t.Fatalf("webhook %s: the chart's clientConfig %+v does not send to %s, the server's path", name, cc, want)
		}
		path := strings.TrimPrefix(want, "/") // envtest adds the slash
		cc.Service.Path = &path
	}
	for i := range m.Webhooks {
		toLocal(m.Webhooks[i].Name, &m.Webhooks[i].ClientConfig, MutatePath)
	}
	for i := range v.Webhooks {
		toLocal(v.Webhooks[i].Name, &v.Webhooks[i].ClientConfig, ValidatePath)
	}
	return []*admissionregv1.MutatingWebhookConfiguration{m}, []*admissionregv1.ValidatingWebhookConfiguration{v}
}

// webhookServer is the real server on the port envtest registered.
type webhookServer struct {
	certs  *Certs
	cancel context.CancelFunc
	done   chan error
}

func startServer(t *testing.T, cluster *kubetest.Cluster, port int, dir string) *webhookServer {
	t.Helper()
	certs, err := LoadCerts(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), func(msg string, kv ...any) { t.Log(append([]any{msg}, kv...)...) })
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	policies, err := NewPolicyCache(cluster.Config)
	must(t, err)
	must(t, policies.Start(ctx, time.Minute))
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	must(t, err)
	s := &webhookServer{certs: certs, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- Serve(ctx, l, certs, &Handler{Policies: policies}) }()
	t.Cleanup(s.stop)
	return s
}

func (s *webhookServer) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
}

func newPod(name string, labels, ann map[string]string, ctrs ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels, Annotations: ann}}
	for _, c := range ctrs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "nginx"})
	}
	return p
}

// sloAnnotations picks the scx-slo.io/ keys.
func sloAnnotations(p *corev1.Pod) map[string]string {
	out := map[string]string{}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "scx-slo.io/") {
			out[k] = v
		}
	}
	return out
}

func checkAnnotations(t *testing.T, c client.Client, name string, want map[string]string) {
	t.Helper()
	checkAnnotationsIn(t, c, "shop", name, want)
}

func checkAnnotationsIn(t *testing.T, c client.Client, ns, name string, want map[string]string) {
	t.Helper()
	var got corev1.Pod
	must(t, c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &got))
	ga := sloAnnotations(&got)
	if fmt.Sprint(ga) != fmt.Sprint(want) {
		t.Errorf("pod %s/%s: SLO annotations\n got %v\nwant %v", ns, name, ga, want)
	}
}

// TestWebhookAtTheAPIServer registers the webhooks with a real
// kube-apiserver, which calls the real server over TLS for every pod.
func TestWebhookAtTheAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	c := cluster.Client
	ctx := context.Background()
	ca := newTestCA(t)
	dir := t.TempDir()
	ca.issue(t, dir, 100)

	mut, val := webhookConfigs(t)
	opts := envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1", LocalServingCAData: ca.pem,
		MutatingWebhooks: mut, ValidatingWebhooks: val}
	must(t, opts.ModifyWebhookDefinitions())
	must(t, opts.Install(cluster.Config))
	srv := startServer(t, cluster, opts.LocalServingPort, dir)

	// Namespaces the chart leaves out: kube-system, the release's own and
	// one labelled scx-slo.io/webhook=off. Each has a policy that would
	// fill the release's pods if the webhook saw them; they are created
	// before shop's, so the informer has them once it has shop's.
	quiet := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "quiet", Labels: map[string]string{"scx-slo.io/webhook": "off"}}}
	must(t, c.Create(ctx, quiet))
	cluster.CreateNamespaces(t, "shop", helmtest.ReleaseNamespace)
	excluded := []string{"kube-system", helmtest.ReleaseNamespace, quiet.Name}
	// The API server makes kube-system shortly after it starts.
	waitFor(t, "namespace kube-system", func() bool {
		return c.Get(ctx, client.ObjectKey{Name: "kube-system"}, &corev1.Namespace{}) == nil
	})
	for _, ns := range append(excluded, "shop") {
		must(t, c.Create(ctx, &v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "checkout"},
			Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/instance": "checkout"}},
				LatencyBudget: "2ms", Importance: 500, Target: "0.999"}}))
	}
	release := map[string]string{"app.kubernetes.io/instance": "checkout", "app.kubernetes.io/name": "api"}
	// The informer must have the policy before the first pod.
	waitFor(t, "the webhook to fill a pod", func() bool {
		p := newPod("probe-"+strconv.FormatInt(time.Now().UnixNano(), 36), release, nil, "api")
		must(t, c.Create(ctx, p))
		return p.Annotations[slopolicy.AnnotationPolicy] == "checkout"
	})

	t.Run("fills from the policy and stamps it", func(t *testing.T) {
		must(t, c.Create(ctx, newPod("filled", release, map[string]string{"team": "shop"}, "api", "proxy")))
		checkAnnotations(t, c, "filled", map[string]string{
			"scx-slo.io/latency-budget": "2ms", "scx-slo.io/importance": "500", "scx-slo.io/target": "0.999",
			"scx-slo.io/policy": "checkout", "scx-slo.io/filled": "latency-budget,importance,target"})
	})
	t.Run("keeps what the pod set itself", func(t *testing.T) {
		must(t, c.Create(ctx, newPod("own", release, map[string]string{"scx-slo.io/latency-budget.api": "1ms"}, "api", "proxy")))
		checkAnnotations(t, c, "own", map[string]string{
			"scx-slo.io/latency-budget.api":   "1ms",
			"scx-slo.io/latency-budget.proxy": "2ms", "scx-slo.io/importance.proxy": "500", "scx-slo.io/target.proxy": "0.999",
			"scx-slo.io/policy": "checkout", "scx-slo.io/filled": "latency-budget.proxy,importance.proxy,target.proxy"})
	})
	t.Run("no matching policy, no change", func(t *testing.T) {
		must(t, c.Create(ctx, newPod("other", map[string]string{"app": "other"}, nil, "api")))
		checkAnnotations(t, c, "other", map[string]string{})
	})
	t.Run("opt-out label", func(t *testing.T) {
		must(t, c.Create(ctx, newPod("optout", map[string]string{"app.kubernetes.io/instance": "checkout", "scx-slo.io/webhook": "off"}, nil, "api")))
		checkAnnotations(t, c, "optout", map[string]string{})
	})
	t.Run("namespaces the chart leaves out", func(t *testing.T) {
		// Neither webhook sees their pods: not filled, and invalid
		// annotations are admitted (the agent reports them instead).
		for _, ns := range excluded {
			p := newPod("unseen", release, nil, "api")
			p.Namespace = ns
			must(t, c.Create(ctx, p))
			checkAnnotationsIn(t, c, ns, "unseen", map[string]string{})
			bad := newPod("unseen-invalid", release, map[string]string{"scx-slo.io/target": "99%"}, "api")
			bad.Namespace = ns
			if err := c.Create(ctx, bad); err != nil {
				t.Errorf("namespace %s: a pod with invalid annotations was checked: %v", ns, err)
			}
		}
	})
	t.Run("invalid annotations are rejected with key and value", func(t *testing.T) {
		err := c.Create(ctx, newPod("bad", release, map[string]string{"scx-slo.io/latency-budget": "2", "scx-slo.io/target": "99%"}, "api"))
		if err == nil {
			t.Fatal("a pod with invalid SLO annotations was admitted")
		}
		for _, want := range []string{
			`scx-slo.io/latency-budget: "2": a plain number is ambiguous; add a unit`,
			`scx-slo.io/target: "99%": write a fraction, not a percentage`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("rejection %q does not say %q", err, want)
			}
		}
		// docs/kubernetes.md shows this rejection as the API server gives it.
		doc, err2 := os.ReadFile("../../docs/kubernetes.md")
		must(t, err2)
		shown := false
		for _, line := range strings.Split(string(doc), "\n") {
			if strings.HasPrefix(line, `admission webhook "check.scx-slo.io" denied`) {
				shown = true
				if !strings.Contains(err.Error(), line) {
					t.Errorf("docs/kubernetes.md shows a rejection the API server does not give:\n%s\ngot:\n%v", line, err)
				}
			}
		}
		if !shown {
			t.Error("docs/kubernetes.md shows no rejection line; did its layout change?")
		}
		var p corev1.Pod
		p.Name, p.Namespace = "filled", "shop"
		must(t, c.Get(ctx, client.ObjectKeyFromObject(&p), &p))
		p.Annotations["scx-slo.io/importance"] = "5000"
		if err := c.Update(ctx, &p); err == nil || !strings.Contains(err.Error(), `scx-slo.io/importance: "5000"`) {
			t.Errorf("updating to an invalid importance: got %v", err)
		}
	})

	t.Run("certificate rotation", func(t *testing.T) {
		// Pods keep coming while the files change; every one must pass
		// through the webhook (under Ignore a failed call would let it
		// in unfilled, so a missing stamp is a failed call).
		stopLoad := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var unfilled []string
		created := 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				p := newPod("load-"+strconv.Itoa(i), release, nil, "api")
				err := c.Create(ctx, p)
				mu.Lock()
				created++
				if err != nil || p.Annotations[slopolicy.AnnotationPolicy] != "checkout" {
					unfilled = append(unfilled, fmt.Sprintf("%s (err %v)", p.Name, err))
				}
				mu.Unlock()
			}
		}()
		waitFor(t, "pods during the rotation", func() bool { mu.Lock(); defer mu.Unlock(); return created >= 3 })
		before := srv.certs.Handshakes("100")
		ca.issue(t, dir, 200)
		oldAfter := srv.certs.Handshakes("100")
		must(t, c.Create(ctx, newPod("after-rotation", release, nil, "api")))
		// Its handshakes (mutate, validate) used the new certificate.
		if srv.certs.Serial() != "200" || srv.certs.Handshakes("200") < 2 {
			t.Errorf("after the rotation: serving serial %s, %d handshakes with the new one", srv.certs.Serial(), srv.certs.Handshakes("200"))
		}
		checkAnnotations(t, c, "after-rotation", map[string]string{
			"scx-slo.io/latency-budget": "2ms", "scx-slo.io/importance": "500", "scx-slo.io/target": "0.999",
			"scx-slo.io/policy": "checkout", "scx-slo.io/filled": "latency-budget,importance,target"})
		n := srv.certs.Handshakes("200")
		waitFor(t, "pods after the rotation", func() bool { return srv.certs.Handshakes("200") >= n+4 })
		close(stopLoad)
		wg.Wait()
		if got := srv.certs.Handshakes("100"); got != oldAfter {
			t.Errorf("the old certificate served %d handshakes after the files changed", got-oldAfter)
		}
		if len(unfilled) > 0 {
			t.Errorf("%d of %d pods created across the rotation missed the webhook: %v", len(unfilled), created, unfilled)
		}
		t.Logf("%d pods across the rotation; handshakes: old cert %d (before the change %d), new cert %d",
			created, srv.certs.Handshakes("100"), before, srv.certs.Handshakes("200"))
	})

	t.Run("server down: pods are still admitted", func(t *testing.T) {
		srv.stop()
		p := newPod("unwatched", release, map[string]string{"scx-slo.io/latency-budget": "2"}, "api")
		must(t, c.Create(ctx, p))
		checkAnnotations(t, c, "unwatched", map[string]string{"scx-slo.io/latency-budget": "2"})
	})
}

// waitFor polls cond until it holds; the limit is generous for a busy
// 2-core host and only bounds a broken run.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
