package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

var metricName = regexp.MustCompile("`(scx_slo_[a-z0-9_]+)")

// documentedMetrics returns the metric names in the first column of a
// markdown table, and which of them are marked † (sched_ext kernels only).
// Those marked ‡ (Kubernetes mode only) are left out: kubeMetrics lists
// them for the Kubernetes agent test.
func documentedMetrics(t *testing.T, file string) (all []string, scxOnly map[string]bool) {
	all, scxOnly, _ = readMetricTable(t, file)
	return all, scxOnly
}

// kubeMetrics returns the metrics a file marks ‡ (Kubernetes mode only).
func kubeMetrics(t *testing.T, file string) []string {
	_, _, kube := readMetricTable(t, file)
	return kube
}

func readMetricTable(t *testing.T, file string) (all []string, scxOnly map[string]bool, kube []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(exportertest.RepoRoot(), file))
	if err != nil {
		t.Fatal(err)
	}
	scxOnly = map[string]bool{}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `scx_slo_") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		m := metricName.FindStringSubmatch(first)
		if m == nil || seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		if strings.Contains(first, "‡") {
			kube = append(kube, m[1])
			continue
		}
		all = append(all, m[1])
		if strings.Contains(first, "†") {
			scxOnly[m[1]] = true
		}
	}
	sort.Strings(all)
	sort.Strings(kube)
	return all, scxOnly, kube
}

// TestReadmeMetricsAppearInScrape scrapes a real exporter and checks every
// metric the README documents is there (the † ones need a sched_ext
// kernel; the lab VM test covers those).
func TestReadmeMetricsAppearInScrape(t *testing.T) {
	exportertest.RequireRoot(t)
	readme, scxOnly := documentedMetrics(t, "README.md")
	if len(readme) < 25 {
		t.Fatalf("found only %d metrics in README's table", len(readme))
	}
	cg := exportertest.NewCgroups(t, "auto")
	ls := cg.Make(t, "ls")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+ls+"\n    latencyBudget: 1ms\n")
	e := exportertest.Start(t, "--slo.config-file="+cfg)
	w := cg.StartWorkload(t, ls, "hog", 3) // preemptions among cgroups
	defer w.Stop()
	_, err := os.Stat("/sys/kernel/sched_ext")
	haveScx := err == nil
	var f exportertest.Families
	missing := func() []string {
		f = e.Scrape(t)
		var out []string
		for _, name := range readme {
			if scxOnly[name] && !haveScx {
				continue
			}
			if _, ok := f[name]; !ok {
				out = append(out, name)
			}
		}
		return out
	}
	var m []string
	for i := 0; i < 20; i++ {
		if m = missing(); len(m) == 0 {
			break
		}
		exportertest.Sleep(500)
	}
	if len(m) > 0 {
		t.Errorf("documented but not scraped: %v", m)
	}
	// And nothing scx_slo_* is exported without being documented.
	documented := map[string]bool{}
	for _, n := range readme {
		documented[n] = true
	}
	for name := range f {
		if strings.HasPrefix(name, "scx_slo_") && !documented[name] {
			t.Errorf("exported but not in README: %s", name)
		}
	}
}

// TestMetricDocsAgree keeps README's table and docs/metrics.md in step.
func TestMetricDocsAgree(t *testing.T) {
	readme, _ := documentedMetrics(t, "README.md")
	ref, _ := documentedMetrics(t, "docs/metrics.md")
	if strings.Join(readme, " ") != strings.Join(ref, " ") {
		t.Errorf("README.md and docs/metrics.md list different metrics:\nREADME: %v\ndocs:   %v", readme, ref)
	}
	if k1, k2 := kubeMetrics(t, "README.md"), kubeMetrics(t, "docs/metrics.md"); strings.Join(k1, " ") != strings.Join(k2, " ") || len(k1) == 0 {
		t.Errorf("README.md and docs/metrics.md list different Kubernetes metrics (‡):\nREADME: %v\ndocs:   %v", k1, k2)
	}
}

// TestReadmeDocumentsEveryFlag compares `scx-slo serve --help` with README.
func TestReadmeDocumentsEveryFlag(t *testing.T) {
	out, err := exec.Command(exportertest.Binary(t), "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	readme, err := os.ReadFile(filepath.Join(exportertest.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	flags := regexp.MustCompile(`--(?:\[no-\])?([a-z][a-z0-9.-]+)`).FindAllStringSubmatch(string(out), -1)
	if len(flags) < 20 {
		t.Fatalf("parsed only %d flags from --help", len(flags))
	}
	for _, f := range flags {
		name := f[1]
		if name == "help" || name == "version" || name == "help-long" || name == "help-man" {
			continue
		}
		if !strings.Contains(string(readme), "`--"+name+"`") {
			t.Errorf("flag --%s is not documented in README.md", name)
		}
	}
}
