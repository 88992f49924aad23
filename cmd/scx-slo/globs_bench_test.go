package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// BenchmarkChurnManyGlobs runs two real exporters over the same 1,000 real
// cgroups (500 pods of one container), one with 10 globs and one with
// 2,000 of the shape issue 10 found costly (1.65 cores and 7 s scrapes);
// both put the same 500 containers under an SLO.
// Per op a new container cgroup appears; each exporter is scraped until it
// reports the cgroup's SLO, then the cgroup goes. It reports each
// exporter's mean scrape time and CPU share, and the 2,000-over-10 ratios
// from the same run: near 1 means glob count no longer costs.
//
//	sudo go test -run '^$' -bench ChurnManyGlobs -benchtime 20x ./cmd/scx-slo
func BenchmarkChurnManyGlobs(b *testing.B) {
	exportertest.RequireRoot(b)
	const pods = 500
	cg := exportertest.NewCgroups(b, "auto")
	for i := range pods {
		cg.Make(b, fmt.Sprintf("kubepods-pod%dx.slice", i))
		cg.Make(b, fmt.Sprintf("kubepods-pod%dx.slice/ctr", i))
	}
	start := func(globs int) *exportertest.Exporter {
		var sb strings.Builder
		sb.WriteString("slos:\n")
		for i := range globs - 1 {
			fmt.Fprintf(&sb, "  - {cgroup: '%s/**/*pod%dx*.slice/*', latencyBudget: 2ms}\n", cg.Parent, i)
		}
		// Last, a glob for every pod: both configs cover the same cgroups,
		// so only the glob count differs.
		fmt.Fprintf(&sb, "  - {cgroup: '%s/**/*pod*x*.slice/*', latencyBudget: 2ms}\n", cg.Parent)
		cfg := filepath.Join(b.TempDir(), "slo.yaml")
		if err := os.WriteFile(cfg, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		return exportertest.Start(b, "--slo.config-file="+cfg, "--slo.resync-interval=100ms", "--overload.pin-dir=")
	}
	type side struct {
		e       *exportertest.Exporter
		scrape  time.Duration
		scrapes int
		cpu0    float64
	}
	sides := []*side{{e: start(10)}, {e: start(2000)}}
	wall0 := time.Now()
	for _, s := range sides {
		s.cpu0 = cpuSeconds(b, s.e.Pid())
	}
	n := 0
	for b.Loop() {
		p := cg.Parent + fmt.Sprintf("/kubepods-pod7x.slice/new%d", n)
		if err := os.Mkdir(cg.H.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		order := sides
		if n%2 == 1 { // the first one waits for the pass; take turns
			order = []*side{sides[1], sides[0]}
		}
		for _, s := range order {
			deadline := time.Now().Add(10 * time.Second)
			for {
				t0 := time.Now()
				f := s.e.Scrape(b)
				s.scrape += time.Since(t0)
				s.scrapes++
				if _, ok := f.Value("scx_slo_budget_seconds", map[string]string{"cgroup": p}); ok {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("no SLO for %s within 10s\n%s", p, s.e.Log())
				}
				time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
			}
		}
		if err := cg.Remove(p); err != nil {
			b.Fatal(err)
		}
		n++
	}
	wall := time.Since(wall0).Seconds()
	var scrapeMs, cpu [2]float64
	for i, s := range sides {
		scrapeMs[i] = float64(s.scrape.Microseconds()) / 1e3 / float64(s.scrapes)
		cpu[i] = (cpuSeconds(b, s.e.Pid()) - s.cpu0) / wall
	}
	b.ReportMetric(scrapeMs[0], "scrape-ms-10-globs")
	b.ReportMetric(scrapeMs[1], "scrape-ms-2000-globs")
	b.ReportMetric(scrapeMs[1]/scrapeMs[0], "scrape-ratio")
	b.ReportMetric(cpu[0], "cores-10-globs")
	b.ReportMetric(cpu[1], "cores-2000-globs")
	b.ReportMetric(cpu[1]/cpu[0], "cpu-ratio")
}
