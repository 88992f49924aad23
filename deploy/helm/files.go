package helmchart

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ChartDir is the chart's directory, relative to the repository root.
const ChartDir = "deploy/helm/scx-slo"

// Want returns what every generated file of the chart must contain, keyed
// by its path relative to the repository root, read from the repository at
// root.
func Want(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	dashboards, err := filepath.Glob(filepath.Join(root, "dashboards", "*.json"))
	if err != nil {
		return nil, err
	}
	if len(dashboards) == 0 {
		return nil, fmt.Errorf("no dashboards/*.json under %s", root)
	}
	for _, p := range dashboards {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out[filepath.Join(ChartDir, "files", "dashboards", filepath.Base(p))] = b
	}
	rules, err := os.ReadFile(filepath.Join(root, "alerts", "scx-slo.rules.yml"))
	if err != nil {
		return nil, err
	}
	out[filepath.Join(ChartDir, "files", "scx-slo.rules.yml")] = rules

	version, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return nil, err
	}
	chartPath := filepath.Join(ChartDir, "Chart.yaml")
	chart, err := os.ReadFile(filepath.Join(root, chartPath))
	if err != nil {
		return nil, err
	}
	withVersion, err := SetChartVersion(chart, strings.TrimSpace(string(version)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", chartPath, err)
	}
	out[chartPath] = withVersion
	return out, nil
}

var (
	// SemVer 2 without build metadata, which OCI tags cannot carry.
	semver       = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)
	versionLines = regexp.MustCompile(`(?m)^(version|appVersion): .*$`)
)

// SetChartVersion returns Chart.yaml with its version and appVersion set
// to version: the chart is released with the binary, so both follow the
// repository's VERSION file.
func SetChartVersion(chart []byte, version string) ([]byte, error) {
	if !semver.MatchString(version) {
		return nil, fmt.Errorf("version %q: a chart version must be SemVer 2 (MAJOR.MINOR.PATCH[-PRE])", version)
	}
	found := map[string]bool{}
	out := versionLines.ReplaceAllFunc(chart, func(line []byte) []byte {
		key := string(line[:strings.IndexByte(string(line), ':')])
		found[key] = true
		return []byte(key + ": " + version)
	})
	for _, k := range []string{"version", "appVersion"} {
		if !found[k] {
			return nil, fmt.Errorf("no top-level %q line to set", k)
		}
	}
	return out, nil
}
