package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// The README's first command runs the exporter with docs/slo.example.yaml:
// on an ordinary machine (this one included) that must already show SLO
// series, not an empty SLO section.
func TestExampleConfigShowsSLOSeries(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts the exporter")
	}
	exportertest.RequireRoot(t)
	cfg := filepath.Join(exportertest.RepoRoot(), "docs", "slo.example.yaml")
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--overload.pin-dir=")
	var judged []string
	ok := exportertest.Eventually(t.Context(), 20*time.Second, func() bool {
		f := e.Scrape(t)
		judged = judged[:0]
		for _, m := range f.Find("scx_slo_deadlines_total", nil) {
			if m.GetCounter().GetValue() > 0 {
				for _, l := range m.GetLabel() {
					if l.GetName() == "cgroup" {
						judged = append(judged, l.GetValue())
					}
				}
			}
		}
		return len(f.Find("scx_slo_budget_seconds", nil)) > 0 && len(judged) > 0
	})
	if !ok {
		t.Fatalf("no SLO cgroup with judged deadlines from docs/slo.example.yaml on this host\n%s", e.Log())
	}
	t.Logf("cgroups judged against the example's budgets: %v", judged)
}
