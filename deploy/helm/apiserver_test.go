package helmchart

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-tools/pkg/crd"
	"sigs.k8s.io/controller-tools/pkg/genall"

	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

// monitoringTypes are the Prometheus Operator's API types the chart's
// ServiceMonitor, PodMonitor and PrometheusRule are written against.
const monitoringTypes = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

// monitoringCRDs generates the CRDs of the kinds the chart uses from the
// Prometheus Operator's Go types with controller-gen's CRD generator, as
// the operator does for its own manifests: nothing hand-written to drift.
func monitoringCRDs(t *testing.T, kinds ...string) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	dir := t.TempDir()
	noDescriptions := 0 // smaller objects; the API server validates the same
	var gen genall.Generator = crd.Generator{MaxDescLen: &noDescriptions}
	rt, err := genall.Generators{&gen}.ForRoots(monitoringTypes)
	if err != nil {
		t.Fatal(err)
	}
	rt.OutputRules = genall.OutputRules{Default: genall.OutputToDirectory(dir)}
	if rt.Run() {
		t.Fatalf("controller-gen crd on %s failed (errors above)", monitoringTypes)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, kind := range kinds {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		found := false
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c apiextensionsv1.CustomResourceDefinition
			if err := kyaml.Unmarshal(b, &c); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if c.Spec.Names.Kind == kind {
				out = append(out, &c)
				found = true
			}
		}
		if !found {
			t.Fatalf("controller-gen made no CRD for %s from %s", kind, monitoringTypes)
		}
	}
	return out
}

// certManagerModule is cert-manager's Go module; its deploy/crds holds the
// CRDs cert-manager's own controller-gen run makes from its API types, the
// source of the CRDs its Helm chart installs. The build already has the
// module (webhook_test.go decodes the chart's Certificate with its types),
// so the test reads them from there: nothing hand-written to drift.
const certManagerModule = "github.com/cert-manager/cert-manager"

// certManagerCRDs reads the CRDs of cert-manager.io resources (plural
// names) from the module.
func certManagerCRDs(t *testing.T, plurals ...string) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", certManagerModule)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m %s: %q, %v", certManagerModule, out, err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, plural := range plurals {
		f := filepath.Join(dir, "deploy", "crds", "cert-manager.io_"+plural+".yaml")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c apiextensionsv1.CustomResourceDefinition
		if err := kyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096).Decode(&c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Spec.Names.Plural != plural {
			t.Fatalf("%s defines %q, want %q", f, c.Spec.Names.Plural, plural)
		}
		crds = append(crds, &c)
	}
	return crds
}

// withCertManager is everything() with the webhook's certificate from
// cert-manager, from the given issuer (nil: the Issuer the chart makes).
func withCertManager(issuerRef map[string]any) map[string]any {
	v := everything()
	cm := map[string]any{"enabled": true}
	if issuerRef != nil {
		cm["issuerRef"] = issuerRef
	}
	v["webhook"].(map[string]any)["tls"] = map[string]any{"certManager": cm}
	return v
}

// Every object the chart renders, with the defaults, with every option
// on, and with the webhook's certificate from cert-manager (the chart's
// Issuer or an existing ClusterIssuer), is accepted by a real
// kube-apiserver (server-side dry run, as a `helm install
// --dry-run=server` would send it), with the chart's own CRDs, the
// Prometheus Operator's and cert-manager's installed. Strict field
// validation: a misspelt field fails instead of being dropped.
func TestRenderedObjectsAcceptedByAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()

	if got := len(loadChart(t).CRDObjects()); got == 0 {
		t.Fatalf("the chart has no CRDs in crds/ (the SLOPolicy CRD belongs there)")
	}
	crds := monitoringCRDs(t, "ServiceMonitor", "PodMonitor", "PrometheusRule")
	crds = append(crds, certManagerCRDs(t, "issuers", "certificates")...)
	if _, err := envtest.InstallCRDs(cluster.Config, envtest.CRDInstallOptions{CRDs: crds}); err != nil {
		t.Fatalf("installing the monitoring and cert-manager CRDs: %v", err)
	}
	cluster.CreateNamespaces(t, releaseNamespace)

	for name, tc := range map[string]struct {
		values map[string]any
		kinds  []string // must be among the objects sent
	}{
		"defaults":                    {nil, []string{"DaemonSet"}},
		"everything":                  {everything(), []string{"Deployment", "MutatingWebhookConfiguration", "Secret", "ServiceMonitor"}},
		"cert-manager":                {withCertManager(nil), []string{"Certificate", "Issuer", "MutatingWebhookConfiguration"}},
		"cert-manager, ClusterIssuer": {withCertManager(map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}), []string{"Certificate"}},
	} {
		t.Run(name, func(t *testing.T) {
			objs := mustRender(t, tc.values)
			for _, k := range tc.kinds {
				if !slices.Contains(kinds(objs), k) {
					t.Errorf("no %s rendered; got %v", k, kinds(objs))
				}
			}
			var accepted []string
			for _, o := range objs {
				if err := cluster.Client.Create(ctx, o, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
					t.Errorf("%s %s: the API server rejects it: %v", o.GetKind(), o.GetName(), err)
					continue
				}
				accepted = append(accepted, o.GetKind())
			}
			slices.Sort(accepted)
			t.Logf("accepted: %v", accepted)
		})
	}
}
