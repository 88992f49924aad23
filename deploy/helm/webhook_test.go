package helmchart

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/admission"
	"github.com/scx-slo/scx-slo/internal/policystatus"
	"github.com/scx-slo/scx-slo/internal/slopolicy"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

var webhookOn = map[string]any{"webhook": map[string]any{"enabled": true}}

func findNamed(t testing.TB, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	var sub []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetName() == name {
			sub = append(sub, o)
		}
	}
	find(t, sub, kind, into)
}

// checkCert verifies that the Secret's certificate chains to the CA the
// webhook configurations carry, for the Service's DNS name.
func checkCert(t *testing.T, sec *corev1.Secret, caBundle []byte, dnsName string) {
	t.Helper()
	if string(sec.Data["ca.crt"]) != string(caBundle) {
		t.Errorf("caBundle differs from the Secret's ca.crt")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caBundle) {
		t.Fatalf("caBundle holds no PEM certificate")
	}
	block, _ := pem.Decode(sec.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt holds no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName, CurrentTime: time.Now()}); err != nil {
		t.Errorf("the serving certificate does not verify for %s: %v", dnsName, err)
	}
}

func TestRenderWebhook(t *testing.T) {
	objs := mustRender(t, map[string]any{"webhook": map[string]any{"enabled": true, "excludeNamespaces": []any{"batch"}}})
	name := releaseName + "-webhook"
	var dep appsv1.Deployment
	findNamed(t, objs, "Deployment", name, &dep)
	if *dep.Spec.Replicas != 2 || dep.Spec.Template.Spec.Containers[0].Args[0] != "webhook" {
		t.Errorf("Deployment: %d replicas, args %v", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
	}
	var pdb policyv1.PodDisruptionBudget
	findNamed(t, objs, "PodDisruptionBudget", name, &pdb)
	if pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v", pdb.Spec.MinAvailable)
	}
	var sec corev1.Secret
	findNamed(t, objs, "Secret", name+"-tls", &sec)
	var mut admissionregv1.MutatingWebhookConfiguration
	var val admissionregv1.ValidatingWebhookConfiguration
	findNamed(t, objs, "MutatingWebhookConfiguration", name, &mut)
	findNamed(t, objs, "ValidatingWebhookConfiguration", name, &val)
	type hook struct {
		cfg admissionregv1.WebhookClientConfig
		fp  *admissionregv1.FailurePolicyType
		se  *admissionregv1.SideEffectClass
		to  *int32
		ns  *metav1.LabelSelector
		obj *metav1.LabelSelector
		ops []admissionregv1.OperationType
	}
	m, v := mut.Webhooks[0], val.Webhooks[0]
	for _, h := range []hook{
		{m.ClientConfig, m.FailurePolicy, m.SideEffects, m.TimeoutSeconds, m.NamespaceSelector, m.ObjectSelector, m.Rules[0].Operations},
		{v.ClientConfig, v.FailurePolicy, v.SideEffects, v.TimeoutSeconds, v.NamespaceSelector, v.ObjectSelector, v.Rules[0].Operations},
	} {
		if *h.fp != admissionregv1.Ignore || *h.se != admissionregv1.SideEffectClassNone || *h.to != 5 {
			t.Errorf("failurePolicy %s, sideEffects %s, timeout %d: want Ignore, None, 5", *h.fp, *h.se, *h.to)
		}
		if h.cfg.Service.Name != name || h.cfg.Service.Namespace != releaseNamespace {
			t.Errorf("clientConfig %+v", h.cfg.Service)
		}
		excluded := h.ns.MatchExpressions[0]
		if excluded.Key != "kubernetes.io/metadata.name" || excluded.Operator != metav1.LabelSelectorOpNotIn ||
			!slices.Equal(excluded.Values, []string{"kube-system", releaseNamespace, "batch"}) {
			t.Errorf("namespaceSelector %+v", h.ns)
		}
		if o := h.obj.MatchExpressions[0]; o.Key != "scx-slo.io/webhook" || o.Values[0] != "off" || h.ns.MatchExpressions[1].Key != "scx-slo.io/webhook" {
			t.Errorf("opt-out: objectSelector %+v, namespaceSelector %+v", h.obj, h.ns)
		}
		checkCert(t, &sec, h.cfg.CABundle, name+"."+releaseNamespace+".svc")
	}
	if m.Rules[0].Operations[0] != admissionregv1.Create || len(m.Rules[0].Operations) != 1 {
		t.Errorf("mutating rules %+v: want CREATE only", m.Rules)
	}

	t.Run("cert-manager", func(t *testing.T) {
		objs := mustRender(t, map[string]any{"webhook": map[string]any{"enabled": true, "tls": map[string]any{"certManager": map[string]any{"enabled": true}}}})
		got := kinds(objs)
		if !slices.Contains(got, "Certificate") || !slices.Contains(got, "Issuer") || slices.Contains(got, "Secret") {
			t.Errorf("with cert-manager renders %v: want a Certificate and an Issuer, no Secret", got)
		}
		var mut admissionregv1.MutatingWebhookConfiguration
		findNamed(t, objs, "MutatingWebhookConfiguration", name, &mut)
		if mut.Annotations["cert-manager.io/inject-ca-from"] != releaseNamespace+"/"+name || len(mut.Webhooks[0].ClientConfig.CABundle) != 0 {
			t.Errorf("annotations %v, caBundle %d bytes: want cert-manager to inject the CA", mut.Annotations, len(mut.Webhooks[0].ClientConfig.CABundle))
		}
		// Decoded strictly with cert-manager's own types: the Certificate
		// fills the Secret the Deployment mounts, for the Service's name,
		// from the chart's self-signed Issuer.
		var cert cmv1.Certificate
		var iss cmv1.Issuer
		var dep appsv1.Deployment
		findNamed(t, objs, "Certificate", name, &cert)
		findNamed(t, objs, "Issuer", name, &iss)
		findNamed(t, objs, "Deployment", name, &dep)
		mounted := ""
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == "tls" && v.Secret != nil {
				mounted = v.Secret.SecretName
			}
		}
		if cert.Spec.SecretName == "" || cert.Spec.SecretName != mounted {
			t.Errorf("the Certificate fills Secret %q, the Deployment mounts %q", cert.Spec.SecretName, mounted)
		}
		if !slices.Contains(cert.Spec.DNSNames, name+"."+releaseNamespace+".svc") {
			t.Errorf("the Certificate's dnsNames %v lack the Service's %s.%s.svc", cert.Spec.DNSNames, name, releaseNamespace)
		}
		if cert.Spec.IssuerRef.Name != iss.Name || cert.Spec.IssuerRef.Kind != "Issuer" || iss.Spec.SelfSigned == nil {
			t.Errorf("issuerRef %+v, Issuer %s self-signed %v: want the chart's self-signed Issuer", cert.Spec.IssuerRef, iss.Name, iss.Spec.SelfSigned != nil)
		}

		ref := map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
		objs = mustRender(t, map[string]any{"webhook": map[string]any{"enabled": true, "tls": map[string]any{"certManager": map[string]any{"enabled": true, "issuerRef": ref}}}})
		if slices.Contains(kinds(objs), "Issuer") {
			t.Errorf("with an issuerRef the chart still renders an Issuer: %v", kinds(objs))
		}
		findNamed(t, objs, "Certificate", name, &cert)
		if got := cert.Spec.IssuerRef; got.Name != "corp-ca" || got.Kind != "ClusterIssuer" || got.Group != "cert-manager.io" {
			t.Errorf("issuerRef %+v, want the one in the values", got)
		}
	})
}

// The status writer finds the agents of its own release, and only them:
// the selector the Deployment passes matches the DaemonSet's pods, not the
// webhook's, in the namespace it defaults to (the release's), and the
// agent's container has the port it asks for (the flag's default,
// "metrics").
func TestWebhookFindsTheChartsAgents(t *testing.T) {
	objs := mustRender(t, webhookOn)
	var dep appsv1.Deployment
	findNamed(t, objs, "Deployment", releaseName+"-webhook", &dep)
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", &ds)
	var sel labels.Selector
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--policy-status.agent-selector="); ok {
			var err error
			if sel, err = labels.Parse(v); err != nil {
				t.Fatalf("%s: %v", a, err)
			}
		}
		if strings.HasPrefix(a, "--policy-status.agent-namespace=") || strings.HasPrefix(a, "--policy-status.agent-port=") {
			t.Errorf("%s: the test expects the defaults (the release's namespace, port metrics)", a)
		}
	}
	if sel == nil {
		t.Fatalf("the Deployment passes no --policy-status.agent-selector: %q", dep.Spec.Template.Spec.Containers[0].Args)
	}
	if !sel.Matches(labels.Set(ds.Spec.Template.Labels)) || sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("selector %s: matches the agents' pods %v: %v, the webhook's %v: %v (want true, false)", sel,
			ds.Spec.Template.Labels, sel.Matches(labels.Set(ds.Spec.Template.Labels)), dep.Spec.Template.Labels, sel.Matches(labels.Set(dep.Spec.Template.Labels)))
	}
	if ds.Namespace != dep.Namespace {
		t.Errorf("agents in %q, webhook in %q: the default agent namespace is the webhook's", ds.Namespace, dep.Namespace)
	}
	named := false
	for _, p := range ds.Spec.Template.Spec.Containers[0].Ports {
		named = named || p.Name == "metrics"
	}
	if !named {
		t.Errorf("the agent's container has no port named metrics: %+v", ds.Spec.Template.Spec.Containers[0].Ports)
	}
}

// An upgrade renders against the cluster: Helm's lookup finds the Secret
// of the install and the chart keeps its certificate and CA.
func TestWebhookCertificateReusedOnUpgrade(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	cluster.CreateNamespaces(t, releaseNamespace)
	name := releaseName + "-webhook"
	installed, err := renderChart(t, loadChart(t), webhookOn, cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	var first corev1.Secret
	findNamed(t, installed, "Secret", name+"-tls", &first)
	for _, o := range installed {
		if o.GetKind() == "Secret" {
			if err := cluster.Client.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	upgraded, err := renderChart(t, loadChart(t), webhookOn, cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	var second corev1.Secret
	findNamed(t, upgraded, "Secret", name+"-tls", &second)
	var mut admissionregv1.MutatingWebhookConfiguration
	findNamed(t, upgraded, "MutatingWebhookConfiguration", name, &mut)
	for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
		if string(first.Data[k]) != string(second.Data[k]) {
			t.Errorf("%s changed on upgrade", k)
		}
	}
	checkCert(t, &second, mut.Webhooks[0].ClientConfig.CABundle, name+"."+releaseNamespace+".svc")
}

// The convention for workload charts: testdata/shop carries a copy of the
// chart's scx-slo.podAnnotations helper and a scxSlo values block; its
// pods, created through a real API server from the rendered template, have
// the SLO its values say (as the agent and webhook read it).
func TestChartConventionGivesPodsTheirSLO(t *testing.T) {
	helpers, err := os.ReadFile(filepath.Join(repoRoot(t), ChartDir, "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(filepath.Join("testdata", "shop", "templates", "_scx-slo.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(helpers), string(copied)) {
		t.Fatal("testdata/shop/templates/_scx-slo.tpl is not a verbatim copy of the chart's scx-slo.podAnnotations helper")
	}
	cluster := kubetest.Start(t)
	ctx := context.Background()
	cluster.CreateNamespaces(t, "shop")
	ch, err := loader.Load(filepath.Join("testdata", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		values map[string]any
		want   slopolicy.SLO
	}{
		"chart defaults":   {nil, slopolicy.SLO{LatencyBudget: 3 * time.Millisecond, Importance: 700, Target: 0.995}},
		"budget only":      {map[string]any{"scxSlo": map[string]any{"latencyBudget": "500us", "importance": nil, "target": nil}}, slopolicy.SLO{LatencyBudget: 500 * time.Microsecond, Importance: 100, Target: 0.99}},
		"unquoted numbers": {map[string]any{"scxSlo": map[string]any{"importance": 5, "target": 0.9}}, slopolicy.SLO{LatencyBudget: 3 * time.Millisecond, Importance: 5, Target: 0.9}},
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := renderChart(t, ch, tc.values, nil)
			if err != nil {
				t.Fatal(err)
			}
			var dep appsv1.Deployment
			find(t, objs, "Deployment", &dep)
			pod := &corev1.Pod{ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
			pod.Namespace, pod.GenerateName = "shop", "api-"
			if err := cluster.Client.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
			var got corev1.Pod
			if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(pod), &got); err != nil {
				t.Fatal(err)
			}
			res := slopolicy.Resolve(&got, nil)
			if len(res.Problems) > 0 || res.Containers[0].Source != slopolicy.SourceAnnotation || res.Containers[0].SLO != tc.want {
				t.Errorf("pod %s: %+v, problems %v; want %+v from annotations %v", got.Name, res.Containers, res.Problems, tc.want, got.Annotations)
			}
		})
	}
}

// The webhook's RBAC, installed in a real API server, is enough for the
// real webhook informer, status controller and election running as its
// service account, and refuses what they do not need.
func TestWebhookRBACAllowsItsRequestsOnly(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	c := cluster.Client
	cluster.CreateNamespaces(t, releaseNamespace, "shop")
	name := releaseName + "-webhook"
	for _, o := range mustRender(t, webhookOn) {
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
		Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}, LatencyBudget: "2ms"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "a", Labels: map[string]string{"app": "a"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}); err != nil {
		t.Fatal(err)
	}
	as := rest.CopyConfig(cluster.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + releaseNamespace + ":" + name}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	policies, err := admission.NewPolicyCache(as)
	if err != nil {
		t.Fatal(err)
	}
	if err := policies.Start(runCtx, time.Minute); err != nil {
		t.Fatalf("the webhook's informer as its service account: %v", err)
	}
	ctrl, err := policystatus.New(as, func(msg string, kv ...any) { t.Log(append([]any{msg}, kv...)...) })
	if err != nil {
		t.Fatal(err)
	}
	// The lease name the chart passes (--leader-election.lease).
	e, err := policystatus.NewElection(as, releaseNamespace, name+"-status", "replica-1", 3*time.Second, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); go e.Run(runCtx); _ = ctrl.Run(runCtx, e.Leading, 100*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var p v1alpha1.SLOPolicy
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "p"}, &p); err != nil {
			t.Fatal(err)
		}
		if p.Status.MatchedPods == 1 && e.Leading() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("as the webhook's account: leading %v, status %+v", e.Leading(), p.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}

	asClient, err := client.New(as, client.Options{Scheme: cluster.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"read a Secret":      asClient.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: name + "-tls"}, &corev1.Secret{}),
		"delete a pod":       asClient.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "a"}}),
		"change a policy":    asClient.Update(ctx, &v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}}),
		"list nodes":         asClient.List(ctx, &corev1.NodeList{}),
		"a Lease in another": asClient.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "x"}}),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want forbidden", what, err)
		}
	}
}
