package helmchart

import (
	"path/filepath"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// Helm's own chart linter (what `helm lint` runs) finds nothing to warn
// about, with the defaults and with every option on.
func TestChartLints(t *testing.T) {
	dir := filepath.Join(repoRoot(t), ChartDir)
	for name, values := range map[string]map[string]any{"defaults": nil, "everything": everything()} {
		l := lint.RunAll(dir, values, releaseNamespace)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", name, m)
			} else {
				t.Logf("%s: %s", name, m)
			}
		}
	}
}
