package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/exportertest"
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
	// Starve the probe's cgroup of CPU share so the hogs make it late; where
	// the hierarchy has no cpu controller the overload half is skipped.
	weighted := cg.SetWeight(ls, 1) && cg.SetWeight(batch, 10000)

	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s\n    latencyBudget: 500us\n    target: 0.9\n", ls))
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--cgroup.hierarchy="+mode, "--slo.resync-interval=200ms")

	probe := cg.StartWorkload(t, ls, "probe", 1)
	defer probe.Stop()
	// Probe alone first: it must be counted and not overloaded.
	time.Sleep(2 * time.Second)
	f := e.Scrape(t)
	idleCount, ok := f.Value("scx_slo_runqueue_latency_seconds", map[string]string{"cgroup": ls})
	if !ok || idleCount < 500 {
		t.Fatalf("probe histogram count after 2s = %v (present %v), want >= 500 wakeups\n%s", idleCount, ok, e.Log())
	}
	if v, _ := f.Value("scx_slo_deadlines_total", map[string]string{"cgroup": ls}); v < 500 {
		t.Errorf("deadlines_total = %v, want >= 500", v)
	}

	hogs := cg.StartWorkload(t, batch, "hog", 4)
	ctx := context.Background()
	var overloaded bool
	if weighted {
		overloaded = exportertest.Eventually(ctx, 15*time.Second, func() bool {
			v, _ := e.Scrape(t).Value("scx_slo_overloaded", map[string]string{"cgroup": ls})
			return v == 1
		})
		if !overloaded {
			f := e.Scrape(t)
			m, _ := f.Value("scx_slo_deadline_misses_total", map[string]string{"cgroup": ls})
			d, _ := f.Value("scx_slo_deadlines_total", map[string]string{"cgroup": ls})
			t.Errorf("probe cgroup not flagged overloaded under hogs (misses %v of %v)", m, d)
		}
	} else {
		time.Sleep(3 * time.Second)
	}
	f = e.Scrape(t)
	busyCount, _ := f.Value("scx_slo_runqueue_latency_seconds", map[string]string{"cgroup": ls})
	if busyCount <= idleCount {
		t.Errorf("probe histogram did not grow under load: %v -> %v", idleCount, busyCount)
	}
	stolen, _ := f.Value("scx_slo_runqueue_preemptions_total", map[string]string{"cgroup": batch, "by_cgroup": ls})
	if stolen < 1 {
		t.Errorf("no preemption of %s by %s counted; series: %v", batch, ls, f.LabelValues("scx_slo_runqueue_preemptions_total", "cgroup"))
	}
	hogWait, _ := f.Value("scx_slo_runqueue_latency_seconds", map[string]string{"cgroup": batch})
	if hogWait < 1 {
		t.Errorf("hog cgroup has no run-queue waits recorded")
	}
	hogs.Stop()

	if weighted && overloaded {
		cleared := exportertest.Eventually(ctx, 30*time.Second, func() bool {
			v, _ := e.Scrape(t).Value("scx_slo_overloaded", map[string]string{"cgroup": ls})
			return v == 0
		})
		if !cleared {
			t.Errorf("overload bit did not clear within 30s after the hogs stopped")
		}
	}
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
