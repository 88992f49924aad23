package helmchart

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// linkedByChartTestsOnly are import path prefixes the chart's tests use and
// the binaries that ship to nodes must never link: the Helm SDK, the CRD
// generator, envtest, the Prometheus Operator's and cert-manager's types
// (with the Gateway API types cert-manager's import) and this package.
var linkedByChartTestsOnly = []string{
	"helm.sh/",
	"sigs.k8s.io/controller-tools/",
	"sigs.k8s.io/controller-runtime/pkg/envtest",
	"github.com/prometheus-operator/",
	"github.com/cert-manager/",
	"sigs.k8s.io/gateway-api/",
	"github.com/scx-slo/scx-slo/deploy/",
}

func TestShippedBinariesLinkNoHelm(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, pkg := range []string{"./cmd/scx-slo", "./cmd/scx-slo-shed"} {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, "github.com/scx-slo/scx-slo/internal/overload") {
			t.Fatalf("go list -deps %s does not list internal/overload, which both binaries link; is this the right module?\n%s", pkg, out)
		}
		for _, dep := range deps {
			for _, prefix := range linkedByChartTestsOnly {
				if strings.HasPrefix(dep, prefix) {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}
