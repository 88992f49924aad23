// Package helmtest renders the chart with Helm's Go SDK, as `helm install`
// would, for tests: deploy/helm's own and those of other packages that
// must run what the chart installs (internal/admission registers the
// chart's webhook configurations with a real API server). It lives apart
// from deploy/helm's test files because other packages cannot import
// those; TestShippedBinariesLinkNoHelm keeps it out of the binaries.
package helmtest

import (
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
)

// The release every test renders.
const (
	ReleaseName      = "scx-slo"
	ReleaseNamespace = "monitoring"
)

// chartDir is helmchart.ChartDir, not imported: deploy/helm's own tests
// import this package, and Go allows no cycle through them.
const chartDir = "deploy/helm/scx-slo"

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// LoadChart loads the chart from the repository.
func LoadChart(t testing.TB) *chartv2.Chart {
	t.Helper()
	ch, err := loader.Load(filepath.Join(RepoRoot(), chartDir))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// Render renders ch as `helm install` would with values over the chart's
// defaults, and returns every object, NOTES.txt left out; with cfg,
// Helm's lookup reads that API server.
func Render(t testing.TB, ch *chartv2.Chart, values map[string]any, cfg *rest.Config) ([]*unstructured.Unstructured, error) {
	t.Helper()
	vals, err := util.ToRenderValues(ch, values, common.ReleaseOptions{
		Name: ReleaseName, Namespace: ReleaseNamespace, Revision: 1, IsInstall: true,
	}, common.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	var files map[string]string
	if cfg == nil {
		files, err = engine.Render(ch, vals)
	} else {
		files, err = engine.RenderWithClient(ch, vals, cfg) // lookup asks the API server
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var objs []*unstructured.Unstructured
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			continue
		}
		dec := kyaml.NewYAMLOrJSONDecoder(strings.NewReader(files[n]), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v\n%s", n, err, files[n])
			}
			if m == nil {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs, nil
}

// WebhookConfigurations renders the chart with values (the webhook turned
// on) and returns its MutatingWebhookConfiguration and
// ValidatingWebhookConfiguration, decoded strictly.
func WebhookConfigurations(t testing.TB, values map[string]any) (*admissionregv1.MutatingWebhookConfiguration, *admissionregv1.ValidatingWebhookConfiguration) {
	t.Helper()
	objs, err := Render(t, LoadChart(t), values, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mut []*admissionregv1.MutatingWebhookConfiguration
	var val []*admissionregv1.ValidatingWebhookConfiguration
	decode := func(o *unstructured.Unstructured, into any) {
		if err := kruntime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "MutatingWebhookConfiguration":
			m := &admissionregv1.MutatingWebhookConfiguration{}
			decode(o, m)
			mut = append(mut, m)
		case "ValidatingWebhookConfiguration":
			v := &admissionregv1.ValidatingWebhookConfiguration{}
			decode(o, v)
			val = append(val, v)
		}
	}
	if len(mut) != 1 || len(val) != 1 {
		t.Fatalf("the chart renders %d mutating and %d validating webhook configurations, want one of each (is webhook.enabled set?)", len(mut), len(val))
	}
	return mut[0], val[0]
}
