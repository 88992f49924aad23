package collector

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

var updateGolden = flag.Bool("update", false, "rewrite fixtures/e2e-output.txt from this run")

// goldenFile is the whole expected scrape, normalised: a renamed metric,
// label or help text shows up as a diff of this file in review.
const goldenFile = "fixtures/e2e-output.txt"

// TestE2EOutput scrapes the real binary, with the real tracer and real
// cgroups under an SLO config, and sysfs read from fixtures/sys (a
// sched_ext kernel's files: this host's kernel need not have sched_ext),
// and compares the whole scrape with fixtures/e2e-output.txt after
// normalising only what genuinely varies from run to run. Regenerate the
// file with
//
//	go test -run TestE2EOutput ./collector -update
func TestE2EOutput(t *testing.T) {
	exportertest.RequireRoot(t)
	sysfs, err := filepath.Abs("fixtures/sys")
	if err != nil {
		t.Fatal(err)
	}
	cg := exportertest.NewCgroups(t, "auto")
	cg.Make(t, "ls")
	cg.Make(t, "web-1")
	cg.Make(t, "batch")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	if err := os.WriteFile(cfg, []byte("slos:\n"+
		"  - cgroup: "+cg.Parent+"/ls\n    latencyBudget: 2ms\n    importance: 50\n    target: 0.95\n"+
		"  - cgroup: "+cg.Parent+"/web-*\n    latencyBudget: 20ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The test's cgroups hold no tasks, so every runqueue series is the
	// host's activity folded into _other: which series exist does not
	// depend on what else the host runs.
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--path.sysfs="+sysfs,
		"--web.disable-exporter-metrics", "--collector.runqueue.cgroup="+cg.Parent+"/*")

	// Wait for the first walk to see both SLO cgroups and for the host to
	// preempt something.
	var got string
	var scrapeErr error
	ready := exportertest.Eventually(context.Background(), 30*time.Second, func() bool {
		var body []byte
		if _, body, scrapeErr = e.Get("/metrics"); scrapeErr != nil {
			return false
		}
		got = normalise(string(body), cg.Parent)
		return strings.Contains(got, "scx_slo_runqueue_preemptions_total{") &&
			strings.Contains(got, `scx_slo_budget_seconds{cgroup="/TEST/ls"}`) &&
			strings.Contains(got, `scx_slo_budget_seconds{cgroup="/TEST/web-1"}`)
	})
	if !ready {
		t.Fatalf("after 30s the scrape (err %v) lacks host preemptions or an SLO cgroup:\n%s\n%s", scrapeErr, got, e.Log())
	}
	if *updateGolden {
		if err := os.WriteFile(goldenFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if d := lineDiff(string(want), got); d != "" {
		t.Errorf("scrape differs from %s (-want +got; rerun with -update if the change is intended):\n%s", goldenFile, d)
	}
}

var (
	sample    = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$`)
	typeLine  = regexp.MustCompile(`^# TYPE (\S+) (\S+)$`)
	anyValue  = regexp.MustCompile(`="(?:[^"\\]|\\.)*"`)
	releaseLb = regexp.MustCompile(`release="(?:[^"\\]|\\.)*"`)
)

// varying are the families whose sample values change from run to run:
// counts of host activity, durations, times. Everything else (budgets,
// fixture readings, success flags, modes) is compared as it is.
var varying = map[string]bool{
	"scx_slo_scrape_collector_duration_seconds":            true,
	"scx_slo_runqueue_latency_seconds":                     true,
	"scx_slo_runqueue_waiting_tasks":                       true,
	"scx_slo_runqueue_tracked_cgroups":                     true,
	"scx_slo_runqueue_preemptions_total":                   true,
	"scx_slo_runqueue_dropped_events_total":                true,
	"scx_slo_config_last_reload_success_timestamp_seconds": true,
}

// normalise replaces the per-run cgroup parent with /TEST, the build's
// version labels and the kernel release with placeholders, and the values
// of varying families with VALUE. Names, label names, other label values
// (bucket edges included) and help texts stay.
func normalise(scrape, parent string) string {
	types := map[string]string{}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(scrape, "\n"), "\n") {
		line = strings.ReplaceAll(line, `"`+parent+`/`, `"/TEST/`)
		if m := typeLine.FindStringSubmatch(line); m != nil {
			types[m[1]] = m[2]
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			out = append(out, line)
			continue
		}
		name, labels, value := m[1], m[2], m[3]
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suffix); base != name && types[base] == "histogram" {
				family = base
			}
		}
		switch family {
		case "scx_slo_build_info":
			labels = anyValue.ReplaceAllString(labels, `="VERSION"`)
		case "scx_slo_kernel_info":
			labels = releaseLb.ReplaceAllString(labels, `release="RELEASE"`)
		}
		if varying[family] {
			value = "VALUE"
		}
		out = append(out, name+labels+" "+value)
	}
	return strings.Join(out, "\n") + "\n"
}

// lineDiff lists the lines only in want (-) and only in got (+), in order.
func lineDiff(want, got string) string {
	count := func(s string) map[string]int {
		c := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			c[l]++
		}
		return c
	}
	inWant, inGot := count(want), count(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if inGot[l] > 0 {
			inGot[l]--
		} else {
			b.WriteString("-" + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if inWant[l] > 0 {
			inWant[l]--
		} else {
			b.WriteString("+" + l + "\n")
		}
	}
	return b.String()
}
