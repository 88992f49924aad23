package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

func writeSLO(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLatencyPreemptionAndOverload runs a 1 ms probe in one real cgroup and
// CPU hogs in another under the real tracer, and checks what the exporter
// says over HTTP: the probe's histogram fills, the hogs' cgroup is
// preempted by the probe's, the probe's cgroup is flagged overloaded while
// the hogs run and cleared after they stop.
func TestLatencyPreemptionAndOverload(t *testing.T) {
	exportertest.RequireRoot(t)
	for _, mode := range []string{"v1", "v2"} {
		t.Run(mode, func(t *testing.T) { testLatency(t, mode) })
	}
}

func testLatency(t *testing.T, mode string) {
	cg := exportertest.NewCgroups(t, mode)
	ls := cg.Make(t, "ls")
	batch := cg.Make(t, "batch")
	// Default CPU weights: hogs delay the probe without starving it, so it
	// keeps waking often enough for the miss-rate estimate to move.

	// Start with a budget nothing misses; the test picks the real one from
	// what it measures, since how late hogs make the probe depends on the
	// kernel and on what else the host runs.
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s\n    latencyBudget: 10s\n    target: 0.5\n", ls))
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--cgroup.hierarchy="+mode, "--slo.resync-interval=200ms")
	lsLabel := map[string]string{"cgroup": ls}

	probe := cg.StartWorkload(t, ls, "probe", 1)
	defer probe.Stop()
	time.Sleep(2 * time.Second)
	f := e.Scrape(t)
	idle := histogramOf(t, f, lsLabel)
	if idle.count < 500 {
		t.Fatalf("probe histogram count after 2s = %v, want >= 500 wakeups\n%s", idle.count, e.Log())
	}
	if v, _ := f.Value("scx_slo_deadlines_total", lsLabel); v < 500 {
		t.Errorf("deadlines_total = %v, want >= 500", v)
	}

	hogs := cg.StartWorkload(t, batch, "hog", 4)
	time.Sleep(4 * time.Second)
	f = e.Scrape(t)
	loaded := histogramOf(t, f, lsLabel).minus(idle)
	if loaded.count < 500 {
		t.Errorf("probe histogram grew by only %v wakeups under load", loaded.count)
	}
	stolen, _ := f.Value("scx_slo_runqueue_preemptions_total", map[string]string{"cgroup": batch, "by_cgroup": ls})
	if stolen < 1 {
		t.Errorf("no preemption of %s by %s counted; series: %v", batch, ls, f.LabelValues("scx_slo_runqueue_preemptions_total", "cgroup"))
	}
	if hogWait, _ := f.Value("scx_slo_runqueue_latency_seconds", map[string]string{"cgroup": batch}); hogWait < 1 {
		t.Errorf("hog cgroup has no run-queue waits recorded")
	}

	// The overload bit: set while the miss rate is above 1 - target,
	// cleared below half of that. Pick the budget where the hogs make the
	// probe miss at least 3x as often as it does alone.
	budget, idleMiss, loadedMiss := separatingBudget(idle, loaded)
	ctx := context.Background()
	overloaded := func() float64 { v, _ := e.Scrape(t).Value("scx_slo_overloaded", lsLabel); return v }
	target := 0.9
	if budget == 0 {
		// The hogs barely delay the probe here: drive the bit with a budget
		// no wakeup can meet, then a generous one.
		t.Logf("hogs do not separate the probe's latency on this host; using an impossible budget")
		writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s\n    latencyBudget: 1ns\n    target: 0.9\n", ls))
		if !exportertest.Eventually(ctx, 15*time.Second, func() bool { return overloaded() == 1 }) {
			t.Fatalf("not overloaded under a 1ns budget")
		}
	} else {
		target = 1 - (idleMiss+loadedMiss)/2
		t.Logf("budget %v: probe misses %.1f%% alone, %.1f%% under hogs; target %.3f", budget, 100*idleMiss, 100*loadedMiss, target)
		writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s\n    latencyBudget: %s\n    target: %.4f\n", ls, budget, target))
		if !exportertest.Eventually(ctx, 20*time.Second, func() bool { return overloaded() == 1 }) {
			f := e.Scrape(t)
			m, _ := f.Value("scx_slo_deadline_misses_total", lsLabel)
			d, _ := f.Value("scx_slo_deadlines_total", lsLabel)
			t.Fatalf("probe cgroup not flagged overloaded under hogs (misses %v of %v)", m, d)
		}
	}
	// Clearing: stop the hogs and make every further wakeup meet its
	// deadline (a budget nothing misses, whatever else this host runs),
	// so the bit must clear as the miss-rate estimates decay: at most
	// ~5,400 probe wakeups (bpf/include/slo_account.h), about 6 s.
	hogs.Stop()
	writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s\n    latencyBudget: 10s\n    target: %.4f\n", ls, target))
	if !exportertest.Eventually(ctx, 30*time.Second, func() bool { return overloaded() == 0 }) {
		f := e.Scrape(t)
		m, _ := f.Value("scx_slo_deadline_misses_total", lsLabel)
		d, _ := f.Value("scx_slo_deadlines_total", lsLabel)
		t.Errorf("overload bit did not clear within 30s once no wakeup missed (misses %v of %v)", m, d)
	}
	if m, _ := e.Scrape(t).Value("scx_slo_deadline_misses_total", lsLabel); m < 1 {
		t.Errorf("no deadline misses counted")
	}
}

// hist is a scraped classic histogram: cumulative counts by upper bound.
type hist struct {
	bounds []float64
	cum    []float64
	count  float64
}

func histogramOf(t *testing.T, f exportertest.Families, labels map[string]string) hist {
	t.Helper()
	ms := f.Find("scx_slo_runqueue_latency_seconds", labels)
	if len(ms) != 1 || ms[0].Histogram == nil {
		t.Fatalf("want one latency histogram for %v, got %d", labels, len(ms))
	}
	h := hist{count: float64(ms[0].Histogram.GetSampleCount())}
	for _, b := range ms[0].Histogram.Bucket {
		h.bounds = append(h.bounds, b.GetUpperBound())
		h.cum = append(h.cum, float64(b.GetCumulativeCount()))
	}
	return h
}

func (h hist) minus(o hist) hist {
	out := hist{bounds: h.bounds, count: h.count - o.count}
	for i := range h.cum {
		out.cum = append(out.cum, h.cum[i]-o.cum[i])
	}
	return out
}

// missAbove is the fraction of samples above bucket bound i.
func (h hist) missAbove(i int) float64 {
	if h.count == 0 {
		return 0
	}
	return (h.count - h.cum[i]) / h.count
}

// separatingBudget returns the bucket bound where the loaded probe misses
// most often while missing at least 3x as often as the idle probe (and
// at least 4% of wakeups), or 0 if no bound does.
func separatingBudget(idle, loaded hist) (time.Duration, float64, float64) {
	var best time.Duration
	var bi, bl, score float64
	for i, b := range idle.bounds {
		im, lm := idle.missAbove(i), loaded.missAbove(i)
		// Weigh the idle misses heavily: other load on the host moves
		// them, and the bit must clear once the hogs stop.
		if lm >= 0.04 && lm >= 3*im+0.01 && lm-4*im > score {
			best, bi, bl, score = time.Duration(b*1e9), im, lm, lm-4*im
		}
	}
	return best, bi, bl
}

// TestCgroupChurn creates and removes many cgroups, each briefly holding a
// task so the tracer records it, and checks that neither the BPF maps nor
// the metric set keep anything of them.
func TestCgroupChurn(t *testing.T) {
	exportertest.RequireRoot(t)
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	cg := exportertest.NewCgroups(t, "auto")
	home := cg.Make(t, "home")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s/churn-*\n    latencyBudget: 1ms\n", cg.Parent))
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--slo.resync-interval=100ms")
	w := cg.StartWorkload(t, home, "probe", 1)
	defer w.Stop()
	pid := w.Pid()

	before := countMapEntries(t)
	start := time.Now()
	for i := 0; i < cycles; i++ {
		p := cg.Parent + fmt.Sprintf("/churn-%d", i)
		if err := os.Mkdir(cg.H.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := cg.Move(p, pid); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // a probe wakeup or two inside
		if err := cg.Move(home, pid); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			e.Scrape(t) // scrapes during churn must not fail either
		}
		for try := 0; ; try++ {
			if err := cg.Remove(p); err == nil {
				break
			} else if try > 100 {
				t.Fatalf("rmdir %s: %v", p, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("%d create/remove cycles in %v", cycles, time.Since(start).Round(time.Millisecond))

	ok := exportertest.Eventually(context.Background(), 10*time.Second, func() bool {
		f := e.Scrape(t)
		for _, name := range []string{"scx_slo_runqueue_latency_seconds", "scx_slo_budget_seconds", "scx_slo_deadlines_total", "scx_slo_runqueue_preemptions_total"} {
			for _, label := range []string{"cgroup", "by_cgroup"} {
				for _, v := range f.LabelValues(name, label) {
					if strings.Contains(v, "/churn-") {
						return false
					}
				}
			}
		}
		after := countMapEntries(t)
		return after["slos"] <= before["slos"] && after["cgroup_stats"] <= before["cgroup_stats"]+1
	})
	if !ok {
		t.Errorf("stale entries after churn: maps before %v, after %v", before, countMapEntries(t))
	}
}

func countMapEntries(t *testing.T) map[string]int {
	return exportertest.MapEntries(t, "slos", "cgroup_stats", "preempts")
}
