// Command gen writes the chart's copies of the dashboards and alert rules
// and its version from the repository (see package helmchart). `go
// generate ./deploy/helm/...` runs it from deploy/helm.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	helmchart "github.com/scx-slo/scx-slo/deploy/helm"
)

func main() {
	// go generate runs in the package directory, deploy/helm.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fail(err)
	}
	want, err := helmchart.Want(root)
	if err != nil {
		fail(err)
	}
	dashboards := filepath.Join(root, helmchart.ChartDir, "files", "dashboards")
	// A dashboard removed from dashboards/ must leave the chart too.
	old, _ := filepath.Glob(filepath.Join(dashboards, "*.json"))
	for _, p := range old {
		rel, _ := filepath.Rel(root, p)
		if _, ok := want[rel]; !ok {
			if err := os.Remove(p); err != nil {
				fail(err)
			}
		}
	}
	for rel, b := range want {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fail(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}
