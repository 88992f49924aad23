package collector

import (
	"context"
	"flag"
	"fmt"
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

// TestE2EOutput scrapes the real binary, with the real tracer, a latency
// probe and a CPU hog in real cgroups under an SLO config, and sysfs read
// from fixtures/sys (a sched_ext kernel's files: this host's kernel need
// not have sched_ext), and compares the whole scrape with
// fixtures/e2e-output.txt after normalising only what genuinely varies
// from run to run (see normalise). Regenerate the file with
//
//	go test -run TestE2EOutput ./collector -update
func TestE2EOutput(t *testing.T) {
	exportertest.RequireRoot(t)
	sysfs, err := filepath.Abs("fixtures/sys")
	if err != nil {
		t.Fatal(err)
	}
	cg := exportertest.NewCgroups(t, "auto")
	ls := cg.Make(t, "ls")
	cg.Make(t, "web-1")
	batch := cg.Make(t, "batch")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	if err := os.WriteFile(cfg, []byte("slos:\n"+
		"  - cgroup: "+cg.Parent+"/ls\n    latencyBudget: 500ms\n    importance: 50\n    target: 0.95\n"+
		"  - cgroup: "+cg.Parent+"/web-*\n    latencyBudget: 20ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--path.sysfs="+sysfs,
		"--web.disable-exporter-metrics", "--collector.runqueue.cgroup="+cg.Parent+"/*")
	// The probe wakes every millisecond and preempts the hogs: both
	// cgroups get latency series and at least one preemption pair. Its
	// budget is generous, so it is never overloaded.
	cg.StartWorkload(t, ls, "probe", 1)
	cg.StartWorkload(t, batch, "hog", 2)

	var got string
	var scrapeErr error
	ready := exportertest.Eventually(context.Background(), 30*time.Second, func() bool {
		var body []byte
		if _, body, scrapeErr = e.Get("/metrics"); scrapeErr != nil {
			return false
		}
		got = normalise(string(body), cg.Parent)
		for _, want := range []string{
			`scx_slo_runqueue_latency_seconds_count{cgroup="/TEST/ls",`,
			`scx_slo_runqueue_latency_seconds_count{cgroup="/TEST/batch",`,
			`scx_slo_runqueue_preemptions_total{`,
			`scx_slo_budget_seconds{cgroup="/TEST/ls",`,
			`scx_slo_budget_seconds{cgroup="/TEST/web-1",`,
		} {
			if !strings.Contains(got, want) {
				scrapeErr = fmt.Errorf("no %s yet", want)
				return false
			}
		}
		return true
	})
	if !ready {
		t.Fatalf("after 30s: %v\n%s\n%s", scrapeErr, got, e.Log())
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
// counts of activity, durations, times. Everything else (budgets, fixture
// readings, success flags, modes, deadlines of the idle SLO cgroup) is
// compared as it is.
var varying = map[string]bool{
	"scx_slo_scrape_collector_duration_seconds":            true,
	"scx_slo_runqueue_latency_seconds":                     true,
	"scx_slo_runqueue_waiting_tasks":                       true,
	"scx_slo_runqueue_tracked_cgroups":                     true,
	"scx_slo_runqueue_preemptions_total":                   true,
	"scx_slo_runqueue_dropped_events_total":                true,
	"scx_slo_deadlines_total":                              true,
	"scx_slo_deadline_misses_total":                        true,
	"scx_slo_config_last_reload_success_timestamp_seconds": true,
}

var (
	cgroupLabels = regexp.MustCompile(`(\b(?:by_)?cgroup)="(?:[^"\\]|\\.)*"`)
	otherLabel   = regexp.MustCompile(`cgroup="_other"`)
)

// normalise replaces the per-run cgroup parent with /TEST, the build's
// version labels and the kernel release with placeholders, and the values
// of varying families with VALUE. Which cgroups the host's own tasks
// preempt or are preempted by depends on what else runs, so runqueue
// series of _other are left out and preemption pairs are reduced to the
// label names (one line). Metric names, label names, the test cgroups'
// labels, bucket edges and help texts stay.
func normalise(scrape, parent string) string {
	types := map[string]string{}
	seen := map[string]bool{}
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
		switch {
		case family == "scx_slo_build_info":
			labels = anyValue.ReplaceAllString(labels, `="VERSION"`)
		case family == "scx_slo_kernel_info":
			labels = releaseLb.ReplaceAllString(labels, `release="RELEASE"`)
		case family == "scx_slo_runqueue_preemptions_total":
			labels = cgroupLabels.ReplaceAllString(labels, `$1="CGROUP"`)
		case strings.HasPrefix(family, "scx_slo_runqueue_") && otherLabel.MatchString(labels):
			continue
		}
		if varying[family] {
			value = "VALUE"
		}
		line = name + labels + " " + value
		if !seen[line] {
			seen[line] = true
			out = append(out, line)
		}
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
