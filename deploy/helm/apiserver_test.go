package helmchart

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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

// Every object the chart renders, with the defaults and with every option
// on, is accepted by a real kube-apiserver (server-side dry run, as a
// `helm install --dry-run=server` would send it), with the chart's own
// CRDs and the Prometheus Operator's installed. Strict field validation:
// a misspelt field fails instead of being dropped.
func TestRenderedObjectsAcceptedByAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()

	if got := len(loadChart(t).CRDObjects()); got == 0 {
		t.Fatalf("the chart has no CRDs in crds/ (the SLOPolicy CRD belongs there)")
	}
	crds := monitoringCRDs(t, "ServiceMonitor", "PodMonitor", "PrometheusRule")
	if _, err := envtest.InstallCRDs(cluster.Config, envtest.CRDInstallOptions{CRDs: crds}); err != nil {
		t.Fatalf("installing the monitoring CRDs: %v", err)
	}
	cluster.CreateNamespaces(t, releaseNamespace)

	for name, values := range map[string]map[string]any{"defaults": nil, "everything": everything()} {
		t.Run(name, func(t *testing.T) {
			objs := mustRender(t, values)
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
